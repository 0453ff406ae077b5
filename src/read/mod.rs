//! The reader: open a published dataset, look paths up, read, stat, list and walk.
//!
//! A lookup is a binary search over the catalog's path ranges, then one in a container index;
//! containers are mapped lazily on first use, so opening a dataset costs one small file.

mod cached;
pub mod unfold;
pub mod verify;

use crate::cache::{Cache, Counter, Latency, MappedContainer, Snapshot};
use crate::checksum::Xxh3;
use crate::error::{Error, KindProblem, Result};
use crate::index::path::{self, cmp_paths, display, is_inside, normalize, SEPARATOR};
use crate::index::{Catalog, Container, Entry, EntryKind, PathKey};
use crate::layout::{container_key, CATALOG_KEY, FOLD_PARAMS_KEY};
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
}

/// A published dataset opened for reading.
#[derive(Debug)]
pub struct Dataset {
    store: Arc<dyn Store>,
    catalog: Catalog,
    /// Containers opened from the origin, on first use.
    containers: Vec<OnceLock<Arc<Container>>>,
    tier: Option<cached::Tier>,
    stats: cached::Stats,
    policy: ReadPolicy,
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
        let kept = match &options.cache {
            Some(cache) => cache.cached_catalog(&crate::cache::dataset_key(store.as_ref()))?,
            None => None,
        };
        let read = match kept {
            Some(bytes) => Ok((
                bytes,
                "the cache's copy of ".to_owned() + &store.uri(CATALOG_KEY),
            )),
            None => store.read(CATALOG_KEY).map(|b| (b, store.uri(CATALOG_KEY))),
        };
        let catalog = match read {
            Ok((bytes, from)) => Catalog::from_buffer(Buffer::from_vec(bytes), Path::new(&from))?,
            Err(Error::NotFound { .. }) => {
                let root = PathBuf::from(store.uri(""));
                return Err(match store.len(FOLD_PARAMS_KEY) {
                    Ok(Some(_)) => Error::UnfinishedFold { root },
                    _ => Error::NotADataset { root },
                });
            }
            Err(e) => return Err(e),
        };
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
            catalog,
            containers,
            tier,
            stats: cached::Stats::new(options.cache),
            policy,
        })
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

    /// Container `i` of the catalog, from the cache when it holds a sound copy, else from the
    /// origin; opened on first use and checked against its catalog row and for safe, strictly
    /// ordered paths.
    pub fn container(&self, i: usize) -> Result<Arc<Container>> {
        if let Some(mapped) = self.cached(i) {
            return Ok(mapped.container.clone());
        }
        self.origin_container(i)
    }

    fn cached(&self, i: usize) -> Option<Arc<MappedContainer>> {
        self.cached_warming(i, |_| {})
    }

    /// [`Dataset::cached`], handing a copy already mapped to `warm` before its length check
    /// (see `Tier::cached`).
    fn cached_warming(
        &self,
        i: usize,
        warm: impl FnOnce(&MappedContainer),
    ) -> Option<Arc<MappedContainer>> {
        let tier = self.tier.as_ref()?;
        let row = &self.catalog.rows()[i];
        let accept =
            |mapped: &MappedContainer| self.container_problem(i, &mapped.container).is_none();
        tier.cached(i, row, &self.stats, accept, warm)
    }

    fn origin_container(&self, i: usize) -> Result<Arc<Container>> {
        if let Some(open) = self.containers[i].get() {
            return Ok(open.clone());
        }
        let container = self.open_container_with(i, self.policy)?;
        if let Some(problem) = self.container_problem(i, &container) {
            return Err(Error::corrupt(
                PathBuf::from(self.container_uri(i)),
                problem,
            ));
        }
        Ok(self.containers[i]
            .get_or_init(|| Arc::new(container))
            .clone())
    }

    /// Why container `i` must not be used, if it must not.
    fn container_problem(&self, i: usize, container: &Container) -> Option<String> {
        if let Some(mismatch) = self.catalog_mismatch(i, container) {
            return Some(mismatch.to_owned());
        }
        // Lookups and listings rely on every path being safe and in strict order; one pass
        // when the container is first opened keeps a hostile index from misleading them.
        container.index().check_paths().into_iter().next()
    }

    /// The stored bytes of the entry at `at` (a file's content or a symlink's target), checked:
    /// from the cached copy when there is a sound one, else from the origin. A cache fault
    /// (checksum mismatch, damage) sends the read to the origin and the copy to quarantine.
    pub fn read_at(&self, at: Location) -> Result<Buffer> {
        if let Some(tier) = &self.tier {
            match self.cached(at.container) {
                Some(mapped) => return self.read_mapped(at, &mapped),
                None => {
                    self.stats.add(Counter::Misses, 1);
                    let row = &self.catalog.rows()[at.container];
                    tier.missed(at.container, row, &self.store);
                }
            }
        }
        self.read_origin(at)
    }

    /// Asks for the stored bytes at `at` to be read into memory in the background (from the
    /// cached copy of its container, or the origin's when that is local; nothing for a remote
    /// origin), for a caller that will read them soon: a mount that was just asked to look a
    /// file up is about to be asked for its bytes.
    pub fn prefetch(&self, at: Location) {
        let container = match self.cached(at.container) {
            Some(mapped) => mapped.container.clone(),
            None => match self.containers[at.container].get() {
                Some(open) => open.clone(),
                None => return,
            },
        };
        container.prefetch_row(at.row);
    }

    /// The entry at `at` from its container's cached copy; a data fault there quarantines the
    /// copy and sends the read to the origin.
    fn read_mapped(&self, at: Location, mapped: &MappedContainer) -> Result<Buffer> {
        let started = Instant::now();
        match mapped.container.read_row(at.row) {
            Ok(bytes) => {
                self.count_cache_hit(bytes.len(), started);
                Ok(bytes)
            }
            Err(e) if e.is_data_fault() => {
                self.cache_fault(at, &e);
                self.read_origin(at)
            }
            Err(e) => Err(e),
        }
    }

    fn count_cache_hit(&self, len: usize, started: Instant) {
        self.stats.add(Counter::Hits, 1);
        self.stats.add(Counter::CacheBytes, len as u64);
        self.stats.latency(Latency::Cache, started);
    }

    /// Counts a data fault `e` of the cached copy holding `at` and quarantines that copy; the
    /// caller then reads from the origin.
    fn cache_fault(&self, at: Location, e: &Error) {
        if matches!(e, Error::ChecksumMismatch { .. }) {
            self.stats.add(Counter::ChecksumFailures, 1);
        }
        self.stats.add(Counter::Fallbacks, 1);
        if let Some(tier) = &self.tier {
            tier.fault(at.container, &self.catalog.rows()[at.container]);
        }
    }

    /// The entry at `at` from the origin's container.
    fn read_origin(&self, at: Location) -> Result<Buffer> {
        let started = Instant::now();
        let bytes = self.origin_container(at.container)?.read_row(at.row)?;
        self.stats.add(Counter::OriginReads, 1);
        self.stats.add(Counter::OriginBytes, bytes.len() as u64);
        self.stats.latency(Latency::Origin, started);
        Ok(bytes)
    }

    /// Opens container `i` with only its own footer and index checks, to be read front to
    /// back, for `verify`, which reports every problem instead of stopping at the first.
    pub fn open_container_unchecked(&self, i: usize) -> Result<Container> {
        self.open_container_with(i, ReadPolicy::SEQUENTIAL)
    }

    fn open_container_with(&self, i: usize, policy: ReadPolicy) -> Result<Container> {
        let row = &self.catalog.rows()[i];
        Container::open_in(
            &self.store,
            &container_key(&row.name),
            Some(row.file_len),
            policy,
        )
    }

    /// Why container `i` is not the file its catalog row describes, if it is not.
    pub fn catalog_mismatch(&self, i: usize, container: &Container) -> Option<&'static str> {
        let row = &self.catalog.rows()[i];
        let index = container.index();
        let matches = container.footer().index_xxh3 == row.index_xxh3
            && container.footer().entry_count == row.entry_count
            && index.path(0) == row.first_path.as_slice()
            && index.path(index.len() - 1) == row.last_path.as_slice();
        (!matches).then_some(
            "does not match its catalog row (the container was replaced or the catalog is stale)",
        )
    }

    /// The first location at which `before(path)` is false, where `before` holds for a prefix of
    /// the dataset's entries in path order.
    fn seek(&self, before: impl Fn(&[u8]) -> bool) -> Result<Option<Location>> {
        let rows = self.catalog.rows();
        let container = rows.partition_point(|r| before(&r.last_path));
        if container == rows.len() {
            return Ok(None);
        }
        let row = self.container(container)?.index().partition_point(&before);
        Ok(Some(Location { container, row }))
    }

    /// The location after `at`, crossing into the next container when needed.
    fn next(&self, at: Location) -> Option<Location> {
        let count = self.catalog.rows()[at.container].entry_count as usize;
        if at.row + 1 < count {
            Some(Location {
                row: at.row + 1,
                ..at
            })
        } else if at.container + 1 < self.catalog.rows().len() {
            Some(Location {
                container: at.container + 1,
                row: 0,
            })
        } else {
            None
        }
    }

    /// The entry at a location.
    pub fn entry_at(&self, at: Location) -> Result<Entry> {
        Ok(self.container(at.container)?.index().entry(at.row))
    }

    /// Finds the entry with exactly this (index-form) path.
    pub fn lookup(&self, path: &[u8]) -> Result<Option<(Location, Entry)>> {
        // Not through `seek`, so the container is fetched once: every fetch of a cached one
        // checks that its file was not cut short under the mapping (a system call).
        let Some(i) = self.container_for(path) else {
            return Ok(None);
        };
        let container = self.container(i)?;
        let index = container.index();
        Ok(index
            .find(path)
            .map(|row| (Location { container: i, row }, index.entry(row))))
    }

    /// The one container whose path range may hold `path` (index form), if any.
    fn container_for(&self, path: &[u8]) -> Option<usize> {
        let rows = self.catalog.rows();
        let i = rows.partition_point(|r| cmp_paths(&r.last_path, path) == Ordering::Less);
        (i < rows.len()).then_some(i)
    }

    /// Metadata of a user-supplied path, without following a final symlink. The root (`""`,
    /// `"."` or `"/"`) is a directory.
    pub fn stat(&self, user_path: &[u8]) -> Result<Entry> {
        let path = normalize(user_path)?;
        if path.is_empty() {
            return Ok(root_entry());
        }
        if let Some((_, entry)) = self.lookup(&path)? {
            return Ok(entry);
        }
        // A directory on the way may be a symlink: resolve the parent, then look the last
        // component up there (the last component itself is not followed).
        let parent = path::parent(&path);
        if parent.is_empty() {
            return Err(not_found(&path));
        }
        let dir = match self.resolve(parent) {
            Ok((_, dir)) if dir.kind == EntryKind::Dir => dir,
            _ => return Err(not_found(&path)),
        };
        let mut real = dir.path;
        real.push(SEPARATOR);
        real.extend_from_slice(path::file_name(&path));
        self.lookup(&real)?
            .map(|(_, e)| e)
            .ok_or_else(|| not_found(&path))
    }

    /// The bytes of a regular file, following symlinks inside the dataset. Bytes are checked
    /// against the index checksum before they are returned.
    pub fn read(&self, user_path: &[u8]) -> Result<Buffer> {
        match self.read_cached_file(user_path)? {
            Some(bytes) => Ok(bytes),
            None => self.read_resolved(user_path),
        }
    }

    /// [`Dataset::read`] the general way: the path normalized and resolved, symlinks followed,
    /// from the cache or the origin.
    fn read_resolved(&self, user_path: &[u8]) -> Result<Buffer> {
        let (at, entry) = self.resolve(user_path)?;
        match entry.kind {
            EntryKind::File => self.read_at(at),
            EntryKind::External => self.read_external(&entry),
            EntryKind::Dir => Err(Error::WrongKind {
                path: display(&entry.path),
                problem: KindProblem::IsADirectory,
            }),
            EntryKind::Symlink => unreachable!("resolve follows symlinks"),
        }
    }

    /// The common case in one pass: a file found under its own path (no symlink on the way)
    /// in a container the cache holds, looked up and read through one mapping, so the
    /// mapping's length check (a system call) is made once. `None` sends the read the general
    /// way (origin, symlinks, external files, not found, paths not in index form).
    fn read_cached_file(&self, user_path: &[u8]) -> Result<Option<Buffer>> {
        match self.cached_file(user_path) {
            Some((at, mapped)) => self.read_mapped(at, &mapped).map(Some),
            None => Ok(None),
        }
    }

    /// Where `user_path` is, with its container's cached mapping, when it is a file found under
    /// its own path in a container the cache holds (see [`Dataset::read_cached_file`]).
    fn cached_file(&self, user_path: &[u8]) -> Option<(Location, Arc<MappedContainer>)> {
        self.tier.as_ref()?;
        // The path is looked up as given, unchecked: a cached container's paths were all checked
        // when it was accepted, so a path equal to one of them is in index form, and one that is
        // not (`/a`, `a//b`, `..`) matches none and is normalized and checked the general way.
        let i = self.container_for(user_path)?;
        // The path's hash bucket starts loading before the mapping's length check, so the
        // check's system call hides that memory access; the path is hashed once for both.
        let key = PathKey::new(user_path);
        let warm = |mapped: &MappedContainer| mapped.container.index().prefetch_find(&key);
        let mapped = self.cached_warming(i, warm)?;
        let index = mapped.container.index();
        let row = index
            .find_key(&key)
            .filter(|&row| index.kind(row) == EntryKind::File)?;
        Some((Location { container: i, row }, mapped))
    }

    /// [`Dataset::read`] into memory the caller provides: `place` is called once, with the
    /// file's length, and returns where to put that many bytes (`None` when it cannot, which
    /// fails the read with `Error::NoRoom`). Returns the length. From a cached container the
    /// bytes are copied and checked in one pass, so a caller that needs its own copy (a
    /// Python `bytes`) pays one pass over them, not a check and then a copy.
    pub fn read_placed<'b>(
        &self,
        user_path: &[u8],
        place: impl FnOnce(usize) -> Option<&'b mut [u8]>,
    ) -> Result<usize> {
        let Some((at, mapped)) = self.cached_file(user_path) else {
            let bytes = self.read_resolved(user_path)?;
            let dst = room(place, bytes.len(), user_path)?;
            dst.copy_from_slice(&bytes);
            return Ok(bytes.len());
        };
        let container = &mapped.container;
        let len = usize::try_from(container.row_len(at.row))
            .ok()
            .filter(|&len| len as u64 <= crate::index::MAX_ENTRY_LEN)
            .ok_or_else(|| {
                Error::corrupt(
                    PathBuf::from(self.container_uri(at.container)),
                    format!("entry {:?} has an impossible length", display(user_path)),
                )
            })?;
        // A cold page is read from disk before `place`, which may take a lock the copy is then
        // made under (see `Container::fault_in_row`).
        container.fault_in_row(at.row);
        let dst = room(place, len, user_path)?;
        let started = Instant::now();
        match container.read_row_to(at.row, dst) {
            Ok(()) => {
                self.count_cache_hit(len, started);
                Ok(len)
            }
            Err(e) if e.is_data_fault() => {
                // The copy is quarantined, so only this read goes to the origin after `place`
                // (perhaps under the caller's lock); later ones go before it, the general way.
                self.cache_fault(at, &e);
                let bytes = self.read_origin(at)?;
                if bytes.len() != len {
                    return Err(Error::corrupt(
                        PathBuf::from(self.container_uri(at.container)),
                        format!(
                            "entry {:?} differs in length from its cached copy",
                            display(user_path)
                        ),
                    ));
                }
                dst.copy_from_slice(&bytes);
                Ok(len)
            }
            Err(e) => Err(e),
        }
    }

    /// The target of a symbolic link, checked against the index checksum.
    pub fn read_link(&self, at: Location) -> Result<Buffer> {
        self.read_at(at)
    }

    /// Resolves a user-supplied path to a non-symlink entry, following links that stay inside
    /// the dataset, in the last component and in the directories on the way to it.
    pub fn resolve(&self, user_path: &[u8]) -> Result<(Location, Entry)> {
        let mut path = normalize(user_path)?;
        for _ in 0..MAX_SYMLINK_HOPS {
            let (at, entry) = match self.lookup(&path)? {
                Some(found) => found,
                None if path.is_empty() => {
                    return Err(Error::WrongKind {
                        path: "/".into(),
                        problem: KindProblem::IsADirectory,
                    })
                }
                None => match self.symlinked_ancestor(&path)? {
                    Some(found) => found,
                    None => return Err(not_found(&path)),
                },
            };
            if entry.kind != EntryKind::Symlink {
                return Ok((at, entry));
            }
            let rest = path
                .get(entry.path.len() + 1..)
                .unwrap_or_default()
                .to_vec();
            let target = self.read_link(at)?;
            path = join_link_target(path::parent(&entry.path), &target).ok_or_else(|| {
                Error::WrongKind {
                    path: display(&entry.path),
                    problem: KindProblem::SymlinkLeavesDataset,
                }
            })?;
            if !rest.is_empty() {
                if !path.is_empty() {
                    path.push(SEPARATOR);
                }
                path.extend_from_slice(&rest);
            }
        }
        Err(Error::WrongKind {
            path: display(user_path),
            problem: KindProblem::SymlinkLoop,
        })
    }

    /// The first proper ancestor of `path` that is a symlink, if any.
    fn symlinked_ancestor(&self, path: &[u8]) -> Result<Option<(Location, Entry)>> {
        for (i, _) in path.iter().enumerate().filter(|(_, &b)| b == SEPARATOR) {
            if let Some((at, entry)) = self.lookup(&path[..i])? {
                if entry.kind == EntryKind::Symlink {
                    return Ok(Some((at, entry)));
                }
            }
        }
        Ok(None)
    }

    /// The direct children of a directory, in path order.
    pub fn list(&self, user_dir: &[u8]) -> Result<Vec<Entry>> {
        Ok(self
            .list_located(user_dir)?
            .into_iter()
            .map(|(_, entry)| entry)
            .collect())
    }

    /// The direct children of a directory with their locations, in path order. A directory the
    /// index implies but does not hold (a foreign index may omit them) has no location.
    pub fn list_located(&self, user_dir: &[u8]) -> Result<Vec<(Option<Location>, Entry)>> {
        let mut dir = normalize(user_dir)?;
        if !dir.is_empty() {
            // Listing a symlink to a directory lists the directory, as `ls link/` does.
            let (_, target) = self.resolve(&dir)?;
            if target.kind != EntryKind::Dir {
                return Err(Error::WrongKind {
                    path: display(&dir),
                    problem: KindProblem::NotADirectory,
                });
            }
            dir = target.path;
        }
        let mut children = Vec::new();
        let mut at = self.seek(|p| cmp_paths(p, &dir) != Ordering::Greater)?;
        while let Some(here) = at {
            let entry = self.entry_at(here)?;
            if !is_inside(&entry.path, &dir) {
                break;
            }
            let is_entry_itself = path::parent(&entry.path) == dir.as_slice();
            let child = direct_child(&dir, entry);
            at = if child.kind == EntryKind::Dir {
                let end = child.path.clone();
                self.seek(|p| cmp_paths(p, &end) != Ordering::Greater || is_inside(p, &end))?
            } else {
                self.next(here)
            };
            children.push((is_entry_itself.then_some(here), child));
        }
        Ok(children)
    }

    /// Every entry of the dataset in path order. A container that cannot be opened yields one
    /// error and the walk goes on with the next container.
    pub fn walk(&self) -> Walk<'_> {
        self.walk_from(Location {
            container: 0,
            row: 0,
        })
    }

    /// Every entry from `start` on, in path order.
    pub fn walk_from(&self, start: Location) -> Walk<'_> {
        Walk {
            dataset: self,
            container: start.container,
            row: start.row,
            current: None,
        }
    }

    /// Every entry below a directory (the whole dataset for the root), in path order.
    pub fn walk_under(
        &self,
        user_dir: &[u8],
    ) -> Result<impl Iterator<Item = Result<(Location, Entry)>> + '_> {
        let dir = normalize(user_dir)?;
        let start = self.seek(|p| cmp_paths(p, &dir) != Ordering::Greater)?;
        let walk = match start {
            Some(at) => self.walk_from(at),
            None => self.walk_from(Location {
                container: self.containers.len(),
                row: 0,
            }),
        };
        Ok(walk.take_while(move |item| {
            item.as_ref()
                .map_or(true, |(_, e)| is_inside(&e.path, &dir))
        }))
    }

    /// Streams an external entry's file through `sink`, then checks its length and checksum:
    /// the sink has seen wrong bytes when this fails, so callers that must never pass wrong
    /// bytes on either check first (`verify_external`) or discard what they wrote.
    pub fn stream_external(
        &self,
        entry: &Entry,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        path::check_entry_path(&entry.path).map_err(|reason| Error::InvalidPath {
            path: display(&entry.path),
            reason,
        })?;
        let file = store::open_file(&self.store, &entry.path, OpenAs::Plain, None)?;
        let uri = file.uri();
        let mut hasher = Xxh3::new();
        let seen = file.stream(&mut |chunk: &[u8]| {
            hasher.update(chunk);
            sink(chunk)
        })?;
        let len = file.len();
        if len != entry.len || seen != entry.len {
            return Err(Error::corrupt(
                &uri,
                format!(
                    "external file is {len} bytes, the index says {} (changed since the fold?)",
                    entry.len
                ),
            ));
        }
        check_external(Path::new(&uri), entry, hasher.digest())
    }

    /// Bytes `range` of an external entry's file, from where it lives: one read, unchecked
    /// (the checksum covers the whole file; callers that read it all check it themselves).
    pub fn read_external_range(
        &self,
        entry: &Entry,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>> {
        path::check_entry_path(&entry.path).map_err(|reason| Error::InvalidPath {
            path: display(&entry.path),
            reason,
        })?;
        // The index's length stands in for the object's: a range read needs none, and asking
        // would cost a remote store a request each time.
        store::open_file(&self.store, &entry.path, OpenAs::Plain, Some(entry.len))?
            .read_range(range)
    }

    /// Reads an external file whole, checked against the index checksum.
    pub fn read_external(&self, entry: &Entry) -> Result<Buffer> {
        // The index's length is untrusted until the file has been seen: reserve modestly.
        let mut bytes = Vec::with_capacity(entry.len.min(64 << 20) as usize);
        self.stream_external(entry, &mut |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(Buffer::from_vec(bytes))
    }

    /// Streams an external file once to check its length and checksum.
    pub fn verify_external(&self, entry: &Entry) -> Result<()> {
        self.stream_external(entry, &mut |_| Ok(()))
    }
}

/// Iterator over every entry of a dataset; see [`Dataset::walk`].
pub struct Walk<'a> {
    dataset: &'a Dataset,
    container: usize,
    row: usize,
    current: Option<Arc<Container>>,
}

impl Iterator for Walk<'_> {
    type Item = Result<(Location, Entry)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.container >= self.dataset.containers.len() {
                return None;
            }
            let current = match &self.current {
                Some(open) => open,
                None => match self.dataset.container(self.container) {
                    Ok(open) => self.current.insert(open),
                    Err(e) => {
                        self.container += 1;
                        return Some(Err(e));
                    }
                },
            };
            if self.row < current.index().len() {
                let at = Location {
                    container: self.container,
                    row: self.row,
                };
                self.row += 1;
                return Some(Ok((at, current.index().entry(at.row))));
            }
            self.container += 1;
            self.row = 0;
            self.current = None;
        }
    }
}

/// Fails unless `found` is the checksum the index holds for an external file.
pub(crate) fn check_external(file: &Path, entry: &Entry, found: u64) -> Result<()> {
    if found != entry.xxh3 {
        return Err(Error::ChecksumMismatch {
            file: file.to_path_buf(),
            path: display(&entry.path),
            expected: entry.xxh3,
            found,
        });
    }
    Ok(())
}

fn not_found(path: &[u8]) -> Error {
    Error::NotFound {
        path: display(path),
    }
}

/// The synthetic entry for the dataset root.
pub fn root_entry() -> Entry {
    Entry {
        path: Vec::new(),
        kind: EntryKind::Dir,
        offset: 0,
        stored_len: 0,
        len: 0,
        codec: crate::index::Codec::None,
        xxh3: 0,
        mode: 0o040755,
        mtime_ns: 0,
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

/// Joins a relative symlink target to the link's directory, resolving `.` and `..`; `None` when
/// the target is absolute or climbs above the root.
fn join_link_target(link_dir: &[u8], target: &[u8]) -> Option<Vec<u8>> {
    if target.first() == Some(&SEPARATOR) {
        return None;
    }
    let mut parts: Vec<&[u8]> = link_dir
        .split(|&b| b == SEPARATOR)
        .filter(|c| !c.is_empty())
        .collect();
    for component in target.split(|&b| b == SEPARATOR) {
        match component {
            b"" | b"." => {}
            b".." => {
                parts.pop()?;
            }
            name => parts.push(name),
        }
    }
    Some(parts.join(&SEPARATOR))
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

#[cfg(test)]
mod tests {
    use super::join_link_target;

    #[test]
    fn link_targets_resolve_inside_the_root_only() {
        assert_eq!(join_link_target(b"a/b", b"../c").unwrap(), b"a/c");
        assert_eq!(join_link_target(b"", b"./x/y").unwrap(), b"x/y");
        assert!(join_link_target(b"a", b"../../etc").is_none());
        assert!(join_link_target(b"a", b"/etc/passwd").is_none());
    }
}
