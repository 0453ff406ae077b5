//! Reader counters and latency histograms, kept twice: per process (for a mount's metrics or
//! the C ABI) and in a small memory-mapped file of the cache directory, which every process
//! using that cache adds to atomically, so `sheaf cache stats` sees them all.

use crate::error::{Error, IoContext, Result};
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Entries served from a cached container.
    Hits,
    /// Entries of containers the cache did not hold.
    Misses,
    /// Ranged reads sent to the origin for entries.
    OriginReads,
    /// Bytes those reads returned.
    OriginBytes,
    /// Bytes served from cached containers.
    CacheBytes,
    /// Reads that met a cache fault and were served from the origin instead.
    Fallbacks,
    /// Checksum mismatches met in cached containers.
    ChecksumFailures,
    /// Cache files moved aside as faulty.
    Quarantined,
    /// Containers evicted to keep the quota.
    Evictions,
    /// Bytes evicted.
    EvictedBytes,
    /// Containers fetched into the cache (preload or fill).
    Fetches,
    /// Bytes fetched into the cache.
    FetchedBytes,
    /// Cache lookups skipped because the cache tier kept failing (served by the origin).
    TierBypassed,
    /// Times a reader stopped using a cache tier that kept failing, for a back-off period.
    TierTrips,
}

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Counter; 14] = [
        Counter::Hits,
        Counter::Misses,
        Counter::OriginReads,
        Counter::OriginBytes,
        Counter::CacheBytes,
        Counter::Fallbacks,
        Counter::ChecksumFailures,
        Counter::Quarantined,
        Counter::Evictions,
        Counter::EvictedBytes,
        Counter::Fetches,
        Counter::FetchedBytes,
        Counter::TierBypassed,
        Counter::TierTrips,
    ];

    /// The counter's name in reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Counter::Hits => "hits",
            Counter::Misses => "misses",
            Counter::OriginReads => "origin_reads",
            Counter::OriginBytes => "origin_bytes",
            Counter::CacheBytes => "cache_bytes",
            Counter::Fallbacks => "fallbacks",
            Counter::ChecksumFailures => "checksum_failures",
            Counter::Quarantined => "quarantined",
            Counter::Evictions => "evictions",
            Counter::EvictedBytes => "evicted_bytes",
            Counter::Fetches => "fetches",
            Counter::FetchedBytes => "fetched_bytes",
            Counter::TierBypassed => "tier_bypassed",
            Counter::TierTrips => "tier_trips",
        }
    }
}

/// Which reads a latency is recorded for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latency {
    /// An entry read from a cached container.
    Cache,
    /// An entry read from the origin.
    Origin,
}

impl Latency {
    /// Both kinds, in slot order.
    pub const ALL: [Latency; 2] = [Latency::Cache, Latency::Origin];

    /// The kind's name in reports and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Latency::Cache => "cache",
            Latency::Origin => "origin",
        }
    }
}

/// Histogram buckets: bucket `b` counts latencies in `[2^b, 2^(b+1))` nanoseconds; the last one
/// everything longer.
pub const BUCKETS: usize = 40;

const HEADER_SLOTS: usize = 1;
/// The counters of the file's first layout, before the histograms; counters added later take
/// slots after the histograms, so files written by older builds keep their meaning.
const FIRST_COUNTERS: usize = 12;
const HISTOGRAM_SLOTS: usize = Latency::ALL.len() * BUCKETS;
const SLOTS: usize = HEADER_SLOTS + Counter::ALL.len() + HISTOGRAM_SLOTS;
const MAGIC: u64 = u64::from_le_bytes(*b"SHFCNT01");

/// The bytes of the shared counters file.
pub(super) const FILE_LEN: u64 = 4096;
const _: () = assert!((SLOTS * 8) as u64 <= FILE_LEN);

/// A set of counters: in memory, or shared through a mapped file.
pub struct Counters {
    slots: Slots,
}

enum Slots {
    Owned(Box<[AtomicU64]>),
    Shared(memmap2::MmapMut),
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters").finish_non_exhaustive()
    }
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            slots: Slots::Owned((0..SLOTS).map(|_| AtomicU64::new(0)).collect()),
        }
    }
}

impl Counters {
    /// Maps the shared counters file at `path`, creating it zeroed when missing.
    pub fn shared(path: &Path) -> Result<Counters> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .ctx("open", path)?;
        let len = file.metadata().ctx("stat", path)?.len();
        if len != FILE_LEN {
            if len != 0 {
                return Err(Error::corrupt(
                    path,
                    format!("{len} bytes, expected {FILE_LEN}: remove it to reset the counters"),
                ));
            }
            file.set_len(FILE_LEN).ctx("extend", path)?;
        }
        // SAFETY: the file is sheaf's own, of fixed length, and only ever accessed through
        // atomic operations on aligned u64 slots.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.ctx("map", path)?;
        let counters = Counters {
            slots: Slots::Shared(map),
        };
        let header = counters.slot(0).load(Ordering::Relaxed);
        match header {
            MAGIC => {}
            0 => counters.slot(0).store(MAGIC, Ordering::Relaxed),
            _ => {
                return Err(Error::corrupt(
                    path,
                    "not a sheaf counters file: remove it to reset the counters",
                ))
            }
        }
        Ok(counters)
    }

    fn slot(&self, i: usize) -> &AtomicU64 {
        match &self.slots {
            Slots::Owned(slots) => &slots[i],
            Slots::Shared(map) => {
                debug_assert!(i < SLOTS);
                // SAFETY: the map is page-aligned and FILE_LEN long, so every slot below SLOTS
                // is an aligned, in-bounds u64 that lives as long as `self`.
                unsafe { &*(map.as_ptr().add(i * 8) as *const AtomicU64) }
            }
        }
    }

    fn counter_slot(counter: Counter) -> usize {
        match counter as usize {
            i if i < FIRST_COUNTERS => HEADER_SLOTS + i,
            i => HEADER_SLOTS + FIRST_COUNTERS + HISTOGRAM_SLOTS + (i - FIRST_COUNTERS),
        }
    }

    fn bucket_slot(kind: Latency, bucket: usize) -> usize {
        HEADER_SLOTS + FIRST_COUNTERS + kind as usize * BUCKETS + bucket
    }

    /// Adds `n` to a counter.
    pub fn add(&self, counter: Counter, n: u64) {
        self.slot(Self::counter_slot(counter))
            .fetch_add(n, Ordering::Relaxed);
    }

    /// Records one latency.
    pub fn record(&self, kind: Latency, nanos: u64) {
        let bucket = (63 - nanos.max(1).leading_zeros() as usize).min(BUCKETS - 1);
        self.slot(Self::bucket_slot(kind, bucket))
            .fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of every value.
    pub fn snapshot(&self) -> Snapshot {
        let counters = Counter::ALL
            .iter()
            .map(|&c| (c, self.slot(Self::counter_slot(c)).load(Ordering::Relaxed)))
            .collect();
        let histograms = Latency::ALL
            .iter()
            .map(|&kind| {
                let buckets = (0..BUCKETS)
                    .map(|b| {
                        self.slot(Self::bucket_slot(kind, b))
                            .load(Ordering::Relaxed)
                    })
                    .collect();
                (kind, buckets)
            })
            .collect();
        Snapshot {
            counters,
            histograms,
        }
    }
}

/// Counter values and histograms at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Every counter with its value.
    pub counters: Vec<(Counter, u64)>,
    /// Per latency kind, the count in each bucket.
    pub histograms: Vec<(Latency, Vec<u64>)>,
}

impl Snapshot {
    /// One counter's value.
    pub fn get(&self, counter: Counter) -> u64 {
        self.counters
            .iter()
            .find(|(c, _)| *c == counter)
            .map_or(0, |(_, v)| *v)
    }

    /// The latency below which `quantile` (0..=1) of the recorded reads of `kind` fell, as the
    /// upper edge of its bucket in nanoseconds; `None` when nothing was recorded.
    pub fn quantile(&self, kind: Latency, quantile: f64) -> Option<u64> {
        let buckets = &self.histograms.iter().find(|(k, _)| *k == kind)?.1;
        // Saturating: the counts come from a file another process (or damage) may have
        // filled with anything.
        let total = buckets.iter().fold(0u64, |sum, &n| sum.saturating_add(n));
        if total == 0 {
            return None;
        }
        let wanted = ((total as f64) * quantile).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (bucket, count) in buckets.iter().enumerate() {
            seen = count.saturating_add(seen);
            if seen >= wanted {
                return Some(1u64 << (bucket + 1));
            }
        }
        None
    }

    /// Prometheus text exposition of every counter and histogram, names prefixed `sheaf_`.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        for (counter, value) in &self.counters {
            let name = counter.name();
            out.push_str(&format!(
                "# TYPE sheaf_{name}_total counter\nsheaf_{name}_total {value}\n"
            ));
        }
        out.push_str("# TYPE sheaf_read_seconds histogram\n");
        for (kind, buckets) in &self.histograms {
            let mut cumulative = 0;
            for (bucket, count) in buckets.iter().enumerate() {
                cumulative = count.saturating_add(cumulative);
                let le = (1u64 << (bucket + 1)) as f64 / 1e9;
                out.push_str(&format!(
                    "sheaf_read_seconds_bucket{{source=\"{}\",le=\"{le:e}\"}} {cumulative}\n",
                    kind.name()
                ));
            }
            out.push_str(&format!(
                "sheaf_read_seconds_bucket{{source=\"{}\",le=\"+Inf\"}} {cumulative}\nsheaf_read_seconds_count{{source=\"{}\"}} {cumulative}\n",
                kind.name(),
                kind.name()
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counters_add_up_across_mappings_of_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters");
        let a = Counters::shared(&path).unwrap();
        let b = Counters::shared(&path).unwrap();
        a.add(Counter::Hits, 3);
        b.add(Counter::Hits, 4);
        b.record(Latency::Origin, 1500);
        let seen = Counters::shared(&path).unwrap().snapshot();
        assert_eq!(seen.get(Counter::Hits), 7);
        assert_eq!(seen.quantile(Latency::Origin, 0.5), Some(2048));
        assert_eq!(seen.quantile(Latency::Cache, 0.5), None);
    }

    #[test]
    fn a_counters_file_full_of_huge_values_reads_without_overflowing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters");
        let mut bytes = vec![0xffu8; FILE_LEN as usize];
        bytes[..8].copy_from_slice(&MAGIC.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        let snapshot = Counters::shared(&path).unwrap().snapshot();
        assert_eq!(snapshot.get(Counter::Hits), u64::MAX);
        // Every bucket holds u64::MAX: the count saturates, the median is the first bucket's.
        assert_eq!(snapshot.quantile(Latency::Cache, 0.5), Some(2));
        assert!(snapshot.prometheus().contains(&format!(
            "sheaf_read_seconds_count{{source=\"cache\"}} {}",
            u64::MAX
        )));
    }

    #[test]
    fn counters_added_later_leave_the_first_layout_where_it_was() {
        let mut slots: Vec<usize> = Counter::ALL
            .iter()
            .map(|&c| Counters::counter_slot(c))
            .collect();
        slots.extend(
            Latency::ALL
                .iter()
                .flat_map(|&k| (0..BUCKETS).map(move |b| Counters::bucket_slot(k, b))),
        );
        // The layout older builds wrote: hits at 1, fetched bytes at 12, the histograms after.
        assert_eq!(Counters::counter_slot(Counter::Hits), 1);
        assert_eq!(Counters::counter_slot(Counter::FetchedBytes), 12);
        assert_eq!(Counters::bucket_slot(Latency::Cache, 0), 13);
        assert_eq!(
            Counters::counter_slot(Counter::TierBypassed),
            13 + 2 * BUCKETS
        );
        let distinct: std::collections::HashSet<_> = slots.iter().collect();
        assert_eq!(distinct.len(), slots.len());
        assert!(slots.iter().all(|&s| s > 0 && s < SLOTS));
    }

    #[test]
    fn a_foreign_counters_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counters");
        std::fs::write(&path, vec![7u8; FILE_LEN as usize]).unwrap();
        assert!(Counters::shared(&path).is_err());
    }
}
