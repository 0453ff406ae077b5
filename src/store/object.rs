//! Object stores (S3 and S3-compatible servers) through the object_store crate.
//!
//! Reads are single ranged GETs; writes are multipart uploads that become visible only when
//! completed, so a half-written container or catalog is never seen; transient faults are
//! retried by object_store with bounded backoff.

use super::runtime::block_on;
use super::{ObjectInfo, ObjectWriter, Store};
use crate::error::{Error, Result};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::io::{self, Write};
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

/// Bytes buffered before a multipart part is sent (S3's minimum part size is 5 MiB).
const PART_SIZE: usize = 8 << 20;

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
    pub fn s3(uri: &str) -> Result<Self> {
        let refuse = |reason: String| Error::Refused {
            path: uri.into(),
            reason,
        };
        let rest = uri
            .strip_prefix("s3://")
            .ok_or_else(|| refuse("not an s3:// URI".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(refuse("the URI names no bucket".into()));
        }
        install_crypto_provider();
        let retry = object_store::RetryConfig {
            max_retries: 4,
            retry_timeout: Duration::from_secs(30),
            ..Default::default()
        };
        let options = object_store::ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(60));
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(retry)
            .with_client_options(options)
            .with_allow_http(env_flag("AWS_ALLOW_HTTP"))
            .build()
            .map_err(|e| refuse(format!("cannot configure S3: {e}")))?;
        Ok(ObjectBackend {
            inner: Arc::new(store),
            prefix: prefix.trim_matches('/').to_owned(),
            uri_base: format!("s3://{bucket}"),
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => ObjectPath::from(key),
            (false, true) => ObjectPath::from(self.prefix.as_str()),
            (false, false) => ObjectPath::from(format!("{}/{key}", self.prefix)),
        }
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

/// A boolean setting from the environment (`true` or `1`).
fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
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

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let base = self.path(prefix.trim_end_matches('/'));
        let listed: Vec<_> = block_on(self.inner.list(Some(&base)).try_collect::<Vec<_>>())
            .map_err(|e| self.error(prefix, e))?;
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out: Vec<ObjectInfo> = listed
            .into_iter()
            .map(|meta| ObjectInfo {
                key: meta.location.as_ref()[strip..].to_owned(),
                len: meta.size,
                mtime_ns: meta.last_modified.timestamp_nanos_opt().unwrap_or(0),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
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
