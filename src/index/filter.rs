//! Path filters (format version 3): a Bloom filter over one container's paths, kept in its
//! catalog row, so a lookup through overlapping generations opens about one index however many
//! generations there are.
//!
//! See formats/SPEC.md, "Path filters".

use crate::checksum::xxh3_64;

/// Bits per path: about a 1 % false-positive rate with [`PROBES`] probes.
const BITS_PER_PATH: usize = 10;

/// Bits set (and tested) per path.
pub const PROBES: u8 = 7;

/// The smallest bit set, so a filter of a few paths is not all ones.
const MIN_BITS: usize = 64;

/// A Bloom filter as stored: one byte of probe count `k` (1 to 16), then the bit set, bit `b` at
/// bit `b % 8` of byte `b / 8`. An empty filter (no bytes) says nothing: every path may be there.
#[derive(Clone, Copy, Debug)]
pub struct PathFilter<'a> {
    bytes: &'a [u8],
}

impl<'a> PathFilter<'a> {
    /// Wraps stored bytes, or `None` when they are not a well-formed filter.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        match bytes.split_first() {
            None => Some(Self { bytes }),
            Some((&k, bits)) if (1..=16).contains(&k) && !bits.is_empty() => Some(Self { bytes }),
            Some(_) => None,
        }
    }

    /// False only when `path` is certainly not among the filter's paths.
    pub fn may_hold(&self, path: &[u8]) -> bool {
        let Some((&k, bits)) = self.bytes.split_first() else {
            return true;
        };
        probes(path, k, bits.len() * 8).all(|b| bits[b / 8] & (1 << (b % 8)) != 0)
    }
}

/// The filter of `paths`, as stored.
pub fn build<'p>(paths: impl ExactSizeIterator<Item = &'p [u8]>) -> Vec<u8> {
    let bits = (paths.len() * BITS_PER_PATH)
        .max(MIN_BITS)
        .next_multiple_of(8);
    let mut out = vec![0u8; 1 + bits / 8];
    out[0] = PROBES;
    for path in paths {
        for b in probes(path, PROBES, bits) {
            out[1 + b / 8] |= 1 << (b % 8);
        }
    }
    out
}

/// The `k` bit positions of `path` among `bits`: double hashing of its xxh3-64, `h1 + i * h2`
/// modulo `bits` for `i` in `0..k`, where `h1` is the low and `h2` the high 32 bits (made odd).
fn probes(path: &[u8], k: u8, bits: usize) -> impl Iterator<Item = usize> {
    let hash = xxh3_64(path);
    let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
    (0..u64::from(k)).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits as u64) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(n: usize, tag: &str) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{tag}/{i:06}.jpg").into_bytes())
            .collect()
    }

    #[test]
    fn every_path_put_in_is_found() {
        let held = paths(5_000, "in");
        let filter = build(held.iter().map(Vec::as_slice));
        let filter = PathFilter::new(&filter).unwrap();
        assert!(held.iter().all(|p| filter.may_hold(p)));
    }

    #[test]
    fn paths_left_out_are_mostly_refused() {
        let held = paths(5_000, "in");
        let filter = build(held.iter().map(Vec::as_slice));
        let filter = PathFilter::new(&filter).unwrap();
        let false_positives = paths(10_000, "out")
            .iter()
            .filter(|p| filter.may_hold(p))
            .count();
        assert!(false_positives < 300, "{false_positives} of 10,000");
    }

    #[test]
    fn an_empty_filter_says_maybe_and_a_malformed_one_is_refused() {
        assert!(PathFilter::new(&[]).unwrap().may_hold(b"anything"));
        assert!(PathFilter::new(&[0, 0xff]).is_none());
        assert!(PathFilter::new(&[17, 0xff]).is_none());
        assert!(PathFilter::new(&[7]).is_none());
    }

    #[test]
    fn the_stored_bits_are_the_spec_s() {
        // One path, 64 bits: the positions are h1 + i * h2 (mod 64) of its xxh3-64.
        let filter = build([b"a".as_slice()].into_iter());
        assert_eq!(filter.len(), 1 + 8);
        let hash = xxh3_64(b"a");
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        let mut expected = [0u8; 8];
        for i in 0..7u64 {
            let b = (h1.wrapping_add(i.wrapping_mul(h2)) % 64) as usize;
            expected[b / 8] |= 1 << (b % 8);
        }
        assert_eq!(&filter[1..], &expected);
    }
}
