//! The cache-aware half of the reader: per container, a cached copy when the cache holds one
//! (mapped, zero-copy), the origin otherwise, and on any cache fault the origin at the same
//! offset while the faulty file is quarantined and the event counted.

use crate::cache::{Cache, Counter, Counters, Fetched, Latency, MappedContainer, RECHECK_AFTER};
use crate::format::CatalogRow;
use crate::layout::container_key;
use crate::store::{ReadPolicy, Store, CHUNK};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often a long-lived reader marks a cached container it keeps using as recently used.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Misses of one container after which read-through fill fetches it whole.
const FILL_AFTER_MISSES: u32 = 2;

/// Ranged requests in flight for one container fetched ahead from a remote store.
const PREFETCH_WAYS: usize = 4;

/// Containers fetched by read-through fill at once, per dataset.
const MAX_FILLS: usize = 2;

/// Cache faults in a row (no sound lookup between them) after which a reader stops using the
/// cache tier for a while.
const TRIP_AFTER_FAULTS: u32 = 8;

/// The first pause in using a failing cache tier; each failed probe doubles it, up to
/// [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(300);

/// A circuit breaker over the cache tier: a cache that keeps failing (a dying disk, a directory
/// made unreadable, files damaged faster than they are refetched) costs a failed access on
/// every read; after [`TRIP_AFTER_FAULTS`] in a row the reader serves from the origin alone for
/// a pause, then lets lookups through again as probes. One sound lookup closes the breaker; a
/// fault while probing opens it again for twice as long.
#[derive(Debug)]
struct Breaker {
    faults_in_a_row: u32,
    open_until: Option<Instant>,
    pause: Duration,
}

impl Breaker {
    fn new() -> Breaker {
        Breaker {
            faults_in_a_row: 0,
            open_until: None,
            pause: FIRST_PAUSE,
        }
    }

    /// True while lookups must skip the cache.
    fn is_open(&mut self) -> bool {
        match self.open_until {
            Some(until) if Instant::now() < until => true,
            Some(_) => {
                // Probing: the next fault opens the breaker again.
                self.open_until = None;
                self.faults_in_a_row = TRIP_AFTER_FAULTS - 1;
                false
            }
            None => false,
        }
    }

    /// Notes a fault; returns true when it opened the breaker.
    fn fault(&mut self) -> bool {
        self.faults_in_a_row += 1;
        if self.faults_in_a_row < TRIP_AFTER_FAULTS || self.open_until.is_some() {
            return false;
        }
        self.open_until = Some(Instant::now() + self.pause);
        self.pause = (self.pause * 2).min(LONGEST_PAUSE);
        true
    }

    fn sound(&mut self) {
        self.faults_in_a_row = 0;
        self.pause = FIRST_PAUSE;
    }
}

/// What a reader knows of one container's cached copy.
#[derive(Debug)]
enum Slot {
    /// Not looked for yet.
    Unknown,
    /// Mapped and checked against its catalog row.
    Cached {
        mapped: Arc<MappedContainer>,
        touched: Instant,
    },
    /// Not in the cache when last looked for (or faulty and quarantined).
    Absent { since: Instant, misses: u32 },
}

/// A dataset's view of a cache.
#[derive(Debug)]
pub(super) struct Tier {
    cache: Arc<Cache>,
    slots: Vec<Mutex<Slot>>,
    fill: bool,
    filling: Arc<Mutex<HashSet<u128>>>,
    policy: ReadPolicy,
    breaker: Mutex<Breaker>,
}

impl Tier {
    pub(super) fn new(
        cache: Arc<Cache>,
        containers: usize,
        fill: bool,
        policy: ReadPolicy,
    ) -> Tier {
        Tier {
            cache,
            slots: (0..containers).map(|_| Mutex::new(Slot::Unknown)).collect(),
            fill,
            filling: Arc::default(),
            policy,
            breaker: Mutex::new(Breaker::new()),
        }
    }

    pub(super) fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    fn breaker(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True while the tier is skipped after repeated faults (counted as bypassed).
    fn bypassed(&self, stats: &Stats) -> bool {
        let open = self.breaker().is_open();
        if open {
            stats.add(Counter::TierBypassed, 1);
        }
        open
    }

    /// Notes a cache fault, opening the breaker (counted) after too many in a row.
    fn note_fault(&self, stats: &Stats) {
        if self.breaker().fault() {
            stats.add(Counter::TierTrips, 1);
        }
    }

    /// True when the tier is in use: reads that found it skipped go to the origin without
    /// asking it for anything (no fill either).
    pub(super) fn in_use(&self) -> bool {
        !self.breaker().is_open()
    }

    /// The cached copy of container `i`, if the cache holds a sound one. `accept` checks a
    /// freshly mapped copy against the catalog; a copy it rejects is quarantined. `warm` is
    /// given a copy already mapped before its length is checked, to start memory loads that
    /// cannot fault (prefetches) while the check's system call runs.
    pub(super) fn cached(
        &self,
        i: usize,
        row: &CatalogRow,
        stats: &Stats,
        accept: impl FnOnce(&MappedContainer) -> bool,
        warm: impl FnOnce(&MappedContainer),
    ) -> Option<Arc<MappedContainer>> {
        if let Some(mapped) = self.mapped(i, row) {
            warm(&mapped);
            // The length check is a system call: made outside the slot's lock, so readers of
            // one container on several threads do not queue behind each other's.
            if mapped.is_whole() {
                return Some(mapped);
            }
            // Cut short under us: the mapping must not be read past its new end.
            let mut slot = self.slots[i].lock().unwrap_or_else(|p| p.into_inner());
            if matches!(&*slot, Slot::Cached { mapped: m, .. } if Arc::ptr_eq(m, &mapped)) {
                self.cache.quarantine(row.content_id);
                stats.add(Counter::Fallbacks, 1);
                *slot = absent(0);
                self.note_fault(stats);
            }
            return None;
        }
        if self.bypassed(stats) {
            return None;
        }
        let mut slot = self.slots[i].lock().unwrap_or_else(|p| p.into_inner());
        match &mut *slot {
            // Mapped by another thread since the look above.
            Slot::Cached { mapped, .. } => Some(mapped.clone()),
            Slot::Absent { since, .. } if since.elapsed() < RECHECK_AFTER => None,
            _ => match self.cache.map(row.content_id, self.policy) {
                Ok(Some(mapped)) if accept(&mapped) => {
                    self.breaker().sound();
                    let mapped = Arc::new(mapped);
                    *slot = Slot::Cached {
                        mapped: mapped.clone(),
                        touched: Instant::now(),
                    };
                    Some(mapped)
                }
                Ok(Some(_)) => {
                    self.cache.quarantine(row.content_id);
                    *slot = absent(0);
                    self.note_fault(stats);
                    None
                }
                Ok(None) => {
                    let misses = match &*slot {
                        Slot::Absent { misses, .. } => *misses,
                        _ => 0,
                    };
                    *slot = absent(misses);
                    None
                }
                Err(_) => {
                    // A damaged file was quarantined by `map`; either way the origin serves.
                    *slot = absent(0);
                    self.note_fault(stats);
                    None
                }
            },
        }
    }

    /// The mapped copy of container `i` if the slot holds one, marked as recently used now
    /// and then.
    fn mapped(&self, i: usize, row: &CatalogRow) -> Option<Arc<MappedContainer>> {
        let mut slot = self.slots[i].lock().unwrap_or_else(|p| p.into_inner());
        let Slot::Cached { mapped, touched } = &mut *slot else {
            return None;
        };
        if touched.elapsed() > TOUCH_EVERY {
            self.cache.touch(row.content_id);
            *touched = Instant::now();
        }
        Some(mapped.clone())
    }

    /// Drops the cached copy of container `i` after a fault and quarantines it.
    pub(super) fn fault(&self, i: usize, row: &CatalogRow, stats: &Stats) {
        self.cache.quarantine(row.content_id);
        *self.slots[i].lock().unwrap_or_else(|p| p.into_inner()) = absent(0);
        self.note_fault(stats);
    }

    /// Notes a miss of container `i`; with read-through fill on, a container that keeps
    /// missing is fetched whole in the background.
    pub(super) fn missed(&self, i: usize, row: &CatalogRow, origin: &Arc<dyn Store>) {
        if !self.in_use() {
            return;
        }
        let misses = {
            let mut slot = self.slots[i].lock().unwrap_or_else(|p| p.into_inner());
            match &mut *slot {
                Slot::Absent { misses, .. } => {
                    *misses += 1;
                    *misses
                }
                _ => return,
            }
        };
        if !self.fill || misses < FILL_AFTER_MISSES {
            return;
        }
        {
            let mut filling = self.filling.lock().unwrap_or_else(|p| p.into_inner());
            if filling.len() >= MAX_FILLS || !filling.insert(row.content_id) {
                return;
            }
        }
        let (cache, origin, filling) = (self.cache.clone(), origin.clone(), self.filling.clone());
        let (id, len, key) = (row.content_id, row.file_len, container_key(&row.name));
        std::thread::spawn(move || {
            // A failed fill changes nothing: reads keep going to the origin.
            let _ = cache.fetch(id, len, &HashSet::from([id]), |place, sink| {
                crate::store::read_chunks_placed(origin.as_ref(), &key, len, CHUNK, 1, place, sink)
            });
            filling
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }
}

impl Tier {
    /// Copies container `i` into the cache now (one whole-container read) unless it is there,
    /// so the reads that follow find it: the look-ahead of a streaming reader. The next read
    /// of the container looks in the cache again.
    pub(super) fn prefetch(
        &self,
        i: usize,
        row: &CatalogRow,
        origin: &Arc<dyn Store>,
    ) -> crate::error::Result<Fetched> {
        let key = container_key(&row.name);
        // A remote store answers several ranges of one object side by side faster than one
        // after another; a local disk streams a file in order best.
        let ways = if origin.ranges_in_parallel() {
            PREFETCH_WAYS
        } else {
            1
        };
        let fetched = self.cache.fetch(
            row.content_id,
            row.file_len,
            &HashSet::from([row.content_id]),
            |place, sink| {
                crate::store::read_chunks_placed(
                    origin.as_ref(),
                    &key,
                    row.file_len,
                    CHUNK,
                    ways,
                    place,
                    sink,
                )
            },
        )?;
        let mut slot = self.slots[i].lock().unwrap_or_else(|p| p.into_inner());
        if matches!(&*slot, Slot::Absent { .. }) {
            *slot = Slot::Unknown;
        }
        Ok(fetched)
    }
}

fn absent(misses: u32) -> Slot {
    Slot::Absent {
        since: Instant::now(),
        misses,
    }
}

/// A dataset's counters: its own, and the cache's shared ones when it reads through a cache.
#[derive(Debug, Default)]
pub(super) struct Stats {
    own: Counters,
    shared: Option<Arc<Cache>>,
}

impl Stats {
    pub(super) fn new(shared: Option<Arc<Cache>>) -> Stats {
        Stats {
            own: Counters::default(),
            shared,
        }
    }

    pub(super) fn own(&self) -> &Counters {
        &self.own
    }

    pub(super) fn add(&self, counter: Counter, n: u64) {
        self.own.add(counter, n);
        if let Some(cache) = &self.shared {
            cache.counters().add(counter, n);
        }
    }

    pub(super) fn latency(&self, kind: Latency, since: Instant) {
        let nanos = since.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.own.record(kind, nanos);
        if let Some(cache) = &self.shared {
            cache.counters().record(kind, nanos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ends the breaker's pause now, as time passing would.
    fn pause_over(breaker: &mut Breaker) {
        breaker.open_until = Some(Instant::now() - Duration::from_millis(1));
    }

    #[test]
    fn the_breaker_opens_after_faults_in_a_row_and_a_sound_lookup_closes_it() {
        let mut breaker = Breaker::new();
        for _ in 1..TRIP_AFTER_FAULTS {
            assert!(!breaker.fault());
        }
        assert!(!breaker.is_open());
        assert!(breaker.fault(), "the eighth fault in a row opens it");
        assert!(breaker.is_open());
        assert!(!breaker.fault(), "faults while open do not open it again");

        // Probing after the pause: one fault opens it again, for twice as long.
        pause_over(&mut breaker);
        assert!(!breaker.is_open());
        assert!(breaker.fault());
        let until = breaker.open_until.unwrap();
        assert!(until > Instant::now() + FIRST_PAUSE);

        // A sound lookup while probing closes it and resets the pause.
        pause_over(&mut breaker);
        assert!(!breaker.is_open());
        breaker.sound();
        assert_eq!(breaker.pause, FIRST_PAUSE);
        assert!(
            !breaker.fault(),
            "a fault after a sound lookup starts a new count"
        );
    }

    #[test]
    fn a_sound_lookup_between_faults_keeps_the_breaker_closed() {
        let mut breaker = Breaker::new();
        for _ in 0..10 {
            for _ in 1..TRIP_AFTER_FAULTS {
                assert!(!breaker.fault());
            }
            breaker.sound();
        }
        assert!(!breaker.is_open());
    }

    #[test]
    fn the_pause_doubles_up_to_its_longest() {
        let mut breaker = Breaker::new();
        for _ in 0..TRIP_AFTER_FAULTS {
            breaker.fault();
        }
        for _ in 0..20 {
            pause_over(&mut breaker);
            assert!(!breaker.is_open());
            assert!(breaker.fault());
        }
        assert_eq!(breaker.pause, LONGEST_PAUSE);
    }
}
