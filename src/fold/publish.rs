//! Staging, resuming and publishing a fold; removing originals after an in-place fold.
//!
//! The catalog is the commit point: every store makes an object visible only when it is
//! complete and durable (local and HDFS: temporary name, then rename; S3: a completed upload),
//! and the catalog is written last.

use super::walk::SourceEntry;
use super::write::{external_copy_is_current, Sources};
use super::FoldOptions;
use crate::error::{Error, IoContext, Result};
use crate::format::catalog::RootMeta;
use crate::format::container::WrittenContainer;
use crate::format::generation::{self, Commit};
use crate::format::{CatalogRow, Codec, Container, EntryKind};
use crate::layout::{container_key, CONTAINERS_PREFIX, FOLD_LOCK_KEY, STAGING_KEY};
use crate::progress::Progress;
use crate::read::Dataset;
use crate::store::{FileKind, ReadPolicy, Store, StoreLock};
use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The key recording an unfinished fold's settings.
const PARAMS_KEY: &str = crate::layout::FOLD_PARAMS_KEY;

/// Refuses a new root that overlaps the source or already holds something other than an
/// unfinished fold. Only a fold's own files mark an unfinished fold (its lock, its settings, a
/// plan, or containers whose catalog is missing): an empty `.sheaf/` beside user files must
/// not let a fold overwrite them. The lock is the first file a fold creates, so a fold
/// stopped at any moment after it can be run again.
pub fn check_new_root(src: &dyn Store, dst: &dyn Store) -> Result<()> {
    if crate::store::overlaps(src, dst)? {
        return Err(Error::Refused {
            path: PathBuf::from(dst.uri("")),
            reason: format!("the destination and the source {} overlap", src.uri("")),
        });
    }
    // Only a fold writes under `.sheaf/staging/` (its settings, plans, and their temporary
    // files while they are written).
    let unfinished_fold = dst.len(FOLD_LOCK_KEY)?.is_some()
        || dst.len(PARAMS_KEY)?.is_some()
        || !dst.list(&format!("{STAGING_KEY}/"))?.is_empty()
        || holds_containers(dst)?;
    if !unfinished_fold && !dst.is_empty()? && !holds_only_empty_sheaf_dirs(dst)? {
        return Err(Error::Refused {
            path: PathBuf::from(dst.uri("")),
            reason: "the destination is not empty and holds no unfinished fold: choose an empty or new directory or prefix".into(),
        });
    }
    Ok(())
}

/// True when the destination holds nothing but directories under `.sheaf/`, with no file in
/// them: what a fold killed before it wrote its first file leaves.
fn holds_only_empty_sheaf_dirs(dst: &dyn Store) -> Result<bool> {
    let top = dst.list_dir("")?;
    if !top.objects.is_empty() || top.dirs.iter().any(|dir| dir != crate::layout::SHEAF_DIR) {
        return Ok(false);
    }
    Ok(dst
        .list(&format!("{}/", crate::layout::SHEAF_DIR))?
        .is_empty())
}

/// True when the containers' directory holds at least one file named like a container.
fn holds_containers(store: &dyn Store) -> Result<bool> {
    let level = store.list_dir(CONTAINERS_PREFIX.trim_end_matches('/'))?;
    Ok(level.objects.iter().any(|o| {
        let name = o.key.rsplit('/').next().unwrap_or_default();
        name.starts_with('g') && name.ends_with(".sheaf")
    }))
}

/// Refuses to fold over a published dataset.
pub fn refuse_published(store: &dyn Store) -> Result<()> {
    if generation::newest(store)?.is_some() {
        return Err(Error::Refused {
            path: PathBuf::from(store.uri("")),
            reason: "already holds a published sheaf dataset: add to it with `--append`, fold into a new directory, or remove it first".into(),
        });
    }
    Ok(())
}

/// Takes the dataset's writer lock where the store has locks, so two folds never write the
/// same root at once, then checks again that no fold published while this one started.
pub fn lock_root(store: &dyn Store) -> Result<Option<StoreLock>> {
    let lock = lock_writer(store)?;
    refuse_published(store)?;
    Ok(lock)
}

/// Takes the dataset's writer lock where the store has locks (one fold at a time).
pub fn lock_writer(store: &dyn Store) -> Result<Option<StoreLock>> {
    store.lock(FOLD_LOCK_KEY)
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
        file_len: footer.file_len(),
        footer,
        content_id: container.content_id().ok()?,
        first_path: index.path(0).to_vec(),
        last_path: index.path(index.len() - 1).to_vec(),
        filter: Vec::new(),
    };
    Some(written.catalog_row(name, 0))
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

/// The mode and time of a local source tree's root directory, recorded in the dataset so its
/// root shows them (a mount's root, `stat ""`). Taken before anything is written: an in-place
/// fold's own writes change the root's time. A store's prefixes have none.
pub fn source_root_meta(src_dir: Option<&Path>) -> Option<RootMeta> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(src_dir?).ok()?;
    Some(RootMeta {
        mode: meta.mode(),
        mtime_ns: crate::time::mtime_ns(&meta),
    })
}

/// Commits generation 0, the moment the dataset becomes visible (a put-if-absent of its
/// generation file: of two folds racing into one root, one publishes and the other is refused),
/// then removes the staging area.
pub fn publish_catalog(
    store: &dyn Store,
    rows: Vec<CatalogRow>,
    options: &FoldOptions,
    entries: u64,
    root: Option<RootMeta>,
) -> Result<Vec<CatalogRow>> {
    let commit = Commit {
        operation: "fold",
        txn: generation::new_txn(),
        added: entries,
        removed: 0,
        threshold: Some(options.threshold),
        root,
    };
    let bytes = commit.encode(0, rows.clone())?;
    if !generation::commit(store, 0, &bytes, &commit.txn)? {
        return Err(Error::Refused {
            path: PathBuf::from(store.uri("")),
            reason: "another fold published a dataset here first; this fold's containers were not published".into(),
        });
    }
    store.delete(PARAMS_KEY)?;
    store.remove_dir(STAGING_KEY)?;
    Ok(rows)
}

/// How many times a writer re-reads the newest generation and tries again after losing the
/// race for the next number, before it gives up.
const COMMIT_ATTEMPTS: u32 = 64;

/// Commits a new generation on top of the newest: its containers are `new_rows` (one level,
/// disjoint and in path order) over every container of the newest generation. A writer that
/// loses the race for the number re-reads the newest and tries again on top of it (its
/// containers do not depend on the number). Returns the number committed.
pub fn commit_on_top(
    store: &dyn Store,
    mut base: generation::Snapshot,
    new_rows: Vec<CatalogRow>,
    commit: &Commit,
) -> Result<u64> {
    for attempt in 0..COMMIT_ATTEMPTS {
        let number = base.number + 1;
        let level = u32::try_from(number).map_err(|_| Error::Refused {
            path: PathBuf::from(store.uri("")),
            reason: "the dataset has run out of generation numbers (2^32): compact it".into(),
        })?;
        let mut rows = base.catalog.rows().to_vec();
        rows.extend(new_rows.iter().cloned().map(|row| CatalogRow {
            generation: level,
            ..row
        }));
        let bytes = commit.encode(number, rows)?;
        if generation::commit(store, number, &bytes, &commit.txn)? {
            return Ok(number);
        }
        // Lost the race: back off a little (more each time), then rebase on the newest.
        std::thread::sleep(std::time::Duration::from_millis(
            u64::from(attempt.min(10)) * 5,
        ));
        base = generation::read(store, generation::Which::Newest)?;
    }
    Err(Error::Contended {
        root: PathBuf::from(store.uri("")),
        reason: format!(
            "other writers committed first {COMMIT_ATTEMPTS} times in a row; nothing of this {} was committed",
            commit.operation
        ),
    })
}

/// After an in-place fold: re-reads every container and checks every folded entry (large files
/// stay where they are, so they are not re-read), then deletes each folded original (a file or
/// a symlink) whose kind, length and modification time are unchanged since the fold listed it.
/// Returns (removed, changed-and-kept).
pub fn remove_originals(store: &Arc<dyn Store>, progress: &dyn Progress) -> Result<(u64, u64)> {
    let dataset = Dataset::open_in(Arc::clone(store))?;
    refuse_unverified(&dataset, progress)?;
    let now = store.file_stats()?;
    remove_unchanged(&dataset, progress, |entry| {
        let Some(found) = now.stat(&entry.path)? else {
            return Ok(Original::Gone);
        };
        let kind = match entry.kind {
            EntryKind::Symlink => FileKind::Symlink,
            _ => FileKind::File,
        };
        if found.kind == kind && found.len == entry.len && found.mtime_ns == entry.mtime_ns {
            store.delete_file(&entry.path)?;
            return Ok(Original::Removed);
        }
        Ok(Original::Changed(
            store.uri(&String::from_utf8_lossy(&entry.path)),
        ))
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
    mut remove: impl FnMut(&crate::format::Entry) -> Result<Original>,
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
