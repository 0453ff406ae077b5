//! The hash lookup columns of a container index (format version 2): a path's row is found in a
//! few cache misses, where a binary search over a million paths takes about twenty probes.
//!
//! See formats/SPEC.md, "Hash lookup".

use super::prefetch;
use crate::checksum::xxh3_64;
use arrow_array::{Array, BinaryArray, UInt32Array, UInt64Array};

/// The column of `(hash << 32) | row` values, sorted.
pub const ROWS_COLUMN: &str = "hash_rows";
/// The column of bucket starts in [`ROWS_COLUMN`].
pub const BUCKETS_COLUMN: &str = "hash_buckets";

/// The largest index the table can describe: rows are stored in 32 bits.
pub const MAX_ROWS: usize = u32::MAX as usize;

/// The part of a path's hash the table keeps: the high 32 bits of its xxh3-64.
fn path_hash(path: &[u8]) -> u64 {
    xxh3_64(path) >> 32
}

/// The bucket of a 32-bit hash among `n` buckets: the hash scaled to `[0, n)`, so buckets stay
/// in hash order.
fn bucket(hash: u64, n: usize) -> usize {
    ((hash * n as u64) >> 32) as usize
}

/// Both columns for an index whose paths are given in row order (at most [`MAX_ROWS`]).
pub fn build<'a>(paths: impl ExactSizeIterator<Item = &'a [u8]>) -> (Vec<u64>, Vec<u32>) {
    build_from_hashes(paths.map(path_hash).collect())
}

/// Both columns, given each row's 32-bit path hash in row order.
fn build_from_hashes(hashes: Vec<u64>) -> (Vec<u64>, Vec<u32>) {
    let n = hashes.len();
    assert!(n <= MAX_ROWS, "a hash table holds at most 2^32 - 1 rows");
    let mut rows: Vec<u64> = hashes
        .into_iter()
        .enumerate()
        .map(|(row, hash)| (hash << 32) | row as u64)
        .collect();
    rows.sort_unstable();
    let mut starts = Vec::with_capacity(n);
    let mut at = 0;
    for b in 0..n {
        while at < n && bucket(rows[at] >> 32, n) < b {
            at += 1;
        }
        starts.push(at as u32);
    }
    (rows, starts)
}

/// A path with its xxh3-64, computed once: a read prefetches the path's bucket, then looks it
/// up, and a lookup through several generations asks each one's path filter; all of them
/// need the hash.
#[derive(Debug, Clone, Copy)]
pub struct PathKey<'a> {
    path: &'a [u8],
    full: u64,
}

impl<'a> PathKey<'a> {
    /// The key of `path`.
    pub fn new(path: &'a [u8]) -> Self {
        PathKey {
            path,
            full: xxh3_64(path),
        }
    }

    /// The path the key was made from.
    pub fn path(&self) -> &'a [u8] {
        self.path
    }

    /// The path's whole xxh3-64 (what path filters use).
    pub fn full_hash(&self) -> u64 {
        self.full
    }

    /// The part of the hash the table keeps.
    fn hash(&self) -> u64 {
        self.full >> 32
    }
}

/// A decoded table, its columns viewed in place in the index block.
#[derive(Debug, Clone)]
pub struct HashLookup {
    rows: UInt64Array,
    buckets: UInt32Array,
}

impl HashLookup {
    /// The table held by the two columns (of equal length: one record batch).
    pub fn new(rows: UInt64Array, buckets: UInt32Array) -> Self {
        HashLookup { rows, buckets }
    }

    /// Starts loading the bucket `path` falls in (see [`super::EntryIndex::prefetch_find`]).
    pub fn prefetch(&self, key: &PathKey) {
        let n = self.buckets.len();
        if n > 0 {
            prefetch(self.buckets.values(), bucket(key.hash(), n));
        }
    }

    /// The row of `paths` (the index's path column) holding exactly the key's path, if the table lists
    /// it. Every candidate is confirmed against the path column and every value is bounds-checked,
    /// so a damaged table can miss a row, never name a wrong one or panic.
    pub fn find(&self, key: &PathKey, paths: &BinaryArray) -> Option<usize> {
        let n = self.rows.len();
        if n == 0 || self.buckets.len() != n || paths.len() != n {
            return None;
        }
        let (path, hash) = (key.path, key.hash());
        let starts = self.buckets.values();
        let b = bucket(hash, n);
        let start = starts[b] as usize;
        let end = starts.get(b + 1).map_or(n, |&end| end as usize);
        let span = self.rows.values().get(start..end)?;
        span.iter()
            .filter(|&&value| value >> 32 == hash)
            .map(|&value| (value & u64::from(u32::MAX)) as usize)
            .find(|&row| row < n && super::entry::binary_value(paths, row) == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_of(paths: &[Vec<u8>]) -> (HashLookup, BinaryArray) {
        let (rows, buckets) = build(paths.iter().map(|p| p.as_slice()));
        let column = BinaryArray::from_iter_values(paths.iter());
        let table = HashLookup::new(UInt64Array::from(rows), UInt32Array::from(buckets));
        (table, column)
    }

    fn numbered(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("dir/{i:07}.jpg").into_bytes())
            .collect()
    }

    #[test]
    fn every_path_is_found_at_its_row_and_others_are_not() {
        for n in [1, 2, 3, 10, 1000, 65_537] {
            let paths = numbered(n);
            let (table, column) = table_of(&paths);
            for (row, path) in paths.iter().enumerate() {
                assert_eq!(
                    table.find(&PathKey::new(path), &column),
                    Some(row),
                    "n {n} row {row}"
                );
            }
            for absent in [&b"dir/x.jpg"[..], b"", b"dir/0000000.jpgx"] {
                assert_eq!(table.find(&PathKey::new(absent), &column), None, "n {n}");
            }
        }
    }

    #[test]
    fn the_worked_example_of_the_spec() {
        let (rows, starts) = build_from_hashes(vec![0xC000_0000, 0x1000_0000, 0x5000_0000]);
        assert_eq!(
            rows,
            [
                0x1000_0000_0000_0001,
                0x5000_0000_0000_0002,
                0xC000_0000_0000_0000
            ]
        );
        assert_eq!(starts, [0, 2, 2]);
    }

    #[test]
    fn bucket_starts_are_the_counts_of_lower_buckets() {
        let n = 5000;
        let paths = numbered(n);
        let (rows, starts) = build(paths.iter().map(|p| p.as_slice()));
        assert!(rows.windows(2).all(|w| w[0] < w[1]));
        let mut lows: Vec<_> = rows.iter().map(|v| v & 0xffff_ffff).collect();
        lows.sort_unstable();
        assert_eq!(lows, (0..n as u64).collect::<Vec<_>>(), "a permutation");
        for (b, &start) in starts.iter().enumerate() {
            let below = rows.iter().filter(|&&v| bucket(v >> 32, n) < b).count();
            assert_eq!(start as usize, below, "bucket {b}");
        }
    }

    #[test]
    fn a_damaged_table_misses_but_never_names_a_wrong_row_or_panics() {
        let paths = numbered(300);
        let (rows, starts) = build(paths.iter().map(|p| p.as_slice()));
        let column = BinaryArray::from_iter_values(paths.iter());
        let damages: Vec<(Vec<u64>, Vec<u32>)> = vec![
            // every row points at row 0
            (
                rows.iter().map(|v| v & !0xffff_ffff).collect(),
                starts.clone(),
            ),
            // rows beyond the index
            (
                rows.iter().map(|v| v | 0xffff_ffff).collect(),
                starts.clone(),
            ),
            // bucket starts past the end, and decreasing
            (rows.clone(), vec![u32::MAX; 300]),
            (rows.clone(), (0..300).rev().collect()),
            // a table shorter than the index
            (rows[..10].to_vec(), starts[..10].to_vec()),
        ];
        for (rows, starts) in damages {
            let table = HashLookup::new(UInt64Array::from(rows), UInt32Array::from(starts));
            for path in &paths {
                if let Some(row) = table.find(&PathKey::new(path), &column) {
                    assert_eq!(column.value(row), path.as_slice());
                }
            }
        }
    }
}
