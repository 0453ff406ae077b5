//! Staging, resuming and publishing a fold; removing originals after an in-place fold.
//!
//! The catalog is the commit point: every store makes an object visible only when it is
//! complete and durable (local and HDFS: temporary name, then rename; S3: a completed upload),
//! and the catalog is written last.

use super::walk::SourceEntry;
use super::write::{external_copy_is_current, Sources};
use super::FoldOptions;
use crate::error::{Error, IoContext, Result};
use crate::index::catalog::META_THRESHOLD;
use crate::index::container::WrittenContainer;
use crate::index::{Catalog, CatalogRow, Codec, Container, EntryKind};
use crate::layout::{container_key, Layout, CATALOG_KEY, CONTAINERS_PREFIX, STAGING_KEY};
use crate::progress::Progress;
use crate::read::Dataset;
use crate::store::{LocalStore, ReadPolicy, Store};
use crate::time::mtime_ns;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key recording an unfinished fold's settings.
const PARAMS_KEY: &str = crate::layout::FOLD_PARAMS_KEY;

/// Refuses a destination that overlaps the source or already holds something else.
/// `src` is `None` when the source is not a local directory (nothing to overlap).
pub fn check_new_root(src: Option<&Path>, dst: &Path) -> Result<()> {
    if let Some(src) = src {
        let (src_abs, dst_abs) = (absolute(src)?, absolute(dst)?);
        if src_abs.starts_with(&dst_abs) || dst_abs.starts_with(&src_abs) {
            return Err(Error::Refused {
                path: dst.to_path_buf(),
                reason: format!("the destination and the source {} overlap", src.display()),
            });
        }
    }
    // Only a fold's own files mark an unfinished fold (its settings, or containers whose
    // catalog is missing): an empty `.sheaf/` beside user files must not let a fold overwrite
    // them.
    let unfinished_fold =
        dst.join(PARAMS_KEY).is_file() || holds_containers(&dst.join(CONTAINERS_PREFIX));
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

/// True when a directory holds at least one file named like a container.
fn holds_containers(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut children| {
        children.any(|c| {
            c.is_ok_and(|c| {
                let name = c.file_name();
                let name = name.to_string_lossy();
                name.starts_with('g') && name.ends_with(".sheaf")
            })
        })
    })
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
pub fn refuse_published(store: &dyn Store) -> Result<()> {
    if store.len(CATALOG_KEY)?.is_some() {
        return Err(Error::Refused {
            path: PathBuf::from(store.uri("")),
            reason: "already holds a published sheaf dataset: fold into a new directory, or remove it first".into(),
        });
    }
    Ok(())
}

/// Refuses a remote destination that holds objects but no unfinished fold.
pub fn check_remote_root(store: &dyn Store) -> Result<()> {
    let objects = store.list("")?;
    let unfinished_fold = objects
        .iter()
        .any(|o| o.key == PARAMS_KEY || o.key.starts_with(CONTAINERS_PREFIX));
    if !objects.is_empty() && !unfinished_fold {
        return Err(Error::Refused {
            path: PathBuf::from(store.uri("")),
            reason: "the destination is not empty and holds no unfinished fold: choose an empty or new prefix".into(),
        });
    }
    Ok(())
}

/// Holds the exclusive fold lock of a dataset root for as long as it lives.
pub struct FoldLock {
    /// Held open: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl Drop for FoldLock {
    fn drop(&mut self) {
        // Removed while still held, so a later fold never locks a stale inode we unlinked.
        let _ = fs::remove_file(&self.path);
    }
}

/// Takes the fold lock of a dataset root, so two folds never write the same root at once.
pub fn lock_root(layout: &Layout) -> Result<FoldLock> {
    use std::os::fd::AsRawFd;
    let dir = layout.sheaf_dir();
    if fs::symlink_metadata(&dir).is_ok_and(|meta| !meta.is_dir()) {
        return Err(Error::Refused {
            path: dir,
            reason: "is not a directory (a symlink?): sheaf writes its containers only into a real .sheaf directory".into(),
        });
    }
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
    refuse_published(&LocalStore::new(layout.root()))?;
    Ok(FoldLock { _file: file, path })
}

/// Records this fold's settings in the staging area. Containers left by an unfinished fold
/// with other settings are discarded (nothing references them); with the same settings they are
/// kept for reuse.
pub fn prepare_staging(store: &dyn Store, options: &FoldOptions) -> Result<()> {
    let params = describe(options);
    let same = match store.read(PARAMS_KEY) {
        Ok(old) => old == params.as_bytes(),
        Err(Error::NotFound { .. }) => false,
        Err(e) => return Err(e),
    };
    if !same {
        for stale in store.list(CONTAINERS_PREFIX)? {
            store.delete(&stale.key)?;
        }
        let mut out = store.create(PARAMS_KEY)?;
        out.write_all(params.as_bytes())
            .ctx("write", store.uri(PARAMS_KEY))?;
        out.finish()?;
    }
    Ok(())
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
    store: &Arc<dyn Store>,
    name: &str,
    planned: &[SourceEntry],
    sources: &Sources,
    options: &FoldOptions,
) -> Option<CatalogRow> {
    let key = container_key(name);
    store.len(&key).ok()??;
    let container = Container::open_in(store, &key, None, ReadPolicy::SEQUENTIAL).ok()?;
    let index = container.index();
    if index.len() != planned.len() {
        return None;
    }
    let unchanged = planned.iter().enumerate().all(|(row, source)| {
        let entry = index.entry(row);
        let copied = match (entry.kind, sources.copy_externals_to) {
            (EntryKind::External, Some(dst)) => external_copy_is_current(dst, source),
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
    let written = WrittenContainer {
        file_len: footer.index_offset + footer.index_len + crate::index::footer::FOOTER_LEN as u64,
        footer,
        content_id: container.content_id().ok()?,
        first_path: index.path(0).to_vec(),
        last_path: index.path(index.len() - 1).to_vec(),
    };
    Some(written.catalog_row(name))
}

/// Removes containers that an earlier, interrupted run of the same fold left but this run's
/// plan does not list (the source shrank in between), and temporary files of writes that never
/// finished, so no orphan outlives the publish.
pub fn remove_unlisted_containers(store: &dyn Store, rows: &[CatalogRow]) -> Result<()> {
    let listed: HashSet<String> = rows.iter().map(|r| container_key(&r.name)).collect();
    for object in store.list(CONTAINERS_PREFIX)? {
        if !listed.contains(&object.key) {
            store.delete(&object.key)?;
        }
    }
    Ok(())
}

/// Writes the catalog, the moment the dataset becomes visible (an atomic rename or a single
/// object PUT), then removes the staging area.
pub fn publish_catalog(
    store: &dyn Store,
    rows: Vec<CatalogRow>,
    options: &FoldOptions,
) -> Result<Vec<CatalogRow>> {
    let metadata = HashMap::from([(META_THRESHOLD.to_owned(), options.threshold.to_string())]);
    let catalog = Catalog::new(rows, metadata);
    let bytes = catalog.to_bytes()?;
    let mut out = store.create(CATALOG_KEY)?;
    out.write_all(&bytes).ctx("write", store.uri(CATALOG_KEY))?;
    out.finish()?;
    store.delete(PARAMS_KEY)?;
    store.remove_dir(STAGING_KEY)?;
    Ok(catalog.rows().to_vec())
}

/// After an in-place fold: re-reads every container and checks every folded entry (large files
/// stay where they are, so they are not re-read), then
/// deletes each folded original that is unchanged since it was folded. Returns (removed,
/// changed-and-kept).
pub fn remove_originals(layout: &Layout, progress: &dyn Progress) -> Result<(u64, u64)> {
    let dataset = Dataset::open(layout.root())?;
    refuse_unverified(&dataset, progress)?;
    remove_unchanged(&dataset, progress, |entry| {
        let original = layout.external(&entry.path);
        let Ok(meta) = fs::symlink_metadata(&original) else {
            return Ok(Original::Gone);
        };
        let same_kind = match entry.kind {
            EntryKind::Symlink => meta.file_type().is_symlink(),
            _ => meta.file_type().is_file(),
        };
        if same_kind && meta.len() == entry.len && mtime_ns(&meta) == entry.mtime_ns {
            fs::remove_file(&original).ctx("remove original", &original)?;
            return Ok(Original::Removed);
        }
        Ok(Original::Changed(original.display().to_string()))
    })
}

/// After an in-place fold of a store: re-reads every container and checks every folded entry,
/// then deletes each folded object whose length and modification time are unchanged since the
/// fold listed it. Returns (removed, changed-and-kept).
pub fn remove_original_objects(
    store: &Arc<dyn Store>,
    progress: &dyn Progress,
) -> Result<(u64, u64)> {
    let dataset = Dataset::open_in(Arc::clone(store))?;
    refuse_unverified(&dataset, progress)?;
    let now: HashMap<String, (u64, i64)> = store
        .list("")?
        .into_iter()
        .map(|o| (o.key, (o.len, o.mtime_ns)))
        .collect();
    remove_unchanged(&dataset, progress, |entry| {
        // Object stores hold UTF-8 keys only, so every folded path is one.
        let key = String::from_utf8_lossy(&entry.path).into_owned();
        match now.get(&key) {
            None => Ok(Original::Gone),
            Some(&(len, mtime_ns)) if len == entry.len && mtime_ns == entry.mtime_ns => {
                store.delete(&key)?;
                Ok(Original::Removed)
            }
            Some(_) => Ok(Original::Changed(store.uri(&key))),
        }
    })
}

/// What became of one folded original.
enum Original {
    /// Deleted: it was unchanged since the fold.
    Removed,
    /// Kept: it changed after it was folded (named for the warning).
    Changed(String),
    /// Already gone.
    Gone,
}

/// Offers every folded entry (files and symlinks) of a verified dataset to `remove`, counting
/// and reporting what it did. Returns (removed, changed-and-kept).
fn remove_unchanged(
    dataset: &Dataset,
    progress: &dyn Progress,
    mut remove: impl FnMut(&crate::index::Entry) -> Result<Original>,
) -> Result<(u64, u64)> {
    progress.phase("remove originals", dataset.entry_count(), 0);
    let (mut removed, mut changed) = (0, 0);
    for item in dataset.walk() {
        let (_, entry) = item?;
        if !entry.kind.is_stored() {
            continue;
        }
        match remove(&entry)? {
            Original::Removed => removed += 1,
            Original::Changed(name) => {
                progress.warn(&format!("kept {name}: it changed after it was folded"));
                changed += 1;
            }
            Original::Gone => {}
        }
        progress.advance(1, 0);
    }
    Ok((removed, changed))
}

/// Fails, keeping every original, unless every container re-reads clean.
fn refuse_unverified(dataset: &Dataset, progress: &dyn Progress) -> Result<()> {
    let report = crate::read::verify::verify_containers(dataset, progress);
    match report.faults.first() {
        Some(fault) => Err(Error::corrupt(
            &fault.file,
            format!(
                "verification after the fold failed, originals kept: {}",
                fault.problem
            ),
        )),
        None => Ok(()),
    }
}
