//! Where bytes live: one small trait over the local filesystem, HDFS and object stores, and
//! the URI parsing that picks a back-end.
//!
//! Keys are relative paths under a store's root, `/`-separated (`.sheaf/catalog.sheaf`,
//! `train/big.bin`). Back-ends keep their own error types private and convert them into
//! [`crate::Error`] naming the URI of the object that failed.

mod fault_guard;
mod file;
#[cfg(feature = "hdfs")]
mod hdfs;
mod local;
mod mapped;
pub mod memory;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
mod object;
mod parallel;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure", feature = "hdfs"))]
mod runtime;

pub use fault_guard::caught as faults_caught;
pub use file::{open_file, uri_of, OpenAs, StoredFile};
#[cfg(feature = "hdfs")]
pub use hdfs::HdfsBackend;
pub(crate) use local::{open_nofollow, read_expected, stream_file, Writeback};
pub use local::{LocalLock, LocalStore};
pub use mapped::{Access, MappedFile, Pages, ReadPolicy, PAGE};
#[cfg(any(feature = "s3", feature = "gcs", feature = "azure"))]
pub use object::ObjectBackend;
pub use parallel::{read_chunks_placed, Place};

use crate::error::{Error, Result};
use std::ffi::OsStr;
use std::fmt::Debug;
use std::io::Write;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Size of one read when an object is streamed.
pub const CHUNK: u64 = 8 << 20;

/// What a file of a store is now: enough to tell whether it changed since it was folded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// A regular file, a symlink, or something else.
    pub kind: FileKind,
    /// Length in bytes (a symlink's: its target's length).
    pub len: u64,
    /// Last modification, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// The kinds of file [`FileStat`] tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file (every object of an object store).
    File,
    /// A symbolic link.
    Symlink,
    /// A directory, device, FIFO or socket.
    Other,
}

/// Answers [`FileStat`]s for keys: what [`Store::file_stats`] returns.
pub trait FileStats {
    /// What `key` is now, or `None` when nothing is there.
    fn stat(&self, key: &[u8]) -> Result<Option<FileStat>>;
}

/// The default [`FileStats`]: one listing of the store, by key.
struct ListedStats(std::collections::HashMap<String, (u64, i64)>);

impl FileStats for ListedStats {
    fn stat(&self, key: &[u8]) -> Result<Option<FileStat>> {
        let Ok(key) = std::str::from_utf8(key) else {
            return Ok(None);
        };
        Ok(self.0.get(key).map(|&(len, mtime_ns)| FileStat {
            kind: FileKind::File,
            len,
            mtime_ns,
        }))
    }
}

/// An exclusive lock taken by [`Store::lock`]; dropping it releases the lock.
pub struct StoreLock(#[allow(dead_code)] Box<dyn Send + Sync>);

impl StoreLock {
    /// Wraps whatever holds a back-end's lock for as long as it lives.
    pub(crate) fn new(held: impl Send + Sync + 'static) -> Self {
        Self(Box::new(held))
    }
}

impl Debug for StoreLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLock")
    }
}

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

    /// Creates `key` holding `bytes` only if nothing is there yet, atomically: of two writers
    /// racing for one key exactly one gets `true`; the other gets `false` and the key keeps
    /// the winner's bytes. The commit of a generation (local: `renameat2` without replacing,
    /// or a hard link; HDFS: create, then rename without overwriting; object stores: a
    /// conditional PUT, `If-None-Match: *`). Durable when it returns `true`.
    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<bool>;

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

    /// Starts a streamed write of a dataset's file at `key` (a copied external file), which
    /// gets `meta` where the store keeps modes and times. This default writes a UTF-8 key with
    /// [`Store::create`] and drops the metadata: object stores keep neither.
    fn create_file(&self, key: &[u8], meta: FileMeta) -> Result<Box<dyn ObjectWriter>> {
        let _ = meta;
        self.create(utf8_file_key(self.uri(""), key)?)
    }

    /// True when `key` already holds a finished copy of a file of `len` bytes and `meta` (a
    /// resumed fold need not copy it again): its length matches, and where the store keeps
    /// times (set only when a copy finishes) its modification time too.
    fn holds_copy(&self, key: &[u8], len: u64, meta: FileMeta) -> bool {
        let _ = meta;
        utf8_file_key(self.uri(""), key)
            .and_then(|key| self.len(key))
            .is_ok_and(|found| found == Some(len))
    }

    /// Removes the directory `key` and everything under it, where the store has directories
    /// (object stores have none: their keys go when deleted, so this default does nothing).
    fn remove_dir(&self, key: &str) -> Result<()> {
        let _ = key;
        Ok(())
    }

    /// Opens `key` for many ranged reads, when the back-end can serve them cheaper that way
    /// than by [`Store::read_range`] each; `None` (the default) when it cannot. Callers use
    /// [`open_ranges`].
    fn ranges(&self, _key: &str) -> Result<Option<Arc<dyn RangeReader>>> {
        Ok(None)
    }

    /// True when reading ranges of one object side by side is faster than one after another
    /// (a remote store, where every request waits a round trip); false for a local disk,
    /// which streams a file in order best.
    fn ranges_in_parallel(&self) -> bool {
        true
    }

    /// The root directory, when the store is the local filesystem: readers map files there
    /// instead of issuing reads, and names need not be UTF-8.
    fn local_root(&self) -> Option<&Path> {
        None
    }

    /// True when the root holds nothing at all (or does not exist yet): a fold may write a new
    /// dataset there without mixing with anyone's files.
    fn is_empty(&self) -> Result<bool> {
        let level = self.list_dir("")?;
        Ok(level.objects.is_empty() && level.dirs.is_empty())
    }

    /// Takes an exclusive lock named by `key`, held until the returned guard is dropped, where
    /// the store has locks (the local filesystem); `None` where it has none, so writers there
    /// rely on their commit alone.
    fn lock(&self, key: &str) -> Result<Option<StoreLock>> {
        let _ = key;
        Ok(None)
    }

    /// A view of what the store's files are now, to tell whether each changed since it was
    /// folded. This default lists the store once, so asking about a million keys costs one
    /// listing rather than a million requests; the local filesystem asks per key instead.
    fn file_stats(&self) -> Result<Box<dyn FileStats + '_>> {
        let listed = self
            .list("")?
            .into_iter()
            .map(|o| (o.key, (o.len, o.mtime_ns)))
            .collect();
        Ok(Box::new(ListedStats(listed)))
    }

    /// Deletes the dataset file at `key` (a symlink itself, not what it names); deleting a
    /// missing file is not an error. This default deletes a UTF-8 key with [`Store::delete`].
    fn delete_file(&self, key: &[u8]) -> Result<()> {
        self.delete(utf8_file_key(self.uri(""), key)?)
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

/// What a store may keep of a file besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileMeta {
    /// `st_mode`'s permission bits (the file type bits are ignored).
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// A file's key where a store names objects in UTF-8 (object stores and HDFS).
pub(crate) fn utf8_file_key(store_uri: String, key: &[u8]) -> Result<&str> {
    std::str::from_utf8(key).map_err(|_| Error::Refused {
        path: PathBuf::from(store_uri),
        reason: format!(
            "{:?} is not UTF-8: a large file with such a name can only be kept on a local filesystem",
            String::from_utf8_lossy(key)
        ),
    })
}

/// Ranged reads of one object, opened once: what a reader of many ranges of one object (a
/// container's entries) keeps, so that a back-end whose open costs a request (HDFS asks the
/// NameNode where the object's blocks are) pays it once rather than once a range.
pub trait RangeReader: Send + Sync + Debug {
    /// Bytes `range` of the object, as [`Store::read_range`] reads them.
    fn read_range(&self, range: Range<u64>) -> Result<Vec<u8>>;
}

/// Opens `key` of `store` for ranged reads ([`Store::ranges`], or each range through the store).
pub fn open_ranges(store: &Arc<dyn Store>, key: &str) -> Result<Arc<dyn RangeReader>> {
    match store.ranges(key)? {
        Some(reader) => Ok(reader),
        None => Ok(Arc::new(StoreRanges {
            store: store.clone(),
            key: key.to_owned(),
        })),
    }
}

/// Ranges read through the store one request each: what object stores do anyway.
#[derive(Debug)]
struct StoreRanges {
    store: Arc<dyn Store>,
    key: String,
}

impl RangeReader for StoreRanges {
    fn read_range(&self, range: Range<u64>) -> Result<Vec<u8>> {
        self.store.read_range(&self.key, range)
    }
}

/// A streamed write in progress. Dropping it without `finish` abandons the write.
pub trait ObjectWriter: Write + Send {
    /// Makes the written bytes durable and visible at the key, atomically.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Opens the store a dataset location names: a local path or `file://PATH` (any bytes, as the
/// OS gave them), or a URI: `hdfs://` or `viewfs://`, `s3://bucket/prefix`, `gs://bucket/prefix`,
/// `az://container/prefix`. The one parser of locations: every front end opens through it.
pub fn open(location: impl AsRef<OsStr>) -> Result<Arc<dyn Store>> {
    let uri = match locate(location)? {
        Location::Local(path) => return Ok(Arc::new(LocalStore::new(path))),
        Location::Uri(uri) => uri,
    };
    match uri.split_once("://") {
        None => Ok(Arc::new(LocalStore::new(uri))),
        #[cfg(feature = "hdfs")]
        Some(("hdfs" | "viewfs", _)) => Ok(Arc::new(HdfsBackend::open(&uri)?)),
        #[cfg(feature = "s3")]
        Some(("s3", _)) => Ok(Arc::new(ObjectBackend::s3(&uri)?)),
        #[cfg(feature = "gcs")]
        Some(("gs", _)) => Ok(Arc::new(ObjectBackend::gcs(&uri)?)),
        #[cfg(feature = "azure")]
        Some(("az", _)) => Ok(Arc::new(ObjectBackend::azure(&uri)?)),
        Some((scheme, _)) => Err(Error::Refused {
            path: PathBuf::from(&uri),
            reason: format!(
                "unsupported storage scheme `{scheme}://` (this build reads {})",
                supported_schemes()
            ),
        }),
    }
}

/// A suffix no other temporary file of this process (any thread) has used: its id and a
/// counter, so writers racing in one process never share a temporary name.
pub(crate) fn unique_suffix() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{n}", std::process::id())
}

/// Where a location is, as [`open`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A local path (`file://` removed): any bytes, as the OS gave them.
    Local(PathBuf),
    /// A URI of another store (`scheme://...`).
    Uri(String),
}

/// Tells a local path from a URI without opening anything: a fold walks a local source tree
/// with the filesystem's own calls, and any other through its store.
pub fn locate(location: impl AsRef<OsStr>) -> Result<Location> {
    let location = location.as_ref();
    let bytes = location.as_bytes();
    if let Some(path) = bytes.strip_prefix(b"file://") {
        return Ok(Location::Local(PathBuf::from(OsStr::from_bytes(path))));
    }
    if !bytes.windows(3).any(|w| w == b"://") {
        return Ok(Location::Local(PathBuf::from(location)));
    }
    match location.to_str() {
        Some(uri) => Ok(Location::Uri(uri.to_owned())),
        None => Err(Error::Refused {
            path: PathBuf::from(location),
            reason: "a URI must be valid UTF-8 (only local paths may hold other bytes)".into(),
        }),
    }
}

/// True when one store's root lies inside the other's (or they are the same): a fold or an
/// unfold between them would read what it writes. Local roots are compared resolved
/// (symlinks followed, missing parts appended); URIs by whole path segments.
pub fn overlaps(a: &dyn Store, b: &dyn Store) -> Result<bool> {
    match (a.local_root(), b.local_root()) {
        (Some(a), Some(b)) => {
            let (a, b) = (local::absolute(a)?, local::absolute(b)?);
            Ok(a.starts_with(&b) || b.starts_with(&a))
        }
        (None, None) => {
            let segments = |s: &dyn Store| format!("{}/", s.uri("").trim_end_matches('/'));
            let (a, b) = (segments(a), segments(b));
            Ok(a.starts_with(&b) || b.starts_with(&a))
        }
        _ => Ok(false),
    }
}

/// The name a store's root is known by, however it was spelled: a local root's canonical path,
/// the URI without a trailing `/` otherwise.
pub fn root_name(store: &dyn Store) -> String {
    match store.local_root() {
        Some(root) => local_key(&root.canonicalize().unwrap_or_else(|_| root.to_path_buf())),
        None => store.uri("").trim_end_matches('/').to_owned(),
    }
}

/// A local root's key: the path itself when it is UTF-8; otherwise, so that no two roots share
/// a key, `non-utf8:` and the path with `\` and every byte outside UTF-8 escaped (`\xNN`).
/// Neither form can be the other's: a canonical UTF-8 path starts with `/`.
fn local_key(root: &Path) -> String {
    let bytes = root.as_os_str().as_bytes();
    if let Ok(text) = std::str::from_utf8(bytes) {
        return text.to_owned();
    }
    let mut key = String::from("non-utf8:");
    for chunk in bytes.utf8_chunks() {
        key.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            key.push_str(&format!("\\x{byte:02x}"));
        }
    }
    key
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
