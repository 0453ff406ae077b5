//! One object of a store opened for reading, wherever it lives: the handle the format and the
//! reader read bytes through, so that no caller above the store asks whether they are local.

use super::{open_ranges, MappedFile, RangeReader, ReadPolicy, Store};
use crate::error::{Error, IoContext, Result};
use std::ffi::OsStr;
use std::fmt;
use std::fs::File;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// The most a stream holds in memory at once.
const CHUNK_BYTES: usize = 1 << 20;

/// How a local file is to be read.
#[derive(Clone, Copy, Debug)]
pub enum OpenAs {
    /// Mapped, read under a policy: containers, read many times at many places.
    Mapped(ReadPolicy),
    /// Read with positioned reads and streamed: external files, read whole or by the range.
    Plain,
}

/// An object of a store, open for reading.
pub enum StoredFile {
    /// A local file, mapped.
    Mapped(MappedFile),
    /// A local file read with positioned reads.
    Plain { file: File, path: PathBuf, len: u64 },
    /// An object of a remote store, read by ranges.
    Remote {
        store: Arc<dyn Store>,
        key: String,
        len: u64,
        ranges: Arc<dyn RangeReader>,
    },
}

impl fmt::Debug for StoredFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoredFile({})", self.uri())
    }
}

/// Opens `key` of `store` for reading (local files never through a symlink, and a FIFO or
/// device is refused without blocking on it). `len`, when the caller knows it (a catalog's
/// record of a container), saves a remote store the request that would ask.
pub fn open_file(
    store: &Arc<dyn Store>,
    key: &[u8],
    how: OpenAs,
    len: Option<u64>,
) -> Result<StoredFile> {
    if let Some(root) = store.local_root() {
        let path = root.join(OsStr::from_bytes(key));
        return match how {
            OpenAs::Mapped(policy) => Ok(StoredFile::Mapped(MappedFile::open(&path, policy)?)),
            OpenAs::Plain => {
                let file = super::local::open_beneath(root, key).ctx("open", &path)?;
                let len = file.metadata().ctx("stat", &path)?.len();
                Ok(StoredFile::Plain { file, path, len })
            }
        };
    }
    let key = remote_key(key)?;
    let len = match len {
        Some(len) => len,
        None => store.len(key)?.ok_or_else(|| Error::NotFound {
            path: store.uri(key),
        })?,
    };
    Ok(StoredFile::Remote {
        store: store.clone(),
        key: key.to_owned(),
        len,
        ranges: open_ranges(store, key)?,
    })
}

/// Where `key` of `store` lives, for messages (any bytes: a local path need not be UTF-8).
pub fn uri_of(store: &dyn Store, key: &[u8]) -> String {
    match store.local_root() {
        Some(root) => root.join(OsStr::from_bytes(key)).display().to_string(),
        None => store.uri(&String::from_utf8_lossy(key)),
    }
}

/// A key of a remote store: object stores and HDFS name objects in UTF-8.
fn remote_key(key: &[u8]) -> Result<&str> {
    std::str::from_utf8(key).map_err(|_| Error::InvalidPath {
        path: String::from_utf8_lossy(key).into_owned(),
        reason: "is not UTF-8, which an object store key must be",
    })
}

impl StoredFile {
    /// The file's length when it was opened (for a remote object opened with a known length,
    /// that length).
    pub fn len(&self) -> u64 {
        match self {
            StoredFile::Mapped(mapped) => mapped.len(),
            StoredFile::Plain { len, .. } | StoredFile::Remote { len, .. } => *len,
        }
    }

    /// True for a file of no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where the file lives, for messages.
    pub fn uri(&self) -> String {
        match self {
            StoredFile::Mapped(mapped) => mapped.path().display().to_string(),
            StoredFile::Plain { path, .. } => path.display().to_string(),
            StoredFile::Remote { store, key, .. } => store.uri(key),
        }
    }

    /// Bytes `range`, exactly (a file shorter than the range is an error), unchecked.
    pub fn read_range(&self, range: Range<u64>) -> Result<Vec<u8>> {
        match self {
            StoredFile::Mapped(mapped) => Ok(mapped.read(range)?.to_vec()),
            StoredFile::Plain { file, path, .. } => {
                let mut bytes = vec![0; (range.end - range.start) as usize];
                file.read_exact_at(&mut bytes, range.start)
                    .ctx("read", path)?;
                Ok(bytes)
            }
            StoredFile::Remote { ranges, .. } => ranges.read_range(range),
        }
    }

    /// Streams the whole file through `sink` in bounded chunks; returns the bytes it passed
    /// (a local file is read to its end, however long it has become since it was opened).
    pub fn stream(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<u64> {
        match self {
            StoredFile::Mapped(mapped) => {
                for chunk in mapped.bytes().chunks(CHUNK_BYTES) {
                    sink(chunk)?;
                }
                Ok(mapped.len())
            }
            StoredFile::Plain { file, path, .. } => {
                let mut chunk = vec![0u8; CHUNK_BYTES];
                let mut seen = 0u64;
                loop {
                    let n = file.read_at(&mut chunk, seen).ctx("read", path)?;
                    if n == 0 {
                        return Ok(seen);
                    }
                    seen += n as u64;
                    sink(&chunk[..n])?;
                }
            }
            StoredFile::Remote {
                store, key, len, ..
            } => {
                let mut seen = 0u64;
                store.read_chunks(key, *len, &mut |chunk| {
                    seen += chunk.len() as u64;
                    sink(chunk)
                })?;
                Ok(seen)
            }
        }
    }
}
