//! The reader: open a published dataset, look paths up, read, stat, list and walk.
//!
//! A lookup is a binary search over the catalog's path ranges, then one in a container index;
//! containers are mapped lazily on first use, so opening a dataset costs one small file.
//!
//! The reader's parts: `containers` (from the cache tier or the origin, checked against the
//! catalog; reads by location), `namespace` (lookup, stat, reads by path, symlinks, listings,
//! walks), `external` (large files kept where they live), `cached` (the cache tier's read
//! path), `routes` (many datasets as one tree, through a routes table), `order` (shuffled
//! epoch orders for training), `verify` and `unfold`.

mod cached;
mod containers;
mod external;
mod namespace;
pub mod order;
pub mod routes;
pub mod unfold;
pub mod verify;

pub use namespace::Walk;

use crate::cache::{Cache, Counter, Latency, MappedContainer, Snapshot};
use crate::checksum::{xxh3_64, BlockHasher};
use crate::error::{Error, KindProblem, Result};
use crate::format::entry::EXTERNAL_BLOCK;
use crate::format::path::{self, cmp_paths, display, is_inside, normalize, SEPARATOR};
use crate::format::{generation, Catalog, Container, Entry, EntryKind, PathKey};
use crate::layout::container_key;
use crate::store::{self, LocalStore, OpenAs, ReadPolicy, Store};
#[cfg(doc)]
use crate::store::{Access, Pages};
pub use arrow_buffer::Buffer;
use std::cmp::Ordering;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// How many symbolic links a path may pass through before resolution gives up.
const MAX_SYMLINK_HOPS: usize = 40;

/// Where an entry sits: container number in the catalog and row in its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Position of the container in the catalog.
    pub container: usize,
    /// Row in the container's index.
    pub row: usize,
}

/// How to read a dataset.
#[derive(Clone, Debug, Default)]
pub struct ReadOptions {
    /// Read containers from this cache when it holds them (and open the dataset from the
    /// catalog it keeps, so a preloaded dataset needs no request to its origin).
    pub cache: Option<Arc<Cache>>,
    /// Fetch containers that keep missing into the cache in the background.
    pub fill: bool,
    /// How local containers (the origin's, when it is local, and the cache's) are read: in
    /// what order, and whether the pages a read brings in stay cached (a FUSE mount, whose
    /// files the kernel caches itself, drops them: see [`Pages::DropAfterRead`]). The default,
    /// [`Access::Auto`], reads a dataset that fits in memory with the kernel's read-around and
    /// a larger one exactly ([`ReadPolicy::for_data`]).
    pub policy: ReadPolicy,
    /// Read this generation instead of the newest (see [`Dataset::generation`]).
    pub generation: Option<u64>,
}

/// A published dataset opened for reading.
#[derive(Debug)]
pub struct Dataset {
    store: Arc<dyn Store>,
    catalog: Catalog,
    /// The generation read.
    generation: u64,
    /// The catalog's rows by the generation that wrote them, newest first: within one level
    /// containers cover disjoint ranges; a newer level's entries shadow older ones.
    levels: Vec<std::ops::Range<usize>>,
    /// Containers opened from the origin, on first use.
    containers: Vec<OnceLock<Arc<Container>>>,
    tier: Option<cached::Tier>,
    stats: cached::Stats,
    policy: ReadPolicy,
    /// External files without block checksums (indexed before format version 4) that were
    /// checked whole, by path and checksum, so that later reads of parts of them are served.
    checked_externals: std::sync::Mutex<std::collections::HashSet<(Vec<u8>, u64)>>,
}

impl Dataset {
    /// Opens the dataset rooted at the local directory `root` by reading its catalog.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        Self::open_in(Arc::new(LocalStore::new(root.as_ref())))
    }

    /// Opens the dataset a location names: a local path (any bytes), `file://`, or a remote
    /// store's URI ([`store::open`]).
    pub fn open_uri(uri: impl AsRef<std::ffi::OsStr>) -> Result<Self> {
        Self::open_in(store::open(uri)?)
    }

    /// Opens the dataset whose root is the root of `store`.
    pub fn open_in(store: Arc<dyn Store>) -> Result<Self> {
        Self::open_in_with(store, ReadOptions::default())
    }

    /// Opens the dataset a location names ([`Dataset::open_uri`]), reading through a cache as
    /// `options` say.
    pub fn open_uri_with(uri: impl AsRef<std::ffi::OsStr>, options: ReadOptions) -> Result<Self> {
        Self::open_in_with(store::open(uri)?, options)
    }

    /// Opens the dataset whose root is the root of `store`, reading as `options` say.
    pub fn open_in_with(store: Arc<dyn Store>, options: ReadOptions) -> Result<Self> {
        let snapshot = open_snapshot(store.as_ref(), &options)?;
        let catalog = snapshot.catalog;
        let count = catalog.rows().len();
        let containers = (0..count).map(|_| OnceLock::new()).collect();
        let data_bytes = catalog
            .rows()
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.file_len));
        let policy = options.policy.for_data(data_bytes);
        let tier = options
            .cache
            .clone()
            .map(|cache| cached::Tier::new(cache, count, options.fill, policy));
        Ok(Dataset {
            store,
            levels: crate::format::catalog::levels(catalog.rows()),
            generation: snapshot.number,
            catalog,
            containers,
            tier,
            stats: cached::Stats::new(options.cache),
            policy,
            checked_externals: Default::default(),
        })
    }

    /// The generation this reader sees (0 for a dataset written before generations).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// This reader's counters and latency histograms (a cache's shared ones, summed over
    /// every process using it, are [`Cache::counters`]).
    pub fn stats(&self) -> Snapshot {
        self.stats.own().snapshot()
    }

    /// The cache this dataset reads through, if any.
    pub fn cache(&self) -> Option<&Arc<Cache>> {
        self.tier.as_ref().map(|t| t.cache())
    }

    /// The store the dataset lives in.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Where container `i` of the catalog lives, for messages.
    pub fn container_uri(&self, i: usize) -> String {
        self.store.uri(&container_key(&self.catalog.rows()[i].name))
    }

    /// Where an external entry's file lives, for messages.
    pub fn external_uri(&self, entry: &Entry) -> String {
        store::uri_of(self.store.as_ref(), &entry.path)
    }

    /// How this dataset's local containers are read (the policy it was opened with, `Auto`
    /// resolved for its size).
    pub fn policy(&self) -> ReadPolicy {
        self.policy
    }

    /// The entry of the dataset's root directory: the folded root's mode and time, where the
    /// catalog records them.
    pub fn root(&self) -> Entry {
        self.catalog.root()
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Number of entries (files, directories, symlinks, external files) in the dataset.
    pub fn entry_count(&self) -> u64 {
        // Saturating: a hostile catalog must not overflow the arithmetic.
        self.catalog
            .rows()
            .iter()
            .fold(0u64, |sum, r| sum.saturating_add(r.entry_count))
    }
}

/// The generation `options` ask for: the one a cache recorded when a preload copied it (so a
/// preloaded dataset opens without a request to its origin), else the origin's newest or the
/// numbered one.
fn open_snapshot(store: &dyn Store, options: &ReadOptions) -> Result<generation::Snapshot> {
    if let Some(cache) = &options.cache {
        if let Some(bytes) = cache.cached_catalog(&crate::cache::dataset_key(store))? {
            let file = format!("the cache's copy of {}", store.uri(""));
            let kept = generation::parse_recorded(bytes, Path::new(&file))?;
            if options.generation.is_none_or(|n| n == kept.number) {
                return Ok(kept);
            }
        }
    }
    let which = options
        .generation
        .map_or(generation::Which::Newest, generation::Which::Number);
    generation::read(store, which)
}

fn not_found(path: &[u8]) -> Error {
    Error::NotFound {
        path: display(path),
    }
}

/// A synthetic directory entry (for a directory an index omits); the dataset's own root is
/// [`Dataset::root`].
pub fn root_entry() -> Entry {
    Entry {
        path: Vec::new(),
        kind: EntryKind::Dir,
        offset: 0,
        stored_len: 0,
        len: 0,
        codec: crate::format::Codec::None,
        xxh3: 0,
        mode: 0o040755,
        mtime_ns: 0,
        block_sums: None,
    }
}

/// The child of `dir` on the way to `entry`: the entry itself when it is a direct child, or a
/// synthetic directory when an index omits an intermediate directory.
fn direct_child(dir: &[u8], entry: Entry) -> Entry {
    let start = if dir.is_empty() { 0 } else { dir.len() + 1 };
    match entry.path[start..].iter().position(|&b| b == SEPARATOR) {
        None => entry,
        Some(i) => Entry {
            path: entry.path[..start + i].to_vec(),
            mtime_ns: entry.mtime_ns,
            ..root_entry()
        },
    }
}

/// The memory `place` gives for `len` bytes of `path`, exactly `len` long.
fn room<'b>(
    place: impl FnOnce(usize) -> Option<&'b mut [u8]>,
    len: usize,
    path: &[u8],
) -> Result<&'b mut [u8]> {
    match place(len) {
        Some(dst) if dst.len() >= len => Ok(&mut dst[..len]),
        _ => Err(Error::NoRoom {
            path: display(path),
            len,
        }),
    }
}
