//! Changes to a published dataset, each committed as a new generation on top of the newest:
//! `append` (a tree's files added under a prefix, replacing paths already there) and `remove`
//! (tombstones).

use super::compact::remove_containers;
use super::publish::commit_on_top;
use super::walk::{self, SourceEntry, Walked};
use super::write::{SourceTree, Sources};
use super::{
    check_options, open_source, refuse_reserved_name, root_store, FoldOptions, FoldSummary,
    Folding, Naming,
};
use crate::error::{Error, KindProblem, Result, Setting};
use crate::format::generation::{self, Commit, Snapshot};
use crate::format::path::{cmp_paths, display, normalize, SEPARATOR};
use crate::format::{CatalogRow, Codec, Container, ContainerWriter, Entry, EntryKind};
use crate::layout::{container_key, txn_container_name};
use crate::progress::Progress;
use crate::read::Dataset;
use crate::store::{ReadPolicy, Store};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Adds the tree at `src` to the published dataset at `root` under the dataset path `prefix`
/// (empty for the root) as one new generation: its files are folded into new containers (large
/// ones copied beside them), and a path the dataset already holds is replaced. Directories on
/// the way to `prefix` that the dataset lacks are added. Nothing is visible until the commit,
/// which, when another writer committed first, is retried on top of that writer's generation.
pub fn append(
    src: &Path,
    root: &Path,
    prefix: &[u8],
    options: &FoldOptions,
    progress: &dyn Progress,
) -> Result<FoldSummary> {
    let started = Instant::now();
    check_options(options)?;
    if options.remove_originals {
        return Err(Error::InvalidSetting {
            setting: Setting::RemoveOriginals,
            reason: "only applies to an in-place fold".into(),
        });
    }
    let prefix = normalize(prefix)?;
    let (src_store, src_dir) = open_source(src)?;
    let store = root_store(root)?;
    refuse_unfit_source(src, src_store.as_ref(), src_dir.as_deref(), &store, &prefix)?;
    let base = Dataset::open_in(Arc::clone(&store))?;
    let txn = generation::new_txn();
    let above = dirs_to_prefix(&base, &prefix, src_dir.as_deref(), crate::time::now_ns())?;
    progress.phase("append", 0, 0);
    let sources = Sources {
        src: SourceTree::of(src_dir.as_deref(), src_store.as_ref()),
        copy_externals_to: Some(store.as_ref()),
    };
    let mut folding = Folding::new(
        &store,
        &sources,
        options,
        progress,
        Naming::Change { txn: &txn },
    );
    let under = |walked: Result<Walked>| under_prefix(walked, &prefix);
    let ahead = above.into_iter().map(|e| Ok(Walked::Entry(e)));
    match &src_dir {
        Some(dir) => {
            let walk = walk::SortedWalk::new(dir, options.threshold, false)?;
            folding.consume_in_background(ahead.chain(walk.map(under)))?;
        }
        None => {
            let walk = walk::StoreWalk::new(src_store.as_ref(), options.threshold, false)?;
            folding.consume_in_background(ahead.chain(walk.map(under)))?;
        }
    }
    let Folding {
        rows, mut summary, ..
    } = folding;
    summary.dataset = root.to_path_buf();
    commit_folded(&base, &store, rows, txn, &mut summary)?;
    summary.objects_before = summary.files_folded + summary.symlinks + summary.files_kept;
    summary.objects_after = summary.containers + summary.files_kept + 1;
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Refuses a source that overlaps the dataset, or that would put its own top-level `.sheaf`
/// at the dataset's root (an append without a prefix).
pub(super) fn refuse_unfit_source(
    src: &Path,
    src_store: &dyn Store,
    src_dir: Option<&Path>,
    store: &Arc<dyn Store>,
    prefix: &[u8],
) -> Result<()> {
    if crate::store::overlaps(src_store, store.as_ref())? {
        return Err(Error::Refused {
            path: src.to_path_buf(),
            reason: format!("the source and the dataset {} overlap", store.uri("")),
        });
    }
    if let (Some(dir), true) = (src_dir, prefix.is_empty()) {
        refuse_reserved_name(dir)?;
    }
    Ok(())
}

/// Folds again, in place, a directory whose dataset is published: the small files, symlinks
/// and directories that are new or changed (kind, length, mode or time) since the dataset's
/// newest generation go into new containers, committed as the next generation; large files
/// stay where they are, as in any in-place fold. Files the dataset holds but the directory no
/// longer does (their originals removed after an earlier fold) stay in the dataset. With
/// `remove_originals`, every original unchanged since it was folded is then deleted.
pub(super) fn fold_changes(
    dir_name: &Path,
    store: &Arc<dyn Store>,
    dir: Option<&Path>,
    options: &FoldOptions,
    progress: &dyn Progress,
) -> Result<FoldSummary> {
    let started = Instant::now();
    let Some(dir) = dir else {
        return Err(Error::Refused {
            path: dir_name.to_path_buf(),
            reason: "folding a published dataset in place again needs a local directory".into(),
        });
    };
    let _lock = super::publish::lock_writer(store.as_ref())?;
    let base = Dataset::open_in(Arc::clone(store))?;
    let txn = generation::new_txn();
    progress.phase("fold", 0, 0);
    let sources = Sources {
        src: SourceTree::Local(dir),
        copy_externals_to: None,
    };
    let mut folding = Folding::new(
        store,
        &sources,
        options,
        progress,
        Naming::Change { txn: &txn },
    );
    let walk = walk::SortedWalk::new(dir, options.threshold, true)?;
    let changed = walk.filter(|walked| match walked {
        Ok(Walked::Entry(entry)) => changed_since(&base, entry),
        _ => true,
    });
    folding.consume_in_background(changed)?;
    let Folding {
        rows, mut summary, ..
    } = folding;
    summary.dataset = dir_name.to_path_buf();
    commit_folded(&base, store, rows, txn, &mut summary)?;
    if options.remove_originals {
        let (removed, changed) = super::publish::remove_originals(store, progress)?;
        summary.originals_removed = removed;
        summary.originals_changed = changed;
    }
    summary.objects_before = summary.files_folded + summary.symlinks + summary.files_kept;
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Commits the containers an append folded (`rows`, none when nothing was new) as the next
/// generation on top of `base`, after refusing to put a file where `base` has a directory
/// (the containers are then deleted), and records the generation in `summary`.
pub(super) fn commit_folded(
    base: &Dataset,
    store: &Arc<dyn Store>,
    rows: Vec<CatalogRow>,
    txn: String,
    summary: &mut FoldSummary,
) -> Result<()> {
    summary.generation = base.generation();
    if rows.is_empty() {
        return Ok(());
    }
    if let Err(e) = refuse_replaced_dirs(base, store, &rows) {
        remove_containers(store.as_ref(), &rows);
        return Err(e);
    }
    let commit = Commit {
        operation: "append",
        txn,
        added: summary.files_folded + summary.symlinks + summary.dirs + summary.files_kept,
        removed: 0,
        threshold: threshold_of(base),
        root: base.catalog().root_meta(),
    };
    summary.containers = rows.len() as u64;
    summary.bytes_stored = rows.iter().map(|r| r.file_len).sum();
    summary.generation = commit_on_top(store.as_ref(), snapshot_of(base), rows, &commit)?;
    Ok(())
}

/// True when the dataset lacks `entry` as the walk found it: a new path, or one whose kind,
/// mode, length or modification time changed since it was folded. A directory counts as
/// changed only when new or of another mode: its time moves whenever a file in it comes or
/// goes (removed originals included), which changes nothing the dataset serves.
fn changed_since(base: &Dataset, entry: &SourceEntry) -> bool {
    match base.lookup(&entry.path) {
        Ok(Some((_, held))) => {
            held.kind != entry.kind
                || held.mode != entry.mode
                || (entry.kind != EntryKind::Dir
                    && (held.len != entry.len || held.mtime_ns != entry.mtime_ns))
        }
        // Not found, or unreadable: fold it (a damaged container is then shadowed).
        _ => true,
    }
}

/// A walked entry of the source, with its dataset path under `prefix`.
pub(super) fn under_prefix(walked: Result<Walked>, prefix: &[u8]) -> Result<Walked> {
    let mut entry = match walked? {
        Walked::Entry(entry) => entry,
        special => return Ok(special),
    };
    if !prefix.is_empty() {
        let mut path = Vec::with_capacity(prefix.len() + 1 + entry.path.len());
        path.extend_from_slice(prefix);
        path.push(SEPARATOR);
        entry.prefix_len = path.len();
        path.extend_from_slice(&entry.path);
        entry.path = path;
    }
    Ok(Walked::Entry(entry))
}

/// Directory entries for `prefix` and every directory above it that the dataset does not
/// hold as a directory yet (a file there is replaced by the directory), in path order. The
/// prefix itself gets the source directory's mode and time when it is local; the others get
/// `made_ns`.
pub(super) fn dirs_to_prefix(
    base: &Dataset,
    prefix: &[u8],
    src: Option<&Path>,
    made_ns: i64,
) -> Result<Vec<SourceEntry>> {
    let mut dirs = Vec::new();
    let ends = prefix
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == SEPARATOR)
        .map(|(i, _)| i)
        .chain((!prefix.is_empty()).then_some(prefix.len()));
    for end in ends {
        let dir = &prefix[..end];
        if base
            .lookup(dir)?
            .is_some_and(|(_, e)| e.kind == EntryKind::Dir)
        {
            continue;
        }
        let (mode, mtime_ns) = match (end == prefix.len(), src.map(std::fs::metadata)) {
            (true, Some(Ok(meta))) => {
                use std::os::unix::fs::MetadataExt;
                (meta.mode(), crate::time::mtime_ns(&meta))
            }
            _ => (0o040755, made_ns),
        };
        dirs.push(SourceEntry {
            path: dir.to_vec(),
            kind: EntryKind::Dir,
            len: 0,
            mode,
            mtime_ns,
            prefix_len: dir.len(),
        });
    }
    Ok(dirs)
}

/// Refuses an append that would put a file (or symlink) where the dataset has a directory:
/// the directory's entries would stay visible under a file.
fn refuse_replaced_dirs(base: &Dataset, store: &Arc<dyn Store>, rows: &[CatalogRow]) -> Result<()> {
    for row in rows {
        let key = container_key(&row.name);
        let container =
            Container::open_in(store, &key, Some(row.file_len), ReadPolicy::SEQUENTIAL)?;
        let index = container.index();
        for i in 0..index.len() {
            if index.kind(i) == EntryKind::Dir {
                continue;
            }
            let path = index.path(i);
            if base
                .lookup(path)?
                .is_some_and(|(_, e)| e.kind == EntryKind::Dir)
            {
                return Err(Error::Refused {
                    path: PathBuf::from(display(path)),
                    reason: "is a directory in the dataset and not in the source: remove it first (`sheaf rm -r`), then append".into(),
                });
            }
        }
    }
    Ok(())
}

/// The generation an open dataset read, to commit on top of.
fn snapshot_of(base: &Dataset) -> Snapshot {
    Snapshot {
        number: base.generation(),
        catalog: base.catalog().clone(),
        bytes: Vec::new(),
    }
}

/// The fold threshold the dataset records.
fn threshold_of(base: &Dataset) -> Option<u64> {
    base.catalog()
        .metadata()
        .get(crate::format::catalog::META_THRESHOLD)
        .and_then(|t| t.parse().ok())
}

/// What `remove` did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RemoveSummary {
    /// The generation committed.
    pub generation: u64,
    /// Entries removed (tombstones written), directories' contents included.
    pub removed: u64,
}

/// Most tombstones in one container.
const TOMBSTONES_PER_CONTAINER: usize = 1 << 20;

/// Deletes `paths` from the published dataset at `root` as one new generation of tombstones;
/// a directory only when `recursive`, with everything under it. Symlinks on the way to a path
/// are followed (the last component is not: removing a symlink removes the link). Every path
/// must exist, or nothing is removed. Older generations keep the entries.
pub fn remove(
    root: &Path,
    paths: &[Vec<u8>],
    recursive: bool,
    progress: &dyn Progress,
) -> Result<RemoveSummary> {
    let store = root_store(root)?;
    let base = Dataset::open_in(Arc::clone(&store))?;
    let mut doomed = Vec::new();
    for user_path in paths {
        let entry = base.stat(user_path)?;
        if entry.path.is_empty() {
            return Err(Error::Refused {
                path: PathBuf::from(display(user_path)),
                reason: "is the dataset's root, which cannot be removed".into(),
            });
        }
        if entry.kind == EntryKind::Dir {
            if !recursive {
                return Err(Error::WrongKind {
                    path: display(&entry.path),
                    problem: KindProblem::IsADirectory,
                });
            }
            for item in base.walk_under(&entry.path)? {
                doomed.push(item?.1.path);
            }
        }
        doomed.push(entry.path);
    }
    doomed.sort_by(|a, b| cmp_paths(a, b));
    doomed.dedup();
    progress.phase("remove", doomed.len() as u64, 0);
    let txn = generation::new_txn();
    let rows = write_tombstones(store.as_ref(), &txn, &doomed, progress)?;
    let commit = Commit {
        operation: "rm",
        txn,
        added: 0,
        removed: doomed.len() as u64,
        threshold: threshold_of(&base),
        root: base.catalog().root_meta(),
    };
    let generation = commit_on_top(store.as_ref(), snapshot_of(&base), rows, &commit)?;
    Ok(RemoveSummary {
        generation,
        removed: doomed.len() as u64,
    })
}

/// Writes tombstones for `paths` (sorted, distinct) into containers of transaction `txn`.
fn write_tombstones(
    store: &dyn Store,
    txn: &str,
    paths: &[Vec<u8>],
    progress: &dyn Progress,
) -> Result<Vec<CatalogRow>> {
    let now = crate::time::now_ns();
    let mut rows = Vec::new();
    for (seq, chunk) in paths.chunks(TOMBSTONES_PER_CONTAINER).enumerate() {
        let name = txn_container_name(txn, seq as u32);
        let key = container_key(&name);
        let mut writer = ContainerWriter::new(store.create(&key)?, PathBuf::from(store.uri(&key)));
        for path in chunk {
            writer.add(tombstone(path, now), &[])?;
            progress.advance(1, 0);
        }
        rows.push(writer.finish()?.catalog_row(&name, 1));
    }
    Ok(rows)
}

/// The tombstone of `path`.
fn tombstone(path: &[u8], mtime_ns: i64) -> Entry {
    Entry {
        path: path.to_vec(),
        kind: EntryKind::Tombstone,
        offset: 0,
        stored_len: 0,
        len: 0,
        codec: Codec::None,
        xxh3: 0,
        mode: 0,
        mtime_ns,
        block_sums: None,
    }
}
