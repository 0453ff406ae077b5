//! Where bytes live: one small trait over the local filesystem, HDFS and object stores, and
//! the URI parsing that picks a back-end.
//!
//! Keys are relative paths under a store's root, `/`-separated (`.sheaf/catalog.sheaf`,
//! `train/big.bin`). Back-ends keep their own error types private and convert them into
//! [`crate::Error`] naming the URI of the object that failed.

#[cfg(feature = "hdfs")]
mod hdfs;
mod local;
mod mapped;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
mod object;
mod parallel;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure", feature = "hdfs"))]
mod runtime;

#[cfg(feature = "hdfs")]
pub use hdfs::HdfsBackend;
pub use local::LocalStore;
pub(crate) use local::{open_nofollow, read_expected, stream_file, Writeback};
pub use mapped::{Access, MappedFile, Pages, ReadPolicy, PAGE};
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
pub use object::ObjectBackend;
pub use parallel::{read_chunks_placed, Place};

use crate::error::{Error, Result};
use std::fmt::Debug;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Size of one read when an object is streamed.
pub const CHUNK: u64 = 8 << 20;

/// Metadata of one stored object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store root.
    pub key: String,
    /// Length in bytes.
    pub len: u64,
    /// Last modification, nanoseconds since the epoch (0 when the store does not say).
    pub mtime_ns: i64,
}

/// One level of a store's tree: what [`Store::list_dir`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirListing {
    /// The objects directly in the directory (full keys), in no particular order.
    pub objects: Vec<ObjectInfo>,
    /// The key prefixes one level down (full keys, no trailing `/`), in no particular order.
    pub dirs: Vec<String>,
}

/// A place that holds a dataset's files.
pub trait Store: Send + Sync + Debug {
    /// The URI of `key`, for messages.
    fn uri(&self, key: &str) -> String;

    /// Bytes `range` of the object `key`: one request. Fails with `NotFound` for a missing
    /// object and `Corrupt` when the object is shorter than the range.
    fn read_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>>;

    /// The whole object.
    fn read(&self, key: &str) -> Result<Vec<u8>>;

    /// The object's length, or `None` when it does not exist.
    fn len(&self, key: &str) -> Result<Option<u64>>;

    /// Starts a streamed write of `key`. Nothing is visible at `key` until
    /// [`ObjectWriter::finish`] returns; finishing replaces any object already there.
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>>;

    /// Every object under `prefix` (a key prefix ending in `/`, or empty for all), recursively.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;

    /// One level of the tree at `dir` (a key prefix without its trailing `/`, empty for the
    /// root): the objects directly in it and the prefixes one level down. A missing `dir` is
    /// empty. Back-ends list one level per request so that a walk holds one directory at a
    /// time; this default derives the level from [`Store::list`], which holds everything under
    /// `dir`.
    fn list_dir(&self, dir: &str) -> Result<DirListing> {
        let prefix = match dir {
            "" => String::new(),
            _ => format!("{dir}/"),
        };
        let mut level = DirListing::default();
        // `list` is sorted, so the keys under one sub-prefix arrive together.
        for object in self.list(&prefix)? {
            match object.key[prefix.len()..].split_once('/') {
                None => level.objects.push(object),
                Some((name, _)) => {
                    let sub = format!("{prefix}{name}");
                    if level.dirs.last() != Some(&sub) {
                        level.dirs.push(sub);
                    }
                }
            }
        }
        Ok(level)
    }

    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, key: &str) -> Result<()>;

    /// The root directory, when the store is the local filesystem: readers map files there
    /// instead of issuing reads, and names need not be UTF-8.
    fn local_root(&self) -> Option<&Path> {
        None
    }

    /// Streams `len` bytes of `key` from the start through `sink` in bounded chunks.
    fn read_chunks(
        &self,
        key: &str,
        len: u64,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let mut at = 0;
        while at < len {
            let end = (at + CHUNK).min(len);
            sink(&self.read_range(key, at..end)?)?;
            at = end;
        }
        Ok(())
    }
}

/// A streamed write in progress. Dropping it without `finish` abandons the write.
pub trait ObjectWriter: Write + Send {
    /// Makes the written bytes durable and visible at the key, atomically.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Opens the store a dataset URI names: a plain path or `file://`, `hdfs://` or `viewfs://`,
/// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`.
pub fn open(uri: &str) -> Result<Arc<dyn Store>> {
    match uri.split_once("://") {
        None => Ok(Arc::new(LocalStore::new(uri))),
        Some(("file", path)) => Ok(Arc::new(LocalStore::new(path))),
        #[cfg(feature = "hdfs")]
        Some(("hdfs" | "viewfs", _)) => Ok(Arc::new(HdfsBackend::open(uri)?)),
        #[cfg(feature = "s3")]
        Some(("s3", _)) => Ok(Arc::new(ObjectBackend::s3(uri)?)),
        #[cfg(feature = "gcs")]
        Some(("gs", _)) => Ok(Arc::new(ObjectBackend::gcs(uri)?)),
        #[cfg(feature = "azure")]
        Some(("az", _)) => Ok(Arc::new(ObjectBackend::azure(uri)?)),
        Some((scheme, _)) => Err(Error::Refused {
            path: PathBuf::from(uri),
            reason: format!(
                "unsupported storage scheme `{scheme}://` (this build reads {})",
                supported_schemes()
            ),
        }),
    }
}

/// What this build can open, for messages: "local paths, s3://, ... and viewfs://".
fn supported_schemes() -> String {
    let built = [
        (true, "local paths"),
        (cfg!(feature = "s3"), "s3://"),
        (cfg!(feature = "gcs"), "gs://"),
        (cfg!(feature = "azure"), "az://"),
        (cfg!(feature = "hdfs"), "hdfs://"),
        (cfg!(feature = "hdfs"), "viewfs://"),
    ];
    let names: Vec<&str> = built
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    }
}
