//! Writing one container: entries are read, hashed and compressed in parallel in bounded
//! batches while a writer appends the previous batch in path order.

use super::walk::SourceEntry;
use super::{Compression, FoldOptions};
use crate::error::{IoContext, Result};
use crate::index::container::WrittenContainer;
use crate::index::{Codec, ContainerWriter, Entry, EntryKind};
use crate::progress::Progress;
use filetime::FileTime;
use rayon::prelude::*;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
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
    pub src: &'a Path,
    /// Where external files are copied, or `None` when they stay in place.
    pub copy_externals_to: Option<&'a Path>,
}

/// An entry ready to append: its index row and the bytes to store.
struct Prepared {
    entry: Entry,
    stored: Vec<u8>,
}

/// Writes the entries to a new container at `path` and syncs it.
pub fn write_container(
    path: &Path,
    entries: &[SourceEntry],
    sources: &Sources,
    options: &FoldOptions,
    progress: &dyn Progress,
) -> Result<WrittenContainer> {
    let mut writer = ContainerWriter::create(path)?;
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
    let abs = sources.src.join(OsStr::from_bytes(&source.path));
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
            stored = fs::read_link(&abs)
                .ctx("read symlink", &abs)?
                .into_os_string()
                .into_vec();
            (entry.len, entry.xxh3) = (stored.len() as u64, xxh3_64(&stored));
        }
        EntryKind::File => {
            let content = fs::read(&abs).ctx("read", &abs)?;
            (entry.len, entry.xxh3) = (content.len() as u64, xxh3_64(&content));
            (entry.codec, stored) = compress(content, compression);
        }
        EntryKind::External => {
            let copy_to = sources
                .copy_externals_to
                .map(|dst| dst.join(OsStr::from_bytes(&source.path)));
            (entry.len, entry.xxh3) = hash_and_copy(&abs, copy_to.as_deref(), source)?;
        }
    }
    progress.advance(1, entry.len);
    Ok(Prepared { entry, stored })
}

use std::os::unix::ffi::OsStringExt;

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

/// Streams a large file once, hashing it and, when folding to a new root, copying it there
/// with its mode and mtime. Returns its length and xxh3.
fn hash_and_copy(abs: &Path, copy_to: Option<&Path>, source: &SourceEntry) -> Result<(u64, u64)> {
    let mut reader = File::open(abs).ctx("open", abs)?;
    let mut out = match copy_to {
        Some(dst) => {
            if let Some(parent) = dst.parent() {
                fs::create_dir_all(parent).ctx("create directory", parent)?;
            }
            Some((File::create(dst).ctx("create", dst)?, dst))
        }
        None => None,
    };
    let mut hasher = Xxh3::new();
    let mut chunk = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = reader.read(&mut chunk).ctx("read", abs)?;
        if n == 0 {
            break;
        }
        hasher.update(&chunk[..n]);
        len += n as u64;
        if let Some((file, dst)) = out.as_mut() {
            file.write_all(&chunk[..n]).ctx("write", *dst)?;
        }
    }
    if let Some((file, dst)) = out {
        file.sync_all().ctx("sync", dst)?;
        drop(file);
        copy_metadata(dst, source)?;
    }
    Ok((len, hasher.digest()))
}

fn copy_metadata(dst: &Path, source: &SourceEntry) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dst, fs::Permissions::from_mode(source.mode & 0o7777)).ctx("chmod", dst)?;
    let mtime = crate::read::unfold::file_time(source.mtime_ns);
    filetime::set_file_times(dst, mtime, mtime).ctx("set mtime", dst)
}

/// True when a copied external file at `dst` still matches the source entry (size and mtime),
/// so a resumed fold need not copy it again.
pub fn external_copy_is_current(dst: &Path, source: &SourceEntry) -> bool {
    match fs::symlink_metadata(dst) {
        Ok(meta) => {
            meta.is_file()
                && meta.len() == source.len
                && FileTime::from_last_modification_time(&meta)
                    == crate::read::unfold::file_time(source.mtime_ns)
        }
        Err(_) => false,
    }
}

/// The staging file a container is written to before it is renamed into place.
pub fn staging_path(staging: &Path, name: &str) -> PathBuf {
    staging.join(format!("{name}.partial"))
}
