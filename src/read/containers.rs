//! Containers of an open dataset: from the cache tier when it holds a sound copy, else from
//! the origin, opened on first use and checked against the catalog; reads by location.

use super::*;

impl Dataset {
    /// Container `i` of the catalog, from the cache when it holds a sound copy, else from the
    /// origin; opened on first use and checked against its catalog row and for safe, strictly
    /// ordered paths.
    pub fn container(&self, i: usize) -> Result<Arc<Container>> {
        if let Some(mapped) = self.cached(i) {
            return Ok(mapped.container.clone());
        }
        self.origin_container(i)
    }

    pub(super) fn cached(&self, i: usize) -> Option<Arc<MappedContainer>> {
        self.cached_warming(i, |_| {})
    }

    /// [`Dataset::cached`], handing a copy already mapped to `warm` before its length check
    /// (see `Tier::cached`).
    pub(super) fn cached_warming(
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

    pub(super) fn origin_container(&self, i: usize) -> Result<Arc<Container>> {
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
    pub(super) fn container_problem(&self, i: usize, container: &Container) -> Option<String> {
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
    pub(super) fn read_mapped(&self, at: Location, mapped: &MappedContainer) -> Result<Buffer> {
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

    pub(super) fn count_cache_hit(&self, len: usize, started: Instant) {
        self.stats.add(Counter::Hits, 1);
        self.stats.add(Counter::CacheBytes, len as u64);
        self.stats.latency(Latency::Cache, started);
    }

    /// Counts a data fault `e` of the cached copy holding `at` and quarantines that copy; the
    /// caller then reads from the origin.
    pub(super) fn cache_fault(&self, at: Location, e: &Error) {
        if matches!(e, Error::ChecksumMismatch { .. }) {
            self.stats.add(Counter::ChecksumFailures, 1);
        }
        self.stats.add(Counter::Fallbacks, 1);
        if let Some(tier) = &self.tier {
            tier.fault(
                at.container,
                &self.catalog.rows()[at.container],
                &self.stats,
            );
        }
    }

    /// The entry at `at` from the origin's container.
    pub(super) fn read_origin(&self, at: Location) -> Result<Buffer> {
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

    pub(super) fn open_container_with(&self, i: usize, policy: ReadPolicy) -> Result<Container> {
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
}
