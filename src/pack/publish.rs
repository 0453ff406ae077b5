//! Staging, resuming and publishing a fold; removing originals after an in-place fold.
//!
//! The catalog is the commit point: containers are renamed into place only when complete and
//! synced, and the catalog is written under a temporary name, synced and renamed last.

use super::walk::{mtime_ns, SourceEntry};
use super::write::{external_copy_is_current, Sources};
use super::FoldOptions;
use crate::error::{Error, IoContext, Result};
use crate::index::catalog::META_THRESHOLD;
use crate::index::container::WrittenContainer;
use crate::index::{Catalog, CatalogRow, Codec, Container, EntryKind};
use crate::layout::{Layout, SHEAF_DIR};
use crate::progress::Progress;
use crate::read::Dataset;
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Name of the file recording an unfinished fold's settings, under the staging directory.
const PARAMS_FILE: &str = "params";

/// Refuses a destination that overlaps the source or already holds something else.
pub fn check_new_root(src: &Path, dst: &Path) -> Result<()> {
    let (src_abs, dst_abs) = (absolute(src)?, absolute(dst)?);
    if src_abs.starts_with(&dst_abs) || dst_abs.starts_with(&src_abs) {
        return Err(Error::Refused {
            path: dst.to_path_buf(),
            reason: format!("the destination and the source {} overlap", src.display()),
        });
    }
    let unfinished_fold = dst.join(SHEAF_DIR).is_dir();
    match fs::read_dir(dst).map(|mut children| children.next().is_some()) {
        Ok(true) if !unfinished_fold => Err(Error::Refused {
            path: dst.to_path_buf(),
            reason: "the destination is not empty and holds no unfinished fold: choose an empty or new directory".into(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::create_dir_all(dst).ctx("create directory", dst),
        Err(e) => Err(Error::io("read directory", dst, e)),
    }
}

/// An absolute, symlink-resolved form of a path that may not exist yet: the longest existing
/// ancestor is canonicalized and the rest appended.
fn absolute(path: &Path) -> Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(base) => {
                return Ok(rest
                    .iter()
                    .rev()
                    .fold(base, |acc: PathBuf, c: &std::ffi::OsString| acc.join(c)))
            }
            Err(_) => {
                let name = existing.file_name().map(|n| n.to_os_string());
                match (name, existing.parent()) {
                    (Some(name), Some(parent)) => {
                        rest.push(name);
                        existing = if parent.as_os_str().is_empty() {
                            PathBuf::from(".")
                        } else {
                            parent.to_path_buf()
                        };
                    }
                    _ => {
                        return Err(Error::Refused {
                            path: path.to_path_buf(),
                            reason: "cannot resolve this path".into(),
                        })
                    }
                }
            }
        }
    }
}

/// Refuses to fold over a published dataset.
pub fn refuse_published(layout: &Layout) -> Result<()> {
    if layout.catalog().exists() {
        return Err(Error::Refused {
            path: layout.root().to_path_buf(),
            reason: "already holds a published sheaf dataset: fold into a new directory, or remove it first".into(),
        });
    }
    Ok(())
}

/// Holds the exclusive fold lock of a dataset root for as long as it lives.
pub struct FoldLock {
    file: File,
    path: PathBuf,
}

impl Drop for FoldLock {
    fn drop(&mut self) {
        // Removed while still held, so a later fold never locks a stale inode we unlinked.
        let _ = fs::remove_file(&self.path);
        let _ = &self.file;
    }
}

/// Takes the fold lock of a dataset root, so two folds never write the same root at once.
pub fn lock_root(layout: &Layout) -> Result<FoldLock> {
    use std::os::fd::AsRawFd;
    let dir = layout.sheaf_dir();
    fs::create_dir_all(&dir).ctx("create directory", &dir)?;
    let path = dir.join("fold.lock");
    let file = File::create(&path).ctx("create", &path)?;
    // SAFETY: flock on a descriptor we own; the lock is released when the file is closed.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(Error::Refused {
            path: layout.root().to_path_buf(),
            reason: "another fold is writing this dataset right now".into(),
        });
    }
    let same_inode = |a: &fs::Metadata, b: &fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    };
    let held = file.metadata().ctx("stat", &path)?;
    if !fs::metadata(&path).is_ok_and(|now| same_inode(&held, &now)) {
        return Err(Error::Refused {
            path: layout.root().to_path_buf(),
            reason: "another fold finished while this one started: run it again".into(),
        });
    }
    refuse_published(layout)?;
    Ok(FoldLock { file, path })
}

/// Makes the `.sheaf/` directories and the staging area. Containers left by an unfinished fold
/// with other settings are discarded (nothing references them); with the same settings they are
/// kept for reuse.
pub fn prepare_staging(layout: &Layout, options: &FoldOptions) -> Result<PathBuf> {
    let staging = layout.staging_dir();
    fs::create_dir_all(layout.containers_dir()).ctx("create directory", layout.containers_dir())?;
    fs::create_dir_all(&staging).ctx("create directory", &staging)?;
    let params_path = staging.join(PARAMS_FILE);
    let params = describe(options);
    let same = fs::read_to_string(&params_path).is_ok_and(|old| old == params);
    if !same {
        for stale in
            fs::read_dir(layout.containers_dir()).ctx("read directory", layout.containers_dir())?
        {
            let stale = stale.ctx("read directory", layout.containers_dir())?.path();
            fs::remove_file(&stale).ctx("remove stale container", &stale)?;
        }
        fs::write(&params_path, params).ctx("write", &params_path)?;
    }
    Ok(staging)
}

fn describe(options: &FoldOptions) -> String {
    format!(
        "threshold={} container_bytes={} container_entries={} compression={}\n",
        options.threshold, options.limits.bytes, options.limits.entries, options.compression
    )
}

/// A container left by an interrupted run of the same fold, if it holds exactly the planned
/// entries unchanged (and, for a new root, its large files are already copied).
pub fn reusable_container(
    layout: &Layout,
    name: &str,
    planned: &[SourceEntry],
    sources: &Sources,
    options: &FoldOptions,
) -> Option<CatalogRow> {
    let file = layout.container(name);
    if !file.is_file() {
        return None;
    }
    let container = Container::open(&file).ok()?;
    let index = container.index();
    if index.len() != planned.len() {
        return None;
    }
    let unchanged = planned.iter().enumerate().all(|(row, source)| {
        let entry = index.entry(row);
        let copied = match (entry.kind, sources.copy_externals_to) {
            (EntryKind::External, Some(dst)) => {
                external_copy_is_current(&dst.join(OsStr::from_bytes(&entry.path)), source)
            }
            _ => true,
        };
        entry.path == source.path
            && entry.kind == source.kind
            && entry.len == source.len
            && entry.mode == source.mode
            && entry.mtime_ns == source.mtime_ns
            && (entry.codec == Codec::None || options.compression != super::Compression::None)
            && copied
    });
    if !unchanged {
        return None;
    }
    let footer = *container.footer();
    Some(row_for(
        name,
        &WrittenContainer {
            file_len: footer.index_offset
                + footer.index_len
                + crate::index::footer::FOOTER_LEN as u64,
            footer,
            content_id: container.content_id(),
            first_path: index.path(0).to_vec(),
            last_path: index.path(index.len() - 1).to_vec(),
        },
    ))
}

/// Removes containers that an earlier, interrupted run of the same fold left but this run's
/// plan does not list (the source shrank in between), so no orphan outlives the publish.
pub fn remove_unlisted_containers(layout: &Layout, rows: &[CatalogRow]) -> Result<()> {
    let dir = layout.containers_dir();
    let listed: HashSet<&OsStr> = rows.iter().map(|r| OsStr::new(&r.name)).collect();
    for child in fs::read_dir(&dir).ctx("read directory", &dir)? {
        let child = child.ctx("read directory", &dir)?;
        if !listed.contains(child.file_name().as_os_str()) {
            let stale = child.path();
            fs::remove_file(&stale).ctx("remove stale container", &stale)?;
        }
    }
    Ok(())
}

/// The catalog row describing a written container.
pub fn row_for(name: &str, written: &WrittenContainer) -> CatalogRow {
    CatalogRow {
        name: name.to_owned(),
        first_path: written.first_path.clone(),
        last_path: written.last_path.clone(),
        entry_count: written.footer.entry_count,
        file_len: written.file_len,
        index_xxh3: written.footer.index_xxh3,
        content_id: written.content_id,
        generation: 0,
    }
}

/// Flushes a directory's entries (renames into it) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("sync directory", dir)
}

/// Writes the catalog under a temporary name, syncs it and renames it into place: the moment
/// the dataset becomes visible. The staging area goes afterwards.
pub fn publish_catalog(
    layout: &Layout,
    rows: Vec<CatalogRow>,
    options: &FoldOptions,
) -> Result<Vec<CatalogRow>> {
    let metadata = HashMap::from([(META_THRESHOLD.to_owned(), options.threshold.to_string())]);
    let catalog = Catalog::new(rows, metadata);
    let bytes = catalog.to_bytes()?;
    let partial = layout.staging_dir().join("catalog.partial");
    let mut file = File::create(&partial).ctx("create", &partial)?;
    file.write_all(&bytes).ctx("write", &partial)?;
    file.sync_all().ctx("sync", &partial)?;
    fs::rename(&partial, layout.catalog()).ctx("publish catalog", layout.catalog())?;
    sync_dir(&layout.sheaf_dir())?;
    fs::remove_dir_all(layout.staging_dir()).ctx("remove staging", layout.staging_dir())?;
    Ok(catalog.rows().to_vec())
}

/// After an in-place fold: re-reads every container from disk and checks every entry, then
/// deletes each folded original that is unchanged since it was folded. Returns (removed,
/// changed-and-kept).
pub fn remove_originals(layout: &Layout, progress: &dyn Progress) -> Result<(u64, u64)> {
    let dataset = Dataset::open(layout.root())?;
    let report = crate::read::verify::verify(&dataset, progress);
    if let Some(fault) = report.faults.first() {
        return Err(Error::corrupt(
            &fault.file,
            format!(
                "verification after the fold failed, originals kept: {}",
                fault.problem
            ),
        ));
    }
    progress.phase("remove originals", dataset.entry_count(), 0);
    let (mut removed, mut changed) = (0, 0);
    for item in dataset.walk() {
        let (_, entry) = item?;
        if !entry.kind.is_stored() {
            continue;
        }
        let original = layout.external(&entry.path);
        let Ok(meta) = fs::symlink_metadata(&original) else {
            continue;
        };
        let same_kind = match entry.kind {
            EntryKind::Symlink => meta.file_type().is_symlink(),
            _ => meta.file_type().is_file(),
        };
        if same_kind && meta.len() == entry.len && mtime_ns(&meta) == entry.mtime_ns {
            fs::remove_file(&original).ctx("remove original", &original)?;
            removed += 1;
        } else {
            progress.warn(&format!(
                "kept {}: it changed after it was folded",
                original.display()
            ));
            changed += 1;
        }
        progress.advance(1, 0);
    }
    Ok((removed, changed))
}
