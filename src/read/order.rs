//! Epoch orders for training: the files below a directory shuffled by windows of containers,
//! deterministic from (seed, epoch), cut into equal parts for ranks and workers, resumable.
//!
//! A fully random order over a dataset larger than a node's cache turns every read into a
//! miss: each sample would come from a different container. An epoch order instead
//!
//! 1. shuffles the *units* (a container, or one external file) with the epoch's generator and
//!    lays their samples out one unit after another, a unit's samples in path order;
//! 2. groups that sequence into *windows* of `window` consecutive units;
//! 3. cuts the sequence into `parts` equal slices (rank `r` of `world` reads slice `r`; a
//!    rank's DataLoader workers cut its slice again), padded by wrapping round to the start
//!    (or shortened with `drop_last`), as `DistributedSampler` does;
//! 4. shuffles the samples of each window within each slice.
//!
//! So a part touches a run of consecutive windows, reads each container of a window in one
//! stretch of time, and shares at most the container at each of its ends with its neighbours.
//! The order depends only on the files and the settings, never on timing or thread count, and
//! the generator is written here (SplitMix64) so the order stays the same across releases.

use super::{Dataset, ReadOptions};
use crate::error::{Error, Result, Setting};
use crate::format::EntryKind;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

impl Dataset {
    /// Copies the containers at these catalog positions into the dataset's cache, one whole
    /// sequential read each, skipping those it holds: what a streaming reader calls for its
    /// next window while it reads the current one. Returns the bytes copied; without a cache
    /// there is nowhere to copy to, and nothing is read.
    pub fn fetch_ahead(&self, containers: &[usize]) -> Result<u64> {
        let Some(tier) = &self.tier else {
            return Ok(0);
        };
        let rows = self.catalog.rows();
        let mut copied = 0;
        for &i in containers {
            let row = rows.get(i).ok_or_else(|| Error::InvalidSetting {
                setting: Setting::Order,
                reason: format!("no container {i}: the catalog has {}", rows.len()),
            })?;
            if let crate::cache::Fetched::Copied(bytes) = tier.prefetch(i, row, &self.store)? {
                copied += bytes;
            }
        }
        Ok(copied)
    }
}

/// A node's share of an epoch's containers: what `sheaf preload --shard` copies.
#[derive(Clone, Debug)]
pub struct Shard {
    /// The generation the order was made over (preload that one, so the ids match).
    pub generation: u64,
    /// Content ids of the containers whose first sample of the epoch falls in the part.
    pub containers: HashSet<u128>,
    /// Samples the part reads.
    pub samples: u64,
}

/// The containers part `settings.part` of `settings.parts` reads first in the epoch the
/// settings name, over the files below `under` in the dataset at `uri` (the newest
/// generation, or `generation`). Every container the epoch reads lands in exactly one shard.
pub fn shard(
    uri: impl AsRef<std::ffi::OsStr>,
    generation: Option<u64>,
    under: &[u8],
    settings: OrderSettings,
) -> Result<Shard> {
    let options = ReadOptions {
        generation,
        ..Default::default()
    };
    let dataset = Dataset::open_in_with(crate::store::open(uri.as_ref())?, options)?;
    let samples = Samples::under(&dataset, under)?;
    let epoch = EpochOrder::new(&samples, settings)?;
    let rows = dataset.catalog().rows();
    let containers = epoch
        .units_of_part(settings.part)
        .into_iter()
        .filter_map(|unit| match unit {
            Unit::Container(i) => Some(rows[i].content_id),
            Unit::External(_) => None,
        })
        .collect();
    Ok(Shard {
        generation: dataset.generation(),
        containers,
        samples: epoch.part_len(),
    })
}

/// Where one run of samples lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// A container, by its position in the catalog.
    Container(usize),
    /// An external file (its bytes are not in a container): the sample's own index.
    External(u64),
}

/// A run of consecutive samples (in path order) stored in one unit.
#[derive(Clone, Copy, Debug)]
struct Run {
    start: u64,
    len: u64,
}

/// The samples an order is made of: every regular file below a directory, numbered in path
/// order from 0 (the numbering `sheaf.torch.FoldedDataset` and `Dataset.files` use), grouped
/// by the unit that stores them.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    count: u64,
    units: Vec<Unit>,
    /// Each unit's runs, in path order.
    runs: Vec<Vec<Run>>,
}

impl Samples {
    /// The regular files below `dir` (the whole dataset for the root; a symlink to a
    /// directory is followed).
    pub fn under(dataset: &Dataset, dir: &[u8]) -> Result<Samples> {
        let dir = dataset.directory(dir)?;
        let mut samples = Samples::default();
        let mut unit_of: HashMap<usize, usize> = HashMap::new();
        for item in dataset.walk_under(&dir)? {
            let (at, entry) = item?;
            let unit = match entry.kind {
                EntryKind::File => Unit::Container(at.container),
                EntryKind::External => Unit::External(samples.count),
                _ => continue,
            };
            let slot = match unit {
                Unit::Container(c) => *unit_of.entry(c).or_insert(samples.units.len()),
                Unit::External(_) => samples.units.len(),
            };
            samples.push(slot, unit);
        }
        Ok(samples)
    }

    /// Samples from units given in path order, each with its number of samples (for tests and
    /// for callers that know their layout).
    pub fn from_units(units: impl IntoIterator<Item = (Unit, u64)>) -> Samples {
        let mut samples = Samples::default();
        let mut unit_of: HashMap<Unit, usize> = HashMap::new();
        for (unit, len) in units {
            let slot = *unit_of.entry(unit).or_insert(samples.units.len());
            for _ in 0..len {
                samples.push(slot, unit);
            }
        }
        samples
    }

    /// Adds the next sample (number `self.count`) to the unit at `slot`.
    fn push(&mut self, slot: usize, unit: Unit) {
        if slot == self.units.len() {
            self.units.push(unit);
            self.runs.push(Vec::new());
        }
        let runs = &mut self.runs[slot];
        match runs.last_mut() {
            Some(run) if run.start + run.len == self.count => run.len += 1,
            _ => runs.push(Run {
                start: self.count,
                len: 1,
            }),
        }
        self.count += 1;
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of units (containers and external files) holding samples.
    pub fn unit_count(&self) -> usize {
        self.units.len()
    }

    fn unit_len(&self, slot: usize) -> u64 {
        self.runs[slot].iter().map(|r| r.len).sum()
    }
}

/// What decides an epoch's order and which slice of it a reader takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrderSettings {
    /// The run's seed: the same seed and epoch give the same order.
    pub seed: u64,
    /// The epoch (a new shuffle each).
    pub epoch: u64,
    /// Units (containers) per shuffling window: more mixes better, fewer keeps a reader's
    /// working set smaller.
    pub window: u64,
    /// The slice to take, from 0.
    pub part: u64,
    /// Slices the order is cut into (ranks, or ranks times workers).
    pub parts: u64,
    /// Cut every slice to `len / parts` samples (dropping the tail of the epoch) instead of
    /// padding every slice to the rounded-up length by wrapping round to the start.
    pub drop_last: bool,
}

impl Default for OrderSettings {
    fn default() -> Self {
        OrderSettings {
            seed: 0,
            epoch: 0,
            window: 8,
            part: 0,
            parts: 1,
            drop_last: false,
        }
    }
}

impl OrderSettings {
    fn check(&self) -> Result<()> {
        let problem = if self.window == 0 {
            "the shuffling window must hold at least one container"
        } else if self.parts == 0 {
            "an order must be cut into at least one part"
        } else if self.part >= self.parts {
            "the part must be below the number of parts (parts count from 0)"
        } else {
            return Ok(());
        };
        Err(Error::InvalidSetting {
            setting: Setting::Order,
            reason: format!(
                "{problem}: window {}, part {} of {}",
                self.window, self.part, self.parts
            ),
        })
    }
}

/// One epoch's layout: units in shuffled order, and where each sits in the sequence.
#[derive(Clone, Debug)]
pub struct EpochOrder<'a> {
    samples: &'a Samples,
    settings: OrderSettings,
    /// Unit slots in the epoch's order.
    units: Vec<usize>,
    /// Position in the sequence where the i-th unit of `units` starts (and, last, the
    /// sequence's length).
    starts: Vec<u64>,
    /// Samples in every slice.
    part_len: u64,
}

impl<'a> EpochOrder<'a> {
    /// Lays the epoch out.
    pub fn new(samples: &'a Samples, settings: OrderSettings) -> Result<EpochOrder<'a>> {
        settings.check()?;
        let mut units: Vec<usize> = (0..samples.units.len()).collect();
        shuffle(
            &mut units,
            &mut Generator::new(&[settings.seed, settings.epoch, 0]),
        );
        let mut starts = Vec::with_capacity(units.len() + 1);
        let mut at = 0;
        for &slot in &units {
            starts.push(at);
            at += samples.unit_len(slot);
        }
        starts.push(at);
        let part_len = if settings.drop_last {
            samples.count / settings.parts
        } else {
            samples.count.div_ceil(settings.parts)
        };
        Ok(EpochOrder {
            samples,
            settings,
            units,
            starts,
            part_len,
        })
    }

    /// Samples in each slice.
    pub fn part_len(&self) -> u64 {
        self.part_len
    }

    /// The positions of the epoch's sequence that `part` reads (past the sequence's length
    /// they wrap round to its start).
    fn part_range(&self, part: u64) -> Range<u64> {
        part * self.part_len..(part + 1) * self.part_len
    }

    /// The sample numbers the settings' part reads, in order, from its `start`-th on.
    pub fn part(&self, start: u64) -> Vec<u64> {
        let range = self.part_range(self.settings.part);
        let mut out = Vec::with_capacity(range.end.saturating_sub(range.start + start) as usize);
        let mut skip = start;
        for (block, positions) in self.blocks(range) {
            let len = positions.end - positions.start;
            if skip >= len {
                skip -= len;
                continue;
            }
            let mut numbers = self.numbers_at(positions);
            shuffle(
                &mut numbers,
                &mut Generator::new(&[
                    self.settings.seed,
                    self.settings.epoch,
                    1,
                    block,
                    self.settings.part,
                ]),
            );
            out.extend_from_slice(&numbers[skip as usize..]);
            skip = 0;
        }
        out
    }

    /// The windows the settings' part reads, in order: how many of its samples each holds
    /// and the containers they come from (what a streaming reader fetches ahead).
    pub fn windows(&self) -> Vec<Window> {
        self.blocks(self.part_range(self.settings.part))
            .into_iter()
            .map(|(_, positions)| Window {
                samples: positions.end - positions.start,
                containers: self.units_at(positions),
            })
            .collect()
    }

    /// The containers holding the samples at positions of the sequence (within one lap).
    fn units_at(&self, positions: Range<u64>) -> Vec<usize> {
        let (_, to, first) = self.within_lap(positions);
        (first..self.units.len())
            .take_while(|&u| self.starts[u] < to)
            .filter_map(|u| match self.samples.units[self.units[u]] {
                Unit::Container(c) => Some(c),
                Unit::External(_) => None,
            })
            .collect()
    }

    /// The units a part should keep near (for a node-sharded preload): those whose first
    /// sample of the epoch falls in its slice, so every unit the epoch reads belongs to
    /// exactly one part, and a part reads from a neighbour's share only the unit its slice
    /// starts in (and, when slices are padded, the few samples it repeats from the start).
    pub fn units_of_part(&self, part: u64) -> Vec<Unit> {
        let range = self.part_range(part);
        let count = self.samples.count;
        self.units
            .iter()
            .zip(&self.starts)
            .filter(|&(_, &start)| start < count && range.contains(&start))
            .map(|(&slot, _)| self.samples.units[slot])
            .collect()
    }

    /// The stretches of `range` that lie in one window, each with the window's number
    /// (windows past the sequence's end, reached by wrapping round, get numbers after the
    /// last real one).
    fn blocks(&self, range: Range<u64>) -> Vec<(u64, Range<u64>)> {
        let count = self.samples.count;
        let windows = (self.units.len() as u64).div_ceil(self.settings.window);
        let mut out = Vec::new();
        let mut at = range.start;
        while at < range.end && count > 0 {
            let lap = at / count;
            let within = at % count;
            let unit = self.starts.partition_point(|&s| s <= within) - 1;
            let window = unit as u64 / self.settings.window;
            let window_end_unit =
                ((window + 1) * self.settings.window).min(self.units.len() as u64);
            let window_end = lap * count + self.starts[window_end_unit as usize];
            let end = window_end.min(range.end);
            out.push((lap * windows + window, at..end));
            at = end;
        }
        out
    }

    /// Positions within one lap of the sequence brought back to the first lap, and the index
    /// (in `units`) of the unit the first of them falls in.
    fn within_lap(&self, positions: Range<u64>) -> (u64, u64, usize) {
        let offset = positions.start / self.samples.count * self.samples.count;
        let (from, to) = (positions.start - offset, positions.end - offset);
        (from, to, self.starts.partition_point(|&s| s <= from) - 1)
    }

    /// The sample numbers at positions of the sequence (all within one lap of it).
    fn numbers_at(&self, positions: Range<u64>) -> Vec<u64> {
        let (from, to, mut unit) = self.within_lap(positions);
        let mut out = Vec::with_capacity((to - from) as usize);
        while unit < self.units.len() && self.starts[unit] < to {
            let mut at = self.starts[unit];
            for run in &self.samples.runs[self.units[unit]] {
                let (lo, hi) = (at.max(from), (at + run.len).min(to));
                if lo < hi {
                    out.extend((lo - at..hi - at).map(|k| run.start + k));
                }
                at += run.len;
            }
            unit += 1;
        }
        out
    }
}

/// A stretch of a part's order whose samples come from one window of containers.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Window {
    /// Samples of the part in this window.
    pub samples: u64,
    /// Catalog positions of the containers they are stored in (external files not counted).
    pub containers: Vec<usize>,
}

/// SplitMix64: small, fast, and fixed here so that orders do not change with a dependency.
struct Generator(u64);

impl Generator {
    /// A generator keyed by a list of numbers (each mixed in, so nearby keys diverge).
    fn new(key: &[u64]) -> Generator {
        let mut g = Generator(0x5348_4541_465f_4f52); // "SHEAF_OR"
        for &k in key {
            g.0 ^= k;
            g.0 = g.next();
        }
        g
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (multiply-shift: the bias is below 2^-32 for any n under 2^32).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// Fisher-Yates.
fn shuffle<T>(items: &mut [T], generator: &mut Generator) {
    for i in (1..items.len()).rev() {
        let j = generator.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn containers(sizes: &[u64]) -> Samples {
        Samples::from_units(
            sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (Unit::Container(i), n)),
        )
    }

    fn order(samples: &Samples, settings: OrderSettings) -> Vec<u64> {
        EpochOrder::new(samples, settings).unwrap().part(0)
    }

    #[test]
    fn one_part_is_a_permutation_that_keeps_windows_together() {
        let samples = containers(&[5, 3, 7, 1, 4, 6]);
        let settings = OrderSettings {
            window: 2,
            ..Default::default()
        };
        let got = order(&samples, settings);
        let all: BTreeSet<u64> = got.iter().copied().collect();
        assert_eq!(got.len(), 26);
        assert_eq!(all, (0..26).collect());
        // Each window's samples come out together: the containers of the first 2 units seen
        // are all read before any third container.
        let container_of = |n: u64| {
            let bounds = [5, 8, 15, 16, 20, 26];
            bounds.iter().position(|&b| n < b).unwrap()
        };
        let mut seen = Vec::new();
        for &n in &got {
            let c = container_of(n);
            if !seen.contains(&c) {
                seen.push(c);
            }
        }
        let first_window: BTreeSet<usize> = seen[..2].iter().copied().collect();
        let first_samples = samples_of(&samples, &first_window);
        let head: BTreeSet<u64> = got[..first_samples.len()].iter().copied().collect();
        assert_eq!(head, first_samples);
    }

    fn samples_of(samples: &Samples, units: &BTreeSet<usize>) -> BTreeSet<u64> {
        units
            .iter()
            .flat_map(|&u| {
                samples.runs[u]
                    .iter()
                    .flat_map(|r| r.start..r.start + r.len)
            })
            .collect()
    }

    #[test]
    fn windows_name_the_containers_each_stretch_of_a_part_reads() {
        let samples = containers(&[5, 3, 7, 1, 4, 6]);
        for part in 0..3 {
            let settings = OrderSettings {
                window: 2,
                part,
                parts: 3,
                ..Default::default()
            };
            let epoch = EpochOrder::new(&samples, settings).unwrap();
            let order = epoch.part(0);
            let windows = epoch.windows();
            assert_eq!(
                windows.iter().map(|w| w.samples).sum::<u64>(),
                order.len() as u64
            );
            let mut at = 0;
            for window in &windows {
                let read: BTreeSet<usize> = order[at..at + window.samples as usize]
                    .iter()
                    .map(|&n| [5, 8, 15, 16, 20, 26].iter().position(|&b| n < b).unwrap())
                    .collect();
                let named: BTreeSet<usize> = window.containers.iter().copied().collect();
                assert_eq!(read, named, "part {part}");
                assert!(named.len() <= 2);
                at += window.samples as usize;
            }
        }
    }

    #[test]
    fn settings_that_cannot_cut_an_order_are_refused() {
        let samples = containers(&[3]);
        for bad in [
            OrderSettings {
                window: 0,
                ..Default::default()
            },
            OrderSettings {
                parts: 0,
                ..Default::default()
            },
            OrderSettings {
                part: 2,
                parts: 2,
                ..Default::default()
            },
        ] {
            let err = EpochOrder::new(&samples, bad).unwrap_err();
            assert!(matches!(err, Error::InvalidSetting { .. }), "{err}");
        }
    }

    #[test]
    fn padding_wraps_round_and_drop_last_shortens() {
        let samples = containers(&[4, 3]);
        let padded: Vec<Vec<u64>> = (0..3)
            .map(|part| {
                order(
                    &samples,
                    OrderSettings {
                        part,
                        parts: 3,
                        ..Default::default()
                    },
                )
            })
            .collect();
        assert!(padded.iter().all(|p| p.len() == 3));
        let union: BTreeSet<u64> = padded.iter().flatten().copied().collect();
        assert_eq!(union, (0..7).collect());
        let dropped = order(
            &samples,
            OrderSettings {
                part: 2,
                parts: 3,
                drop_last: true,
                ..Default::default()
            },
        );
        assert_eq!(dropped.len(), 2);
    }

    #[test]
    fn an_empty_set_gives_empty_parts() {
        let samples = Samples::default();
        let got = EpochOrder::new(
            &samples,
            OrderSettings {
                part: 1,
                parts: 4,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(got.part(0).is_empty());
        assert!(got.units_of_part(1).is_empty());
    }

    #[test]
    fn interleaved_generations_keep_each_container_one_unit() {
        // Samples 0,2,4 in container 0 and 1,3 in container 1 (a newer generation between).
        let samples = Samples::from_units([
            (Unit::Container(0), 1),
            (Unit::Container(1), 1),
            (Unit::Container(0), 1),
            (Unit::Container(1), 1),
            (Unit::Container(0), 1),
        ]);
        assert_eq!(samples.unit_count(), 2);
        let got = order(
            &samples,
            OrderSettings {
                window: 1,
                ..Default::default()
            },
        );
        let firsts: BTreeSet<u64> = got[..got.len() / 2].iter().map(|n| n % 2).collect();
        assert_eq!(
            firsts.len(),
            1,
            "a window of one container is read whole: {got:?}"
        );
    }

    #[test]
    fn the_generator_is_fixed() {
        // Orders must not change between releases: resuming a run mid-epoch depends on it.
        let mut g = Generator::new(&[1, 2, 3]);
        let first: Vec<u64> = (0..3).map(|_| g.below(1000)).collect();
        assert_eq!(first, FIXED_DRAWS);
    }

    const FIXED_DRAWS: [u64; 3] = [252, 647, 194];

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Units of random sizes, sometimes interleaved as newer generations leave them.
        fn random_samples() -> impl Strategy<Value = Samples> {
            prop::collection::vec((0usize..12, 1u64..9), 0..40).prop_map(|runs| {
                Samples::from_units(runs.into_iter().map(|(c, n)| (Unit::Container(c), n)))
            })
        }

        fn parts_of(samples: &Samples, settings: OrderSettings) -> Vec<Vec<u64>> {
            (0..settings.parts)
                .map(|part| {
                    EpochOrder::new(samples, OrderSettings { part, ..settings })
                        .unwrap()
                        .part(0)
                })
                .collect()
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

            #[test]
            fn every_sample_is_read_once_per_epoch_across_parts(
                samples in random_samples(),
                seed in any::<u64>(),
                epoch in 0u64..1000,
                window in 1u64..5,
                parts in 1u64..7,
                drop_last in any::<bool>(),
            ) {
                let settings = OrderSettings { seed, epoch, window, part: 0, parts, drop_last };
                let got = parts_of(&samples, settings);
                let n = samples.len();
                let len = if drop_last { n / parts } else { n.div_ceil(parts) };
                prop_assert!(got.iter().all(|p| p.len() as u64 == len));
                let mut times: BTreeMap<u64, u64> = BTreeMap::new();
                for &s in got.iter().flatten() {
                    prop_assert!(s < n);
                    *times.entry(s).or_default() += 1;
                }
                if drop_last {
                    // Nothing twice; only the epoch's tail (under `parts` samples) is left out.
                    prop_assert!(times.values().all(|&t| t == 1));
                    prop_assert!(n - (times.len() as u64) < parts);
                } else {
                    // Everything at least once; the padding repeats fewer than `parts` samples.
                    prop_assert_eq!(times.len() as u64, n);
                    let repeats: u64 = times.values().map(|t| t - 1).sum();
                    prop_assert_eq!(repeats, len * parts - n);
                    prop_assert!(repeats < parts.max(1));
                }
            }

            #[test]
            fn the_same_seed_and_epoch_give_the_same_order_and_resuming_gives_the_rest(
                samples in random_samples(),
                seed in any::<u64>(),
                epoch in 0u64..1000,
                window in 1u64..5,
                parts in 1u64..5,
                start_fraction in 0.0f64..1.2,
            ) {
                let settings = OrderSettings { seed, epoch, window, part: parts - 1, parts, drop_last: false };
                let whole = EpochOrder::new(&samples, settings).unwrap().part(0);
                let again = EpochOrder::new(&samples, settings).unwrap().part(0);
                prop_assert_eq!(&whole, &again);
                let start = (whole.len() as f64 * start_fraction) as u64;
                let resumed = EpochOrder::new(&samples, settings).unwrap().part(start);
                let rest = &whole[(start as usize).min(whole.len())..];
                prop_assert_eq!(resumed.as_slice(), rest);
            }

            #[test]
            fn every_unit_belongs_to_one_part_and_a_part_reads_few_others(
                samples in random_samples(),
                seed in any::<u64>(),
                window in 1u64..5,
                parts in 1u64..7,
            ) {
                let settings = OrderSettings { seed, epoch: 3, window, part: 0, parts, drop_last: true };
                let epoch = EpochOrder::new(&samples, settings).unwrap();
                let mut owner: BTreeMap<usize, u64> = BTreeMap::new();
                for part in 0..parts {
                    for unit in epoch.units_of_part(part) {
                        let Unit::Container(c) = unit else { unreachable!() };
                        prop_assert!(owner.insert(c, part).is_none(), "unit {} in two parts", c);
                    }
                }
                let read: BTreeSet<usize> = parts_of(&samples, settings)
                    .iter()
                    .flatten()
                    .map(|&s| container_holding(&samples, s))
                    .collect();
                let owned: BTreeSet<usize> = owner.keys().copied().collect();
                prop_assert!(read.is_subset(&owned));
                for part in 0..parts {
                    let settings = OrderSettings { part, ..settings };
                    let foreign: BTreeSet<usize> = EpochOrder::new(&samples, settings)
                        .unwrap()
                        .part(0)
                        .iter()
                        .map(|&s| container_holding(&samples, s))
                        .filter(|c| owner[c] != part)
                        .collect();
                    prop_assert!(foreign.len() <= 1, "part {} reads {:?} of others", part, foreign);
                }
            }
        }

        fn container_holding(samples: &Samples, sample: u64) -> usize {
            let slot = samples
                .runs
                .iter()
                .position(|runs| {
                    runs.iter()
                        .any(|r| (r.start..r.start + r.len).contains(&sample))
                })
                .unwrap();
            match samples.units[slot] {
                Unit::Container(c) => c,
                Unit::External(_) => unreachable!(),
            }
        }
    }
}
