//! Writing one container: entries are read, hashed and compressed in parallel in bounded
//! batches while a writer appends the previous batch in path order.

use super::walk::SourceEntry;
use super::{Compression, FoldOptions};
use crate::error::{Error, IoContext, Result};
use crate::index::container::WrittenContainer;
use crate::index::{Codec, ContainerWriter, Entry, EntryKind};
use crate::progress::Progress;
use crate::store::{ObjectWriter, Store};
use filetime::FileTime;
use rayon::prelude::*;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// Most entry bytes read ahead of the writer in one batch.
const BATCH_BYTES: u64 = 32 << 20;

/// Most entries in one batch.
const BATCH_ENTRIES: usize = 2048;

/// Where entries come from and where large files go.
pub struct Sources<'a> {
    /// The tree being folded.
    pub src: SourceTree<'a>,
    /// Where external files are copied (the dataset's store), or `None` when they stay in
    /// place.
    pub copy_externals_to: Option<&'a dyn Store>,
}

/// Where the tree being folded lives.
#[derive(Clone, Copy)]
pub enum SourceTree<'a> {
    /// A local directory.
    Local(&'a Path),
    /// Objects of a store (files and directories only).
    Store(&'a dyn Store),
}

impl SourceTree<'_> {
    /// Reads a small file whole.
    fn read(&self, source: &SourceEntry) -> Result<Vec<u8>> {
        match self {
            SourceTree::Local(root) => {
                let abs = root.join(OsStr::from_bytes(&source.path));
                let mut content = Vec::with_capacity(source.len as usize);
                crate::store::open_nofollow(&abs)
                    .ctx("open", &abs)?
                    .read_to_end(&mut content)
                    .ctx("read", &abs)?;
                Ok(content)
            }
            SourceTree::Store(store) => store.read(&remote_key(*store, &source.path)?),
        }
    }

    /// Streams a file through `sink` in bounded chunks.
    fn stream(
        &self,
        source: &SourceEntry,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        match self {
            SourceTree::Local(root) => {
                crate::store::stream_file(&root.join(OsStr::from_bytes(&source.path)), sink)?;
                Ok(())
            }
            SourceTree::Store(store) => {
                let key = remote_key(*store, &source.path)?;
                let len = store.len(&key)?.ok_or_else(|| Error::NotFound {
                    path: store.uri(&key),
                })?;
                store.read_chunks(&key, len, sink)
            }
        }
    }
}

/// An entry ready to append: its index row and the bytes to store.
struct Prepared {
    entry: Entry,
    stored: Vec<u8>,
}

/// Writes the entries to a new container `key` of `store`; it becomes visible, durable and
/// whole, when this returns.
pub fn write_container(
    store: &dyn Store,
    key: &str,
    entries: &[SourceEntry],
    sources: &Sources,
    options: &FoldOptions,
    progress: &dyn Progress,
) -> Result<WrittenContainer> {
    let mut writer = ContainerWriter::new(store.create(key)?, PathBuf::from(store.uri(key)));
    let batches = split_batches(entries);
    let (tx, rx) = sync_channel::<Result<Vec<Prepared>>>(1);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for batch in batches {
                let prepared = batch
                    .par_iter()
                    .map(|e| prepare(e, sources, options.compression, progress))
                    .collect::<Result<Vec<_>>>();
                let failed = prepared.is_err();
                if tx.send(prepared).is_err() || failed {
                    break;
                }
            }
        });
        for batch in rx {
            for item in batch? {
                writer.add(item.entry, &item.stored)?;
            }
        }
        Ok::<_, crate::error::Error>(())
    })?;
    writer.finish()
}

fn split_batches(entries: &[SourceEntry]) -> Vec<&[SourceEntry]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, entry) in entries.iter().enumerate() {
        if i > start && (bytes + entry.len > BATCH_BYTES || i - start >= BATCH_ENTRIES) {
            batches.push(&entries[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += if entry.kind.is_stored() { entry.len } else { 0 };
    }
    if start < entries.len() {
        batches.push(&entries[start..]);
    }
    batches
}

fn prepare(
    source: &SourceEntry,
    sources: &Sources,
    compression: Compression,
    progress: &dyn Progress,
) -> Result<Prepared> {
    let mut entry = Entry {
        path: source.path.clone(),
        kind: source.kind,
        offset: 0,
        stored_len: 0,
        len: 0,
        codec: Codec::None,
        xxh3: 0,
        mode: source.mode,
        mtime_ns: source.mtime_ns,
    };
    let mut stored = Vec::new();
    match source.kind {
        EntryKind::Dir => {}
        EntryKind::Symlink => {
            let SourceTree::Local(root) = sources.src else {
                unreachable!("stores hold no symlinks")
            };
            let abs = root.join(OsStr::from_bytes(&source.path));
            stored = fs::read_link(&abs)
                .ctx("read symlink", &abs)?
                .into_os_string()
                .into_vec();
            (entry.len, entry.xxh3) = (stored.len() as u64, xxh3_64(&stored));
        }
        EntryKind::File => {
            let content = sources.src.read(source)?;
            (entry.len, entry.xxh3) = (content.len() as u64, xxh3_64(&content));
            (entry.codec, stored) = compress(content, compression);
        }
        EntryKind::External => {
            (entry.len, entry.xxh3) = hash_and_copy(sources, source)?;
        }
    }
    progress.advance(1, entry.len);
    Ok(Prepared { entry, stored })
}

/// Applies the fold's compression setting to one entry's bytes.
fn compress(content: Vec<u8>, compression: Compression) -> (Codec, Vec<u8>) {
    let (level, keep_only_if_smaller) = match compression {
        Compression::None => return (Codec::None, content),
        Compression::Zstd(level) => (level, false),
        Compression::Auto(level) => (level, true),
    };
    match zstd::bulk::compress(&content, level) {
        Ok(packed) if !keep_only_if_smaller || packed.len() < content.len() => {
            (Codec::Zstd, packed)
        }
        _ => (Codec::None, content),
    }
}

/// Where a large file is being copied to while it is hashed.
enum CopyTarget {
    /// In place: the file stays where it is.
    Nowhere,
    /// A local dataset root: a plain file that gets the source's mode and mtime.
    Local { file: File, dst: PathBuf },
    /// A remote store: a streamed write that appears when finished.
    Remote {
        out: Box<dyn ObjectWriter>,
        uri: String,
    },
}

impl CopyTarget {
    fn open(copy_to: Option<&dyn Store>, source: &SourceEntry) -> Result<Self> {
        let Some(store) = copy_to else {
            return Ok(CopyTarget::Nowhere);
        };
        if let Some(root) = store.local_root() {
            let dst = root.join(OsStr::from_bytes(&source.path));
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent).ctx("create directory", parent)?;
            }
            let file = File::create(&dst).ctx("create", &dst)?;
            return Ok(CopyTarget::Local { file, dst });
        }
        let key = remote_key(store, &source.path)?;
        Ok(CopyTarget::Remote {
            out: store.create(&key)?,
            uri: store.uri(&key),
        })
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        match self {
            CopyTarget::Nowhere => Ok(()),
            CopyTarget::Local { file, dst } => file.write_all(chunk).ctx("write", dst.as_path()),
            CopyTarget::Remote { out, uri } => out.write_all(chunk).ctx("write", uri.as_str()),
        }
    }

    fn finish(self, source: &SourceEntry) -> Result<()> {
        match self {
            CopyTarget::Nowhere => Ok(()),
            CopyTarget::Local { file, dst } => {
                file.sync_all().ctx("sync", &dst)?;
                drop(file);
                copy_metadata(&dst, source)
            }
            CopyTarget::Remote { out, .. } => out.finish(),
        }
    }
}

/// Streams a large file once, hashing it and, when folding to a new root, copying it into the
/// dataset's store. Returns its length and xxh3.
fn hash_and_copy(sources: &Sources, source: &SourceEntry) -> Result<(u64, u64)> {
    let mut target = CopyTarget::open(sources.copy_externals_to, source)?;
    let mut hasher = Xxh3::new();
    let mut len = 0u64;
    sources.src.stream(source, &mut |chunk| {
        hasher.update(chunk);
        len += chunk.len() as u64;
        target.write(chunk)
    })?;
    target.finish(source)?;
    Ok((len, hasher.digest()))
}

/// The store key of an entry path: object stores and HDFS need UTF-8 names.
fn remote_key(store: &dyn Store, path: &[u8]) -> Result<String> {
    String::from_utf8(path.to_vec()).map_err(|_| Error::Refused {
        path: PathBuf::from(store.uri("")),
        reason: format!(
            "{:?} is not UTF-8: a large file with such a name can only be kept on a local filesystem",
            String::from_utf8_lossy(path)
        ),
    })
}

fn copy_metadata(dst: &Path, source: &SourceEntry) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dst, fs::Permissions::from_mode(source.mode & 0o7777)).ctx("chmod", dst)?;
    let mtime = crate::read::unfold::file_time(source.mtime_ns);
    filetime::set_file_times(dst, mtime, mtime).ctx("set mtime", dst)
}

/// True when a resumed fold need not copy an external file again: locally the copy has the
/// source's size and mtime; in a remote store (where writes appear only when complete) it
/// has the source's size.
pub fn external_copy_is_current(store: &dyn Store, source: &SourceEntry) -> bool {
    match store.local_root() {
        Some(root) => match fs::symlink_metadata(root.join(OsStr::from_bytes(&source.path))) {
            Ok(meta) => {
                meta.is_file()
                    && meta.len() == source.len
                    && FileTime::from_last_modification_time(&meta)
                        == crate::read::unfold::file_time(source.mtime_ns)
            }
            Err(_) => false,
        },
        None => remote_key(store, &source.path)
            .and_then(|key| store.len(&key))
            .is_ok_and(|len| len == Some(source.len)),
    }
}
