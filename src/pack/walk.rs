//! Walking the source tree: every entry's metadata via lstat, symlinks never followed, in
//! parallel across directories.

use crate::error::{IoContext, Result};
use crate::index::path::SEPARATOR;
use crate::index::EntryKind;
use crate::layout::SHEAF_DIR;
use rayon::prelude::*;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One entry of the source tree, before its bytes are read.
#[derive(Clone, Debug)]
pub struct SourceEntry {
    /// Path relative to the source root.
    pub path: Vec<u8>,
    /// File, directory, symlink; regular files at or above the threshold are `External`.
    pub kind: EntryKind,
    /// Size from lstat.
    pub len: u64,
    /// `st_mode`.
    pub mode: u32,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// What the walk found besides entries.
#[derive(Debug, Default)]
pub struct WalkResult {
    /// Entries, unsorted.
    pub entries: Vec<SourceEntry>,
    /// Sockets, FIFOs and device nodes, which hold no data and are not folded.
    pub skipped_special: Vec<PathBuf>,
}

/// Walks `root`, classifying regular files by `threshold`. The top-level `.sheaf` directory is
/// skipped when `skip_sheaf_dir` (an in-place fold's own files); a fold to a new root refuses
/// a source holding one before it walks.
pub fn walk(root: &Path, threshold: u64, skip_sheaf_dir: bool) -> Result<WalkResult> {
    let mut result = walk_dir(root, &[], threshold)?;
    if skip_sheaf_dir {
        result.entries.retain(|e| !is_sheaf_dir_or_below(&e.path));
    }
    Ok(result)
}

fn is_sheaf_dir_or_below(path: &[u8]) -> bool {
    let top = SHEAF_DIR.as_bytes();
    path.starts_with(top) && (path.len() == top.len() || path[top.len()] == SEPARATOR)
}

fn walk_dir(dir: &Path, rel: &[u8], threshold: u64) -> Result<WalkResult> {
    let mut result = WalkResult::default();
    let mut subdirs = Vec::new();
    for child in fs::read_dir(dir).ctx("read directory", dir)? {
        let child = child.ctx("read directory", dir)?;
        let abs = child.path();
        let meta = child.metadata().ctx("stat", &abs)?;
        let mut path = rel.to_vec();
        if !path.is_empty() {
            path.push(SEPARATOR);
        }
        path.extend_from_slice(child.file_name().as_bytes());
        let Some(kind) = classify(&meta, threshold) else {
            result.skipped_special.push(abs);
            continue;
        };
        if kind == EntryKind::Dir {
            subdirs.push((abs, path.clone()));
        }
        result.entries.push(SourceEntry {
            path,
            kind,
            len: if kind == EntryKind::Dir {
                0
            } else {
                meta.len()
            },
            mode: meta.mode(),
            mtime_ns: mtime_ns(&meta),
        });
    }
    let nested: Vec<WalkResult> = subdirs
        .par_iter()
        .map(|(abs, path)| walk_dir(abs, path, threshold))
        .collect::<Result<_>>()?;
    for mut sub in nested {
        result.entries.append(&mut sub.entries);
        result.skipped_special.append(&mut sub.skipped_special);
    }
    Ok(result)
}

fn classify(meta: &Metadata, threshold: u64) -> Option<EntryKind> {
    let ty = meta.file_type();
    if ty.is_dir() {
        Some(EntryKind::Dir)
    } else if ty.is_symlink() {
        Some(EntryKind::Symlink)
    } else if ty.is_file() {
        Some(if meta.len() < threshold {
            EntryKind::File
        } else {
            EntryKind::External
        })
    } else {
        debug_assert!(
            ty.is_fifo() || ty.is_socket() || ty.is_block_device() || ty.is_char_device()
        );
        None
    }
}

/// Modification time of `meta` in nanoseconds since the epoch.
pub fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Walks every object of a store as a tree: objects are files (classified by `threshold`),
/// every key prefix ending in `/` is a directory. Object stores keep no modes or symlinks, so
/// files get mode 0644 and directories 0755. The top-level `.sheaf` prefix is skipped when
/// `skip_sheaf_dir` (an in-place fold's own objects) and refused otherwise.
pub fn walk_store(
    store: &dyn crate::store::Store,
    threshold: u64,
    skip_sheaf_dir: bool,
) -> Result<WalkResult> {
    let mut entries = Vec::new();
    let mut dirs = std::collections::BTreeSet::new();
    for object in store.list("")? {
        let path = object.key.into_bytes();
        if is_sheaf_dir_or_below(&path) && skip_sheaf_dir {
            continue;
        }
        if is_sheaf_dir_or_below(&path) {
            return Err(crate::error::Error::Refused {
                path: store.uri("").into(),
                reason:
                    "the source holds a top-level `.sheaf`, a name sheaf reserves for its own files"
                        .into(),
            });
        }
        let mut end = path.len();
        while let Some(i) = path[..end].iter().rposition(|&b| b == SEPARATOR) {
            dirs.insert(path[..i].to_vec());
            end = i;
        }
        let kind = if object.len < threshold {
            EntryKind::File
        } else {
            EntryKind::External
        };
        entries.push(SourceEntry {
            path,
            kind,
            len: object.len,
            mode: 0o100644,
            mtime_ns: object.mtime_ns,
        });
    }
    entries.extend(dirs.into_iter().map(|path| SourceEntry {
        path,
        kind: EntryKind::Dir,
        len: 0,
        mode: 0o040755,
        mtime_ns: 0,
    }));
    Ok(WalkResult {
        entries,
        skipped_special: Vec::new(),
    })
}
