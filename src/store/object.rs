//! Object stores (S3 and S3-compatible servers, Google Cloud Storage, Azure Blob Storage)
//! through the object_store crate.
//!
//! Reads are single ranged GETs; writes are multipart uploads (block lists on Azure) that
//! become visible only when completed, so a half-written container or catalog is never seen;
//! transient faults are retried by object_store with bounded backoff. Each service is
//! configured from its usual environment variables, as object_store reads them.

use super::runtime::block_on;
use super::{DirListing, ObjectInfo, ObjectWriter, Store};
use crate::error::{Error, Result};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ClientConfigKey, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// Bytes buffered before a multipart part is sent (S3's minimum part size is 5 MiB).
const PART_SIZE: usize = 8 << 20;

/// Client settings every service gets, applied over those the environment set (so a proxy
/// variable such as AWS_PROXY_URL still applies).
const CLIENT_SETTINGS: [(ClientConfigKey, &str); 2] = [
    (ClientConfigKey::ConnectTimeout, "5s"),
    (ClientConfigKey::Timeout, "60s"),
];

/// Bounded retries: a dropped connection or a 503 is retried at most 4 times within 30 s.
fn retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        max_retries: 4,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

/// Applies [`CLIENT_SETTINGS`] through a builder's own `with_config`.
fn with_client_settings<B>(builder: B, set: impl Fn(B, ClientConfigKey, &str) -> B) -> B {
    CLIENT_SETTINGS
        .into_iter()
        .fold(builder, |builder, (key, value)| set(builder, key, value))
}

/// A URI scheme served by object_store.
struct Service {
    scheme: &'static str,
    name: &'static str,
    /// What the first URI component names (bucket, container).
    bucket: &'static str,
}

/// A prefix of an object store.
#[derive(Debug)]
pub struct ObjectBackend {
    inner: Arc<dyn ObjectStore>,
    prefix: String,
    uri_base: String,
}

impl ObjectBackend {
    /// Opens `s3://bucket/prefix` with the usual AWS_* settings from the environment
    /// (credentials, AWS_REGION, AWS_ENDPOINT_URL for S3-compatible servers, AWS_ALLOW_HTTP).
    #[cfg(feature = "s3")]
    pub fn s3(uri: &str) -> Result<Self> {
        use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
        let service = Service {
            scheme: "s3",
            name: "S3",
            bucket: "bucket",
        };
        Self::open(uri, &service, |bucket| {
            with_client_settings(AmazonS3Builder::from_env(), |b, key, value| {
                b.with_config(AmazonS3ConfigKey::Client(key), value)
            })
            .with_bucket_name(bucket)
            .with_retry(retry_config())
            .build()
        })
    }

    /// Opens `gs://bucket/prefix` with the GOOGLE_* settings from the environment
    /// (GOOGLE_SERVICE_ACCOUNT or GOOGLE_SERVICE_ACCOUNT_KEY, GOOGLE_APPLICATION_CREDENTIALS,
    /// GOOGLE_BASE_URL for another endpoint), else the machine's default credentials.
    #[cfg(feature = "gcs")]
    pub fn gcs(uri: &str) -> Result<Self> {
        use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
        let service = Service {
            scheme: "gs",
            name: "Google Cloud Storage",
            bucket: "bucket",
        };
        Self::open(uri, &service, |bucket| {
            with_client_settings(GoogleCloudStorageBuilder::from_env(), |b, key, value| {
                b.with_config(GoogleConfigKey::Client(key), value)
            })
            .with_bucket_name(bucket)
            .with_retry(retry_config())
            .build()
        })
    }

    /// Opens `az://container/prefix` with the AZURE_* settings from the environment
    /// (AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY, a SAS token or a service
    /// principal; AZURE_STORAGE_ENDPOINT for another endpoint; AZURE_STORAGE_USE_EMULATOR with
    /// AZURITE_BLOB_STORAGE_URL for Azurite).
    #[cfg(feature = "azure")]
    pub fn azure(uri: &str) -> Result<Self> {
        use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
        let service = Service {
            scheme: "az",
            name: "Azure Blob Storage",
            bucket: "container",
        };
        Self::open(uri, &service, |container| {
            with_client_settings(MicrosoftAzureBuilder::from_env(), |b, key, value| {
                b.with_config(AzureConfigKey::Client(key), value)
            })
            .with_container_name(container)
            .with_retry(retry_config())
            .build()
        })
    }

    /// Splits `SCHEME://bucket/prefix` and builds the client for the bucket.
    fn open<S: ObjectStore>(
        uri: &str,
        service: &Service,
        build: impl FnOnce(&str) -> object_store::Result<S>,
    ) -> Result<Self> {
        let refuse = |reason: String| Error::Refused {
            path: uri.into(),
            reason,
        };
        let rest = uri
            .strip_prefix(service.scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .ok_or_else(|| refuse(format!("not a {}:// URI", service.scheme)))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(refuse(format!("the URI names no {}", service.bucket)));
        }
        install_crypto_provider();
        let store =
            build(bucket).map_err(|e| refuse(format!("cannot configure {}: {e}", service.name)))?;
        Ok(ObjectBackend {
            inner: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
            uri_base: format!("{}://{bucket}", service.scheme),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => ObjectPath::from(key),
            (false, true) => ObjectPath::from(self.prefix.as_str()),
            (false, false) => ObjectPath::from(format!("{}/{key}", self.prefix)),
        }
    }

    /// A listed object's key, length and modification time.
    fn object_info(&self, meta: &object_store::ObjectMeta) -> ObjectInfo {
        ObjectInfo {
            key: self.key_of(&meta.location),
            len: meta.size,
            mtime_ns: meta.last_modified.timestamp_nanos_opt().unwrap_or(0),
        }
    }

    /// The key of a listed location: the location without this store's prefix.
    fn key_of(&self, location: &ObjectPath) -> String {
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        location
            .as_ref()
            .get(strip..)
            .unwrap_or_default()
            .to_owned()
    }

    fn error(&self, key: &str, e: object_store::Error) -> Error {
        match e {
            object_store::Error::NotFound { .. } => Error::NotFound {
                path: self.uri(key),
            },
            other => Error::Remote {
                uri: self.uri(key),
                cause: Box::new(other),
            },
        }
    }
}

/// rustls needs one process-wide crypto provider; ring is the one sheaf builds with.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Store for ObjectBackend {
    fn uri(&self, key: &str) -> String {
        format!("{}/{}", self.uri_base, self.path(key))
    }

    fn read_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let wanted = range.end - range.start;
        let bytes = block_on(self.inner.get_range(&self.path(key), range.clone()))
            .map_err(|e| self.error(key, e))?;
        if bytes.len() as u64 != wanted {
            return Err(Error::corrupt(
                self.uri(key),
                format!(
                    "returned {} bytes for the {wanted}-byte range {range:?} (truncated object?)",
                    bytes.len()
                ),
            ));
        }
        Ok(bytes.to_vec())
    }

    fn read(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key);
        let fetched = block_on(async {
            let result = self.inner.get(&path).await?;
            result.bytes().await
        });
        Ok(fetched.map_err(|e| self.error(key, e))?.to_vec())
    }

    fn len(&self, key: &str) -> Result<Option<u64>> {
        match block_on(self.inner.head(&self.path(key))) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(ObjectUpload {
            store: self.inner.clone(),
            path: self.path(key),
            uri: self.uri(key),
            buffer: Vec::with_capacity(PART_SIZE),
            upload: None,
        }))
    }

    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes.to_vec());
        match block_on(self.inner.put_opts(&self.path(key), payload, options)) {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let base = self.path(prefix.trim_end_matches('/'));
        let listed: Vec<_> = block_on(self.inner.list(Some(&base)).try_collect::<Vec<_>>())
            .map_err(|e| self.error(prefix, e))?;
        let mut out: Vec<ObjectInfo> = listed.iter().map(|meta| self.object_info(meta)).collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_dir(&self, dir: &str) -> Result<DirListing> {
        let base = self.path(dir);
        let listed = block_on(self.inner.list_with_delimiter(Some(&base)))
            .map_err(|e| self.error(dir, e))?;
        Ok(DirListing {
            objects: listed
                .objects
                .iter()
                .map(|meta| self.object_info(meta))
                .collect(),
            dirs: listed
                .common_prefixes
                .iter()
                .map(|p| self.key_of(p))
                .collect(),
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        match block_on(self.inner.delete(&self.path(key))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }
}

/// A streamed write: a single PUT when small, otherwise a multipart upload.
struct ObjectUpload {
    store: Arc<dyn ObjectStore>,
    path: ObjectPath,
    uri: String,
    buffer: Vec<u8>,
    upload: Option<Box<dyn object_store::MultipartUpload>>,
}

impl ObjectUpload {
    fn send_part(&mut self) -> io::Result<()> {
        let part = PutPayload::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(PART_SIZE),
        ));
        let (store, path) = (&self.store, &self.path);
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => self
                .upload
                .insert(block_on(store.put_multipart(path)).map_err(io::Error::other)?),
        };
        block_on(upload.put_part(part)).map_err(io::Error::other)
    }
}

impl Write for ObjectUpload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= PART_SIZE {
            self.send_part()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for ObjectUpload {
    fn finish(mut self: Box<Self>) -> Result<()> {
        let uri = self.uri.clone();
        let remote = |e: Box<dyn std::error::Error + Send + Sync>| Error::Remote {
            uri: uri.clone(),
            cause: e,
        };
        if self.upload.is_none() {
            let payload = PutPayload::from(std::mem::take(&mut self.buffer));
            block_on(self.store.put(&self.path, payload)).map_err(|e| remote(Box::new(e)))?;
            return Ok(());
        }
        if !self.buffer.is_empty() {
            self.send_part().map_err(|e| remote(Box::new(e)))?;
        }
        let mut upload = self.upload.take().expect("multipart upload started");
        block_on(upload.complete()).map_err(|e| remote(Box::new(e)))?;
        Ok(())
    }
}

impl Drop for ObjectUpload {
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            // An abandoned upload leaves no object; aborting frees the parts already sent.
            let _ = block_on(upload.abort());
        }
    }
}
