//! `preload`: copy the containers that hold the requested paths from the origin into the cache,
//! in parallel, each verified before it becomes visible.

use super::{Cache, Fetched};
use crate::error::{Error, Result, Setting};
use crate::format::path::{cmp_paths, is_inside};
use crate::format::{generation, Catalog, CatalogRow};
use crate::layout::container_key;
use crate::progress::Progress;
use crate::store::{self, Store};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

/// What to preload.
#[derive(Clone, Debug, Default)]
pub struct PreloadOptions {
    /// Only the containers holding paths under these (dataset-relative) prefixes; all when
    /// empty.
    pub prefixes: Vec<Vec<u8>>,
    /// Pin the dataset: its containers are never evicted.
    pub pin: bool,
    /// Ranged requests in flight at once: containers are fetched side by side, and when there
    /// are fewer containers than jobs, each is fetched through several ranges at once.
    pub jobs: usize,
    /// Preload this generation instead of the newest; readers through the cache then open it.
    pub generation: Option<u64>,
    /// Only these containers (by content id), of those the prefixes select: a node's share
    /// of an epoch, as `read::order::shard` names it. All when `None`.
    pub containers: Option<HashSet<u128>>,
}

/// What a preload did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PreloadSummary {
    /// The dataset preloaded.
    pub dataset: String,
    /// The generation preloaded.
    pub generation: u64,
    /// Containers holding the requested paths.
    pub containers: u64,
    /// Of those, already in the cache.
    pub already_cached: u64,
    /// Of those, copied by this run.
    pub fetched: u64,
    /// Bytes of the requested containers.
    pub bytes: u64,
    /// Bytes copied by this run.
    pub bytes_fetched: u64,
    /// Whether the dataset is now pinned.
    pub pinned: bool,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
    /// Copy throughput in MiB/s.
    pub mib_per_sec: f64,
}

/// Copies the containers of the dataset at `uri` that hold the requested paths into `cache`,
/// and records the dataset (and its catalog, so readers can open it from the cache alone).
/// Re-running it copies only what is missing.
pub fn preload(
    uri: impl AsRef<std::ffi::OsStr>,
    cache: &Cache,
    options: &PreloadOptions,
    progress: &dyn Progress,
) -> Result<PreloadSummary> {
    let started = Instant::now();
    let uri = uri.as_ref();
    let origin = store::open(uri)?;
    let key = super::dataset_key(origin.as_ref());
    let which = options
        .generation
        .map_or(generation::Which::Newest, generation::Which::Number);
    let generation::Snapshot {
        bytes: catalog_bytes,
        catalog,
        number,
    } = generation::read(origin.as_ref(), which)?;
    let selection = select(&catalog, options, cache)?;
    cache.record_dataset(&key, &catalog_bytes, options.pin.then_some(true))?;
    cache.make_room(selection.missing_bytes(), &selection.protect)?;
    progress.phase(
        "preload",
        selection.missing.len() as u64,
        selection.missing_bytes(),
    );
    let outcomes = fetch_missing(cache, &origin, &selection, options.jobs, progress)?;
    let copied: HashSet<u128> = selection.missing.iter().map(|r| r.content_id).collect();
    for row in selection
        .selected
        .iter()
        .filter(|r| !copied.contains(&r.content_id))
    {
        cache.touch(row.content_id);
    }
    let mut summary = PreloadSummary {
        dataset: uri.to_string_lossy().into_owned(),
        generation: number,
        containers: selection.selected.len() as u64,
        bytes: selection.selected.iter().map(|r| r.file_len).sum(),
        pinned: cache.dataset(&key)?.is_some_and(|r| r.pinned),
        already_cached: (selection.selected.len() - selection.missing.len()) as u64,
        ..Default::default()
    };
    for outcome in outcomes {
        match outcome? {
            Fetched::AlreadyCached => summary.already_cached += 1,
            Fetched::Copied(bytes) => {
                summary.fetched += 1;
                summary.bytes_fetched += bytes;
            }
        }
    }
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    summary.mib_per_sec = summary.bytes_fetched as f64 / (1 << 20) as f64 / summary.elapsed_secs;
    Ok(summary)
}

/// The containers a preload needs: those that may hold a requested path, and of them the ones
/// the cache lacks.
struct Selection<'a> {
    selected: Vec<&'a CatalogRow>,
    missing: Vec<&'a CatalogRow>,
    /// What making room must not evict: every selected container.
    protect: HashSet<u128>,
}

impl Selection<'_> {
    fn missing_bytes(&self) -> u64 {
        self.missing.iter().map(|r| r.file_len).sum()
    }
}

fn select<'a>(
    catalog: &'a Catalog,
    options: &PreloadOptions,
    cache: &Cache,
) -> Result<Selection<'a>> {
    let prefixes = options
        .prefixes
        .iter()
        .map(|p| crate::format::path::normalize(p))
        .collect::<Result<Vec<_>>>()?;
    let selected: Vec<&CatalogRow> = catalog
        .rows()
        .iter()
        .filter(|row| prefixes.is_empty() || prefixes.iter().any(|p| may_hold(row, p)))
        .filter(|row| {
            options
                .containers
                .as_ref()
                .is_none_or(|ids| ids.contains(&row.content_id))
        })
        .collect();
    let protect = selected.iter().map(|r| r.content_id).collect();
    let missing = selected
        .iter()
        .copied()
        .filter(|r| !cache.contains(r.content_id))
        .collect();
    Ok(Selection {
        selected,
        missing,
        protect,
    })
}

/// Copies the missing containers into the cache, `jobs` streams at a time: several
/// containers side by side, and (from a remote store) several ranges of one container.
fn fetch_missing(
    cache: &Cache,
    origin: &Arc<dyn Store>,
    selection: &Selection,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Vec<Result<Fetched>>> {
    let jobs = jobs.max(1);
    let side_by_side = jobs.min(selection.missing.len()).max(1);
    // A local origin streams each file in order; ranges in parallel help remote stores,
    // where every request waits on a round trip.
    let ways_per_container = match origin.ranges_in_parallel() {
        false => 1,
        true => jobs / side_by_side,
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(side_by_side)
        .build()
        .map_err(|e| Error::InvalidSetting {
            setting: Setting::Jobs,
            reason: e.to_string(),
        })?;
    Ok(pool.install(|| {
        selection
            .missing
            .par_iter()
            .map(|row| {
                let key = container_key(&row.name);
                let fetched = cache.fetch(
                    row.content_id,
                    row.file_len,
                    &selection.protect,
                    |place, sink| {
                        store::read_chunks_placed(
                            origin.as_ref(),
                            &key,
                            row.file_len,
                            store::CHUNK,
                            ways_per_container,
                            place,
                            sink,
                        )
                    },
                );
                progress.advance(1, row.file_len);
                fetched
            })
            .collect()
    }))
}

/// True unless the container's path range certainly holds nothing at or under `prefix`.
/// Paths under a prefix sort right after it and together, so a range holds some only if it
/// reaches the prefix and starts at or before it, or starts inside it.
fn may_hold(row: &CatalogRow, prefix: &[u8]) -> bool {
    if prefix.is_empty() {
        return true;
    }
    cmp_paths(&row.last_path, prefix) != Ordering::Less
        && (cmp_paths(&row.first_path, prefix) != Ordering::Greater
            || is_inside(&row.first_path, prefix))
}
