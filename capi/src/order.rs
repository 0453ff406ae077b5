//! Epoch orders and node-sharded preloads through the C ABI: what a training framework's
//! sampler calls to shuffle by windows of containers and to copy one node's share of an epoch.

use crate::fold::{give, json_request};
use crate::status::sheaf_status::*;
use crate::status::{guard, sheaf_status, Failure};
use crate::{bytes_arg, c_os_text, free_boxed, handle, required, required_ref, sheaf_bytes};
use crate::{sheaf_dataset, Reader};
use sheaf::cache::{self, Cache, PreloadOptions};
use sheaf::progress::Silent;
use sheaf::read::order::{self, EpochOrder, OrderSettings, Samples};
use std::ffi::c_char;

/// The files below a directory, numbered in path order and grouped by container: what epoch
/// orders are made of. Opaque: from `sheaf_samples_open`, released by `sheaf_samples_free`;
/// independent of the dataset once made.
pub struct sheaf_samples {
    samples: Samples,
}

/// How an epoch is shuffled and which slice of it to take (see `sheaf_samples_order`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct sheaf_order_settings {
    /// The run's seed.
    pub seed: u64,
    /// The epoch.
    pub epoch: u64,
    /// Containers per shuffling window (at least 1).
    pub window: u64,
    /// The slice to take, below `parts`.
    pub part: u64,
    /// Slices the epoch is cut into (at least 1).
    pub parts: u64,
    /// Non-zero: every slice has `len / parts` samples (the tail is dropped); zero: every slice
    /// has the rounded-up length, padded by wrapping round to the epoch's start.
    pub drop_last: u32,
}

impl From<&sheaf_order_settings> for OrderSettings {
    fn from(s: &sheaf_order_settings) -> Self {
        OrderSettings {
            seed: s.seed,
            epoch: s.epoch,
            window: s.window,
            part: s.part,
            parts: s.parts,
            drop_last: s.drop_last != 0,
        }
    }
}

/// Numbers the regular files below the directory `path` (the whole dataset for the root) in
/// path order, the order `sheaf_walk_open` yields them in, and notes which container holds
/// each.
#[no_mangle]
pub unsafe extern "C" fn sheaf_samples_open(
    dataset: *const sheaf_dataset,
    path: *const u8,
    path_len: usize,
    out: *mut *mut sheaf_samples,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        let path = unsafe { bytes_arg(path, path_len, "path") }?;
        let out = unsafe { required(out, "out") }?;
        *out = std::ptr::null_mut();
        let Reader::One(dataset) = dataset else {
            return Err(Failure::new(
                SHEAF_INVALID_ARGUMENT,
                "epoch orders are made over one dataset, not a routed tree: open the dataset \
                 a route names"
                    .to_string(),
            ));
        };
        let samples = Samples::under(&dataset, path)?;
        *out = Box::into_raw(Box::new(sheaf_samples { samples }));
        Ok(SHEAF_OK)
    })
}

/// The number of samples (regular files).
#[no_mangle]
pub unsafe extern "C" fn sheaf_samples_len(
    samples: *const sheaf_samples,
    out: *mut u64,
) -> sheaf_status {
    guard(|| {
        let samples = unsafe { required_ref(samples, "samples") }?;
        *unsafe { required(out, "out") }? = samples.samples.len();
        Ok(SHEAF_OK)
    })
}

/// The sample numbers slice `settings.part` of `settings.parts` reads in the epoch, from its
/// `start`-th on (to resume mid-epoch): containers shuffled by (seed, epoch), samples shuffled
/// within windows of `window` containers, the same on every machine and in every release.
/// `*out` receives them as native-endian `uint64_t` values (`len` is in bytes). Free it with
/// `sheaf_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn sheaf_samples_order(
    samples: *const sheaf_samples,
    settings: *const sheaf_order_settings,
    start: u64,
    out: *mut sheaf_bytes,
) -> sheaf_status {
    guard(|| {
        let epoch = unsafe { epoch_of(samples, settings) }?;
        let out = unsafe { required(out, "out") }?;
        let numbers = epoch.part(start);
        let bytes = Box::new(sheaf::read::Buffer::from_vec(numbers));
        out.data = bytes.as_ptr();
        out.len = bytes.len();
        out.owner = Box::into_raw(bytes).cast();
        Ok(SHEAF_OK)
    })
}

/// The windows of the slice `sheaf_samples_order` gives for the same settings, in order, as a
/// JSON array of `{"samples": N, "containers": [catalog positions]}`: the first N numbers of
/// the slice come from the first window's containers, and so on. A streaming reader passes
/// the next window's containers to `sheaf_fetch_ahead` while it reads the current one. Free
/// `*out` with `sheaf_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn sheaf_samples_windows(
    samples: *const sheaf_samples,
    settings: *const sheaf_order_settings,
    out: *mut sheaf_bytes,
) -> sheaf_status {
    guard(|| {
        let epoch = unsafe { epoch_of(samples, settings) }?;
        let out = unsafe { required(out, "out") }?;
        let windows = epoch.windows();
        give(out, serde_json::to_vec(&windows).expect("JSON serializes"));
        Ok(SHEAF_OK)
    })
}

/// Copies the containers at `count` catalog positions into the dataset's cache (it must have
/// been opened with one; otherwise nothing is read), one whole sequential read each, skipping
/// those the cache holds. `*copied` (may be null) receives the bytes copied. Blocks until
/// done: call it from a thread of its own to read ahead.
#[no_mangle]
pub unsafe extern "C" fn sheaf_fetch_ahead(
    dataset: *const sheaf_dataset,
    containers: *const u64,
    count: usize,
    copied: *mut u64,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        if containers.is_null() && count > 0 {
            return Err(Failure::null("containers"));
        }
        let positions: Vec<usize> = match count {
            0 => Vec::new(),
            _ => unsafe { std::slice::from_raw_parts(containers, count) }
                .iter()
                .map(|&c| usize::try_from(c).unwrap_or(usize::MAX))
                .collect(),
        };
        let Reader::One(dataset) = dataset else {
            return Err(Failure::new(
                SHEAF_INVALID_ARGUMENT,
                "containers are fetched for one dataset, not a routed tree".to_string(),
            ));
        };
        let bytes = dataset.fetch_ahead(&positions)?;
        if let Some(copied) = unsafe { copied.as_mut() } {
            *copied = bytes;
        }
        Ok(SHEAF_OK)
    })
}

/// The epoch the settings name, laid out over the samples.
unsafe fn epoch_of<'a>(
    samples: *const sheaf_samples,
    settings: *const sheaf_order_settings,
) -> Result<EpochOrder<'a>, Failure> {
    let samples = unsafe { required_ref(samples, "samples") }?;
    let settings = OrderSettings::from(unsafe { required_ref(settings, "settings") }?);
    Ok(EpochOrder::new(&samples.samples, settings)?)
}

/// Releases samples. Null is ignored.
#[no_mangle]
pub unsafe extern "C" fn sheaf_samples_free(samples: *mut sheaf_samples) {
    unsafe { free_boxed(samples) }
}

/// What `sheaf_preload` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PreloadRequest {
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    pin: bool,
    #[serde(default = "default_jobs")]
    jobs: usize,
    #[serde(default)]
    generation: Option<u64>,
    #[serde(default)]
    shard: Option<ShardRequest>,
}

/// A node's share of an epoch, as `sheaf preload --shard` takes it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardRequest {
    rank: u64,
    world: u64,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    epoch: u64,
    #[serde(default = "default_window")]
    window: u64,
    #[serde(default)]
    under: String,
}

fn default_jobs() -> usize {
    8
}

fn default_window() -> u64 {
    OrderSettings::default().window
}

/// Copies containers of the dataset at `dataset` (a path or URI, NUL-terminated) into the
/// cache directory `cache_dir`, as `sheaf preload` does. `request` is a NUL-terminated JSON
/// object, all fields optional: `prefixes` (only containers holding paths below these),
/// `pin`, `jobs` (requests in flight, default 8), `generation`, and `shard` (`rank`, `world`,
/// `seed`, `epoch`, `window`, `under`: only the containers that rank reads first in that
/// epoch of the files below `under`). `*out` receives the summary as JSON. Free it with
/// `sheaf_bytes_free`.
#[no_mangle]
pub unsafe extern "C" fn sheaf_preload(
    dataset: *const c_char,
    cache_dir: *const c_char,
    request: *const c_char,
    out: *mut sheaf_bytes,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { c_os_text(dataset, "dataset") }?;
        let cache_dir = unsafe { c_os_text(cache_dir, "cache_dir") }?;
        let request: PreloadRequest = unsafe { json_request(request, "preload") }?;
        let out = unsafe { required(out, "out") }?;
        let mut options = PreloadOptions {
            prefixes: request
                .prefixes
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
            pin: request.pin,
            jobs: request.jobs.max(1),
            generation: request.generation,
            containers: None,
        };
        if let Some(shard) = &request.shard {
            let settings = OrderSettings {
                seed: shard.seed,
                epoch: shard.epoch,
                window: shard.window,
                part: shard.rank,
                parts: shard.world,
                drop_last: false,
            };
            let chosen = order::shard(
                dataset,
                request.generation,
                shard.under.as_bytes(),
                settings,
            )?;
            options.generation = Some(chosen.generation);
            options.containers = Some(chosen.containers);
        }
        let cache = Cache::open(cache_dir)?;
        let summary = cache::preload(dataset, &cache, &options, &Silent)?;
        give(out, serde_json::to_vec(&summary).expect("JSON serializes"));
        Ok(SHEAF_OK)
    })
}
