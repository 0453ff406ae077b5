//! HDFS through hdfs-native: `hdfs://namenode:port/path` and `viewfs://` URIs, with settings
//! from HADOOP_CONF_DIR (core-site.xml, hdfs-site.xml) as Hadoop clients expect.
//!
//! Writes go to a temporary name in the target directory and are renamed over the key when
//! closed, so readers see the old object or the whole new one.

use super::runtime::block_on;
use super::{DirListing, FileMeta, ObjectInfo, ObjectWriter, RangeReader, Store};
use crate::error::{Error, Result};
use bytes::Bytes;
use hdfs_native::file::FileReader;
use hdfs_native::{Client, ClientBuilder, HdfsError, WriteOptions};
use std::io::{self, Write};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bytes buffered before they are handed to the HDFS writer.
const WRITE_CHUNK: usize = 4 << 20;

/// A directory of an HDFS namespace.
#[derive(Clone, Debug)]
pub struct HdfsBackend {
    client: Arc<Client>,
    authority: String,
    root: String,
}

impl HdfsBackend {
    /// A write of `key` to a temporary name beside it.
    fn writer(&self, key: &str) -> Result<HdfsWriter> {
        let target = self.path(key);
        let (dir, name) = target.rsplit_once('/').unwrap_or(("", target.as_str()));
        let partial = format!("{dir}/.{name}.partial-{}", super::unique_suffix());
        let options = WriteOptions {
            overwrite: true,
            create_parent: true,
            ..WriteOptions::default()
        };
        let writer =
            block_on(self.client.create(&partial, options)).map_err(|e| self.error(key, e))?;
        Ok(HdfsWriter {
            client: self.client.clone(),
            writer: Some(writer),
            buffer: Vec::with_capacity(WRITE_CHUNK),
            written: 0,
            block_size: None,
            renamed: false,
            partial,
            target,
            uri: self.uri(key),
        })
    }

    /// Connects to the name service a `hdfs://` or `viewfs://` URI names.
    pub fn open(uri: &str) -> Result<Self> {
        let refuse = |reason: String| Error::Refused {
            path: uri.into(),
            reason,
        };
        let (scheme, rest) = uri
            .split_once("://")
            .ok_or_else(|| refuse("not a URI".into()))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let authority = format!("{scheme}://{host}");
        let client = ClientBuilder::new()
            .with_url(&authority)
            .with_config(fail_fast_defaults())
            .build()
            .map_err(|e| refuse(format!("cannot configure the HDFS client: {e}")))?;
        Ok(HdfsBackend {
            client: Arc::new(client),
            authority,
            root: path.trim_end_matches('/').to_owned(),
        })
    }

    /// A listed file or directory as an object under this store's root; `None` for the root
    /// itself.
    fn object_info(&self, status: &hdfs_native::client::FileStatus) -> Option<ObjectInfo> {
        let key = status
            .path
            .get(self.root.len() + 1..)
            .filter(|key| !key.is_empty())?;
        Some(ObjectInfo {
            key: key.to_owned(),
            len: status.length as u64,
            mtime_ns: (status.modification_time as i64).saturating_mul(1_000_000),
        })
    }

    fn path(&self, key: &str) -> String {
        match key.trim_matches('/') {
            "" => {
                if self.root.is_empty() {
                    "/".into()
                } else {
                    self.root.clone()
                }
            }
            key => format!("{}/{key}", self.root),
        }
    }

    /// Deletes the temporary files that killed copies of `key` left beside it. A large file
    /// is copied into a dataset by a fold or an append, which are run again after a crash: the
    /// next copy of the same file clears what the last one left, so no orphan outlives the
    /// re-run. (Two appends copying the same path at once would be refused, not misled: the
    /// one whose temporary file went fails its rename.)
    fn remove_abandoned_writes(&self, key: &str) -> Result<()> {
        let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
        let abandoned = format!(".{name}.partial-");
        let listing = match self.list_dir(dir) {
            Err(Error::NotFound { .. }) => return Ok(()),
            listing => listing?,
        };
        for object in listing.objects {
            let leaf = object.key.rsplit('/').next().unwrap_or_default();
            if leaf.starts_with(&abandoned) {
                self.delete(&object.key)?;
            }
        }
        Ok(())
    }

    fn error(&self, key: &str, e: HdfsError) -> Error {
        if is_not_found(&e) {
            return Error::NotFound {
                path: self.uri(key),
            };
        }
        Error::Remote {
            uri: self.uri(key),
            cause: Box::new(e),
        }
    }
}

/// Client settings sheaf uses unless the Hadoop configuration sets them: Hadoop's defaults
/// retry a dead NameNode for minutes (15 attempts, sleeps up to 15 s); a few quick attempts
/// ride out a failover and still fail fast when the service is gone.
fn fail_fast_defaults() -> Vec<(&'static str, &'static str)> {
    const DEFAULTS: [(&str, &str); 3] = [
        ("dfs.client.failover.max.attempts", "3"),
        ("dfs.client.failover.sleep.base.millis", "200"),
        ("dfs.client.failover.sleep.max.millis", "2000"),
    ];
    let configured = hadoop_site_files();
    DEFAULTS
        .into_iter()
        .filter(|(key, _)| !configured.contains(key))
        .collect()
}

/// The text of the Hadoop site files a client would read (HADOOP_CONF_DIR), to tell which
/// settings the operator chose.
fn hadoop_site_files() -> String {
    let Some(dir) = std::env::var_os("HADOOP_CONF_DIR") else {
        return String::new();
    };
    ["core-site.xml", "hdfs-site.xml"]
        .iter()
        .filter_map(|name| std::fs::read_to_string(std::path::Path::new(&dir).join(name)).ok())
        .collect()
}

/// Pauses between attempts of a read that met a transient fault (a dropped or refused
/// connection); after the last one the fault is the error. The client's own failover retries
/// cover an unreachable NameNode only, not a connection that drops mid-call.
const RETRY_PAUSES: [std::time::Duration; 3] = [
    std::time::Duration::from_millis(100),
    std::time::Duration::from_millis(400),
    std::time::Duration::from_millis(1600),
];

/// Runs an idempotent request, retrying it after transient faults.
fn retrying<T>(
    request: impl Fn() -> std::result::Result<T, HdfsError>,
) -> std::result::Result<T, HdfsError> {
    let mut pauses = RETRY_PAUSES.iter();
    loop {
        match request() {
            Err(HdfsError::IOError(e)) => match pauses.next() {
                Some(pause) => std::thread::sleep(*pause),
                None => return Err(HdfsError::IOError(e)),
            },
            done => return done,
        }
    }
}

/// Bytes `range` of an open file, or `None` when the file is shorter than the range.
async fn read_within(
    reader: &FileReader,
    range: &Range<u64>,
) -> std::result::Result<Option<Bytes>, HdfsError> {
    if range.end as usize > reader.file_length() {
        return Ok(None);
    }
    let wanted = (range.end - range.start) as usize;
    reader
        .read_range(range.start as usize, wanted)
        .await
        .map(Some)
}

/// The bytes of a ranged read, or a `Corrupt` error when the file was shorter than the range.
fn exactly(bytes: Option<Bytes>, range: &Range<u64>, uri: impl Fn() -> String) -> Result<Vec<u8>> {
    match bytes {
        Some(bytes) if bytes.len() as u64 == range.end - range.start => Ok(bytes.to_vec()),
        _ => Err(Error::corrupt(
            uri(),
            format!("shorter than the {range:?} read from it (truncated?)"),
        )),
    }
}

/// An HDFS file opened once for many ranged reads: the NameNode is asked where its blocks are
/// when it is opened, and each range is then one read from a DataNode. A read that fails is
/// made again on the file opened afresh (a DataNode that restarted may be elsewhere now), with
/// the usual retries.
struct HdfsRanges {
    store: HdfsBackend,
    key: String,
    reader: Mutex<Arc<FileReader>>,
}

impl std::fmt::Debug for HdfsRanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HdfsRanges({})", self.store.uri(&self.key))
    }
}

impl RangeReader for HdfsRanges {
    fn read_range(&self, range: Range<u64>) -> Result<Vec<u8>> {
        let reader = self
            .reader
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let uri = || self.store.uri(&self.key);
        if let Ok(bytes) = block_on(read_within(&reader, &range)) {
            return exactly(bytes, &range, uri);
        }
        let path = self.store.path(&self.key);
        let (fresh, bytes) = retrying(|| {
            block_on(async {
                let fresh = self.store.client.read(&path).await?;
                let bytes = read_within(&fresh, &range).await?;
                Ok((fresh, bytes))
            })
        })
        .map_err(|e| self.store.error(&self.key, e))?;
        *self.reader.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        exactly(bytes, &range, uri)
    }
}

/// A missing file comes back from the NameNode as a remote Java exception, not always as the
/// client's own `FileNotFound`.
fn is_not_found(e: &HdfsError) -> bool {
    match e {
        HdfsError::FileNotFound(_) => true,
        HdfsError::RPCError(class, _) | HdfsError::FatalRPCError(class, _) => {
            class.contains("FileNotFoundException")
        }
        _ => false,
    }
}

impl Store for HdfsBackend {
    fn uri(&self, key: &str) -> String {
        format!("{}{}", self.authority, self.path(key))
    }

    fn read_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let bytes = retrying(|| {
            block_on(async {
                let reader = self.client.read(&self.path(key)).await?;
                read_within(&reader, &range).await
            })
        })
        .map_err(|e| self.error(key, e))?;
        exactly(bytes, &range, || self.uri(key))
    }

    fn ranges(&self, key: &str) -> Result<Option<Arc<dyn RangeReader>>> {
        let reader = retrying(|| block_on(self.client.read(&self.path(key))))
            .map_err(|e| self.error(key, e))?;
        Ok(Some(Arc::new(HdfsRanges {
            store: self.clone(),
            key: key.to_owned(),
            reader: Mutex::new(Arc::new(reader)),
        })))
    }

    fn read(&self, key: &str) -> Result<Vec<u8>> {
        let bytes = retrying(|| {
            block_on(async {
                let reader = self.client.read(&self.path(key)).await?;
                reader.read_range(0, reader.file_length()).await
            })
        })
        .map_err(|e| self.error(key, e))?;
        Ok(bytes.to_vec())
    }

    fn len(&self, key: &str) -> Result<Option<u64>> {
        match retrying(|| block_on(self.client.get_file_info(&self.path(key)))) {
            Ok(status) if !status.isdir => Ok(Some(status.length as u64)),
            Ok(_) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(self.writer(key)?))
    }

    fn create_file(&self, key: &[u8], meta: FileMeta) -> Result<Box<dyn ObjectWriter>> {
        let _ = meta;
        let key = super::utf8_file_key(self.uri(""), key)?;
        self.remove_abandoned_writes(key)?;
        self.create(key)
    }

    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let mut out = self.writer(key)?;
        out.write_all(bytes)
            .map_err(|e| Error::io("write", self.uri(key), e))?;
        out.close_and_rename(false)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let base = self.path(prefix.trim_end_matches('/'));
        let listed = match retrying(|| block_on(self.client.list_status(&base, true))) {
            Ok(listed) => listed,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.error(prefix, e)),
        };
        let mut out: Vec<ObjectInfo> = listed
            .iter()
            .filter(|status| !status.isdir)
            .filter_map(|status| self.object_info(status))
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_dir(&self, dir: &str) -> Result<DirListing> {
        let base = self.path(dir);
        let listed = match retrying(|| block_on(self.client.list_status(&base, false))) {
            Ok(listed) => listed,
            Err(e) if is_not_found(&e) => return Ok(DirListing::default()),
            Err(e) => return Err(self.error(dir, e)),
        };
        let mut level = DirListing::default();
        for status in &listed {
            let Some(info) = self.object_info(status) else {
                continue;
            };
            if status.isdir {
                level.dirs.push(info.key);
            } else {
                level.objects.push(info);
            }
        }
        Ok(level)
    }

    fn delete(&self, key: &str) -> Result<()> {
        match block_on(self.client.delete(&self.path(key), false)) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// HDFS has directories: a staging area goes with whatever a killed writer left in it
    /// (temporary files included), as on a local disk.
    fn remove_dir(&self, key: &str) -> Result<()> {
        match block_on(self.client.delete(&self.path(key), true)) {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }
}

/// A write to a temporary name, renamed over the key when closed.
///
/// Each piece handed to the HDFS client stays within one block, so that asking the NameNode
/// for a new block only ever happens at the start of a piece. The NameNode refuses a new block
/// (`NotReplicatedYetException`) while the DataNodes have not yet reported the block before the
/// one just filled; Hadoop's own client waits and asks again, but the Rust client gives up and
/// cannot carry on with that file. The writer then takes the file over again: it recovers the
/// file's lease (which closes it with every byte written so far), checks its length, reopens
/// it for append and writes the piece again.
struct HdfsWriter {
    client: Arc<Client>,
    writer: Option<hdfs_native::file::FileWriter>,
    buffer: Vec<u8>,
    /// Bytes the file holds so far.
    written: u64,
    /// The file's block size, asked for once the file may need a second block.
    block_size: Option<u64>,
    /// Set once the file is in place under its key.
    renamed: bool,
    partial: String,
    target: String,
    uri: String,
}

/// HDFS's smallest block size (`dfs.namenode.fs-limits.min-block-size`): a file that has not
/// grown past it has not needed a second block yet.
const MIN_BLOCK_SIZE: u64 = 1 << 20;

/// How often a refused block is asked for again, taking the file over each time.
const BLOCK_ATTEMPTS: u32 = 6;

/// How long a lease recovery may take before the write fails.
const LEASE_RECOVERY_LIMIT: Duration = Duration::from_secs(60);

impl HdfsWriter {
    fn send(&mut self) -> io::Result<()> {
        let mut chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(WRITE_CHUNK),
        ));
        while !chunk.is_empty() {
            let room = self.room_in_block(chunk.len() as u64)?;
            let piece = chunk.split_to(room.min(chunk.len() as u64) as usize);
            self.write_piece(piece)?;
        }
        Ok(())
    }

    /// How many of the next `wanted` bytes fit in the block being written.
    fn room_in_block(&mut self, wanted: u64) -> io::Result<u64> {
        if self.block_size.is_none() && self.written + wanted <= MIN_BLOCK_SIZE {
            return Ok(wanted);
        }
        let block = self.block_size()?;
        Ok(block - self.written % block)
    }

    fn block_size(&mut self) -> io::Result<u64> {
        if let Some(size) = self.block_size {
            return Ok(size);
        }
        let status =
            block_on(self.client.get_file_info(&self.partial)).map_err(io::Error::other)?;
        let size = status
            .blocksize
            .filter(|&size| size > 0)
            .ok_or_else(|| io::Error::other(format!("{}: no block size", self.partial)))?;
        self.block_size = Some(size);
        Ok(size)
    }

    /// Writes a piece that lies within one block, taking the file over when the NameNode
    /// refuses the block it starts.
    fn write_piece(&mut self, piece: Bytes) -> io::Result<()> {
        let len = piece.len() as u64;
        let mut attempt = 0;
        loop {
            let writer = self.writer.as_mut().expect("writer open until finish");
            match block_on(writer.write_bytes(piece.clone())) {
                Ok(_) => {
                    self.written += len;
                    return Ok(());
                }
                Err(e) if is_not_replicated_yet(&e) && attempt + 1 < BLOCK_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(200 << attempt));
                    self.take_over_again()?;
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }

    /// Closes the file through lease recovery, checks it holds every byte written, and
    /// reopens it for append.
    fn take_over_again(&mut self) -> io::Result<()> {
        // The client's writer is of no more use: it has already let go of the block it filled.
        drop(self.writer.take());
        let started = Instant::now();
        while !block_on(self.client.recover_lease(&self.partial)).map_err(io::Error::other)? {
            if started.elapsed() > LEASE_RECOVERY_LIMIT {
                return Err(io::Error::other(format!(
                    "{}: the NameNode did not close the file within {} s",
                    self.partial,
                    LEASE_RECOVERY_LIMIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        let status =
            block_on(self.client.get_file_info(&self.partial)).map_err(io::Error::other)?;
        if status.length as u64 != self.written {
            return Err(io::Error::other(format!(
                "{}: {} bytes written but {} kept after the NameNode refused a block",
                self.partial, self.written, status.length
            )));
        }
        let reopened = block_on(self.client.append(&self.partial)).map_err(io::Error::other)?;
        self.writer = Some(reopened);
        Ok(())
    }
}

/// True for the NameNode's refusal of a new block while an earlier one is not yet reported.
fn is_not_replicated_yet(e: &HdfsError) -> bool {
    matches!(e, HdfsError::RPCError(class, _) if class.ends_with("NotReplicatedYetException"))
}

impl Write for HdfsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= WRITE_CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl HdfsWriter {
    /// Sends what is left, closes the temporary file and renames it to the key, replacing
    /// what is there when `overwrite`; otherwise returns false (and removes the temporary
    /// file) when the key already exists.
    fn close_and_rename(mut self, overwrite: bool) -> Result<bool> {
        let remote = |uri: &str, e: Box<dyn std::error::Error + Send + Sync>| Error::Remote {
            uri: uri.to_owned(),
            cause: e,
        };
        if !self.buffer.is_empty() {
            self.send().map_err(|e| remote(&self.uri, Box::new(e)))?;
        }
        let mut writer = self.writer.take().expect("writer open until finish");
        block_on(writer.close()).map_err(|e| remote(&self.uri, Box::new(e)))?;
        match block_on(self.client.rename(&self.partial, &self.target, overwrite)) {
            Ok(()) => {
                self.renamed = true;
                Ok(true)
            }
            // Dropping the writer removes the temporary file.
            Err(HdfsError::AlreadyExists(_)) if !overwrite => Ok(false),
            Err(e) => Err(remote(&self.uri, Box::new(e))),
        }
    }
}

impl ObjectWriter for HdfsWriter {
    fn finish(self: Box<Self>) -> Result<()> {
        self.close_and_rename(true).map(|_| ())
    }
}

impl Drop for HdfsWriter {
    fn drop(&mut self) {
        if self.renamed {
            return;
        }
        // Abandoned or failed: close what was written and remove the temporary file.
        if let Some(mut writer) = self.writer.take() {
            let _ = block_on(writer.close());
        }
        let _ = block_on(self.client.delete(&self.partial, false));
    }
}
