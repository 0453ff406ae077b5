//! Upkeep of a dataset with generations: `compact` rewrites the newest generation as one level
//! (shadowed entries and tombstones dropped), `gc` deletes what no generation inside a
//! retention window needs.

use super::plan::ContainerLimits;
use crate::error::{Error, Result};
use crate::format::generation::{self, Commit};
use crate::format::{CatalogRow, ContainerWriter, Entry};
use crate::layout::{
    container_key, generation_key, txn_container_name, CATALOG_KEY, CONTAINERS_PREFIX,
    FOLD_PARAMS_KEY, GENERATIONS_PREFIX,
};
use crate::progress::Progress;
use crate::read::Dataset;
use crate::store::Store;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What `compact` did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CompactSummary {
    /// The generation compacted.
    pub from_generation: u64,
    /// The generation committed (the same snapshot as one level).
    pub generation: u64,
    /// Entries kept.
    pub entries: u64,
    /// Containers before and after.
    pub containers_before: u64,
    /// Containers written.
    pub containers_after: u64,
    /// Bytes of containers before and after.
    pub bytes_before: u64,
    /// Bytes of the containers written.
    pub bytes_after: u64,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
}

/// Rewrites the newest generation of the dataset at `root` as one level of new containers
/// (each entry's stored bytes copied as they are, after checking them), and commits it as the
/// next generation: the same tree, without shadowed entries or tombstones, and with every
/// lookup answered by one container. Fails, committing nothing, when another writer committed
/// in the meantime (run it again).
pub fn compact(
    root: &Path,
    limits: ContainerLimits,
    progress: &dyn Progress,
) -> Result<CompactSummary> {
    let started = Instant::now();
    let store = crate::store::open(root)?;
    let base = Dataset::open_in(Arc::clone(&store))?;
    let txn = generation::new_txn();
    progress.phase("compact", base.entry_count(), 0);
    let mut writer = Rewriter {
        store: store.as_ref(),
        txn: &txn,
        limits,
        rows: Vec::new(),
        open: None,
    };
    let mut entries = 0u64;
    let written = (|| {
        for item in base.walk() {
            let (at, entry) = item?;
            let stored = match entry.kind.is_stored() {
                true => base.container(at.container)?.read_row_stored(at.row)?,
                false => arrow_buffer::Buffer::from_vec(Vec::<u8>::new()),
            };
            progress.advance(1, entry.len);
            writer.add(entry, &stored)?;
            entries += 1;
        }
        writer.finish()
    })();
    let rows = match written {
        Ok(rows) => rows,
        Err(e) => {
            remove_containers(store.as_ref(), &writer.rows);
            return Err(e);
        }
    };
    let number = base.generation() + 1;
    let level = u32::try_from(number).map_err(|_| Error::Refused {
        path: PathBuf::from(store.uri("")),
        reason: "the dataset has run out of generation numbers (2^32)".into(),
    })?;
    let rows: Vec<CatalogRow> = rows
        .into_iter()
        .map(|row| CatalogRow {
            generation: level,
            ..row
        })
        .collect();
    let commit = Commit {
        operation: "compact",
        txn: txn.clone(),
        added: entries,
        removed: 0,
        threshold: base
            .catalog()
            .metadata()
            .get(crate::format::catalog::META_THRESHOLD)
            .and_then(|t| t.parse().ok()),
        root: base.catalog().root_meta(),
    };
    let bytes = commit.encode(number, rows.clone())?;
    if !generation::commit(store.as_ref(), number, &bytes, &txn)? {
        remove_containers(store.as_ref(), &rows);
        return Err(Error::Contended {
            root: PathBuf::from(store.uri("")),
            reason: format!(
                "another writer committed generation {number} while this compaction ran; nothing was committed: run it again"
            ),
        });
    }
    let before = base.catalog().rows();
    Ok(CompactSummary {
        from_generation: base.generation(),
        generation: number,
        entries,
        containers_before: before.len() as u64,
        containers_after: rows.len() as u64,
        bytes_before: before.iter().map(|r| r.file_len).sum(),
        bytes_after: rows.iter().map(|r| r.file_len).sum(),
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// Entries in path order, cut into new containers of one transaction.
struct Rewriter<'a> {
    store: &'a dyn Store,
    txn: &'a str,
    limits: ContainerLimits,
    rows: Vec<CatalogRow>,
    open: Option<(String, ContainerWriter, u64)>,
}

impl Rewriter<'_> {
    fn add(&mut self, entry: Entry, stored: &[u8]) -> Result<()> {
        let full = self.open.as_ref().is_some_and(|(_, writer, bytes)| {
            writer.entry_count() >= self.limits.entries
                || (*bytes > 0 && bytes + stored.len() as u64 > self.limits.bytes)
        });
        if full {
            self.close()?;
        }
        if self.open.is_none() {
            let name = txn_container_name(self.txn, self.rows.len() as u32);
            let key = container_key(&name);
            let out = self.store.create(&key)?;
            let writer = ContainerWriter::new(out, PathBuf::from(self.store.uri(&key)));
            self.open = Some((name, writer, 0));
        }
        let (_, writer, bytes) = self.open.as_mut().expect("a container is open");
        *bytes += stored.len() as u64;
        writer.add(entry, stored)
    }

    fn close(&mut self) -> Result<()> {
        if let Some((name, writer, _)) = self.open.take() {
            let written = writer.finish()?;
            self.rows.push(written.catalog_row(&name, 0));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<Vec<CatalogRow>> {
        self.close()?;
        Ok(std::mem::take(&mut self.rows))
    }
}

/// Deletes containers a writer made but did not commit (best effort: `gc` removes leftovers).
pub(super) fn remove_containers(store: &dyn Store, rows: &[CatalogRow]) {
    for row in rows {
        let _ = store.delete(&container_key(&row.name));
    }
}

/// What `gc` did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GcSummary {
    /// Generations kept, oldest first.
    pub kept: Vec<u64>,
    /// Generation files deleted.
    pub generations_deleted: u64,
    /// Container files deleted.
    pub containers_deleted: u64,
    /// Bytes of those containers.
    pub bytes_deleted: u64,
    /// Plans of folds split into parts deleted: committed ones a stopped commit left, and
    /// abandoned ones older than the window.
    pub plans_deleted: u64,
}

/// Deletes what no generation a reader may still use needs: a generation is kept while it is
/// the newest or was the newest at some moment within `keep` of now (the generation after it
/// was committed less than `keep` ago), so a reader that opened it within the window keeps
/// working; older generation files go, then every container none of the kept generations
/// lists that is either listed by a deleted generation or older than the window (the
/// leftovers of a writer that failed; a writer still running has newer ones).
pub fn gc(root: &Path, keep: Duration, progress: &dyn Progress) -> Result<GcSummary> {
    let store = crate::store::open(root)?;
    let numbers = generation::numbers(store.as_ref())?;
    let Some(newest) = generation::newest(store.as_ref())? else {
        return Err(Error::NotADataset {
            root: PathBuf::from(store.uri("")),
        });
    };
    let cutoff = crate::time::now_ns().saturating_sub(keep.as_nanos().min(i64::MAX as u128) as i64);
    // Walking down from the newest: each generation whose successor came within the window
    // is kept; the first whose successor is older than the window ends it.
    let mut kept = vec![newest];
    let mut needed: HashSet<String> = HashSet::new();
    let mut successor_time = i64::MAX;
    let mut doomed = Vec::new();
    let mut all: Vec<u64> = numbers.into_iter().filter(|&n| n <= newest).collect();
    if all.last() != Some(&newest) {
        all.push(newest);
    }
    for &number in all.iter().rev() {
        let snapshot = generation::read(store.as_ref(), generation::Which::Number(number))?;
        let info = generation::info(number, &snapshot.catalog);
        let names = snapshot.catalog.rows().iter().map(|r| r.name.clone());
        if number == newest || successor_time >= cutoff {
            if number != newest {
                kept.push(number);
            }
            needed.extend(names);
        } else {
            doomed.push((number, names.collect::<Vec<_>>()));
        }
        successor_time = successor_time.min(info.time_ns.max(0));
    }
    kept.sort_unstable();
    let mut summary = GcSummary {
        kept,
        ..GcSummary::default()
    };
    progress.phase("gc", doomed.len() as u64, 0);
    let mut released: HashSet<String> = HashSet::new();
    for (number, names) in doomed.iter().rev() {
        // Oldest first, so a reader listing generations never finds a gap below a kept one
        // that a crash left.
        store.delete(&generation_key(*number))?;
        if *number == 0 {
            store.delete(CATALOG_KEY)?;
        }
        released.extend(names.iter().cloned());
        summary.generations_deleted += 1;
        progress.advance(1, 0);
    }
    // The settings of the fold that made this dataset: a fold killed between its commit and
    // their removal leaves them, and no fold of a new root can run on a published dataset.
    store.delete(FOLD_PARAMS_KEY)?;
    // Plans go before containers: an abandoned plan's parts wrote containers that no
    // generation lists, which the pass below deletes once they are older than the window.
    summary.plans_deleted = super::parts::remove_stale_plans(store.as_ref(), cutoff)?;
    // A generation file's commit writes a temporary file first: one a killed writer left.
    for object in store.list(GENERATIONS_PREFIX)? {
        let name = object.key.trim_start_matches(GENERATIONS_PREFIX);
        if name.starts_with('.') && object.mtime_ns < cutoff {
            store.delete(&object.key)?;
        }
    }
    for object in store.list(CONTAINERS_PREFIX)? {
        let name = object.key.trim_start_matches(CONTAINERS_PREFIX);
        if needed.contains(name) {
            continue;
        }
        if released.contains(name) || object.mtime_ns < cutoff {
            store.delete(&object.key)?;
            summary.containers_deleted += 1;
            summary.bytes_deleted += object.len;
        }
    }
    Ok(summary)
}
