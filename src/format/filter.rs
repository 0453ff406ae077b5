//! Path filters (format version 3): a split-block Bloom filter over one container's paths,
//! kept in its catalog row, so a lookup through overlapping generations opens about one index
//! however many generations there are. Every probe of one path falls in one 32-byte block, so
//! asking a filter costs one cache miss, not one per probe (the design Apache Parquet uses).
//!
//! See formats/SPEC.md, "Path filters".

use crate::checksum::xxh3_64;

/// The one layout this version writes and reads (the filter's first byte).
const SPLIT_BLOCK: u8 = 1;

/// Bytes in a block: eight 32-bit words, one bit set in each per path.
const BLOCK: usize = 32;

/// Bits per path: about a 0.2 % false-positive rate (a false positive costs a lookup one more
/// index search, which at 10 bits and 16 generations was most of what they added).
const BITS_PER_PATH: usize = 16;

/// Multipliers that pick each word's bit from the path's hash (odd, and far apart).
const SALTS: [u32; 8] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// A filter as stored: the layout byte (1), then blocks of eight little-endian 32-bit words.
/// An empty filter (no bytes) says nothing: every path may be there.
#[derive(Clone, Copy, Debug)]
pub struct PathFilter<'a> {
    blocks: &'a [u8],
}

impl<'a> PathFilter<'a> {
    /// Wraps stored bytes, or `None` when they are not a well-formed filter.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        match bytes.split_first() {
            None => Some(Self { blocks: &[] }),
            Some((&SPLIT_BLOCK, blocks)) if !blocks.is_empty() && blocks.len() % BLOCK == 0 => {
                Some(Self { blocks })
            }
            Some(_) => None,
        }
    }

    /// False only when `path` is certainly not among the filter's paths.
    pub fn may_hold(&self, path: &[u8]) -> bool {
        self.may_hold_hashed(xxh3_64(path))
    }

    /// [`PathFilter::may_hold`] for a path whose xxh3-64 is `hash`.
    pub fn may_hold_hashed(&self, hash: u64) -> bool {
        if self.blocks.is_empty() {
            return true;
        }
        let (block, key) = place(hash, self.blocks.len() / BLOCK);
        let words = &self.blocks[block * BLOCK..][..BLOCK];
        SALTS.iter().enumerate().all(|(i, &salt)| {
            let word = u32::from_le_bytes(words[4 * i..4 * i + 4].try_into().expect("4 bytes"));
            word & bit(key, salt) != 0
        })
    }
}

impl PathFilter<'_> {
    /// Starts loading the block the path with xxh3-64 `hash` falls in, so that asking several
    /// filters about one path waits for their blocks together rather than one after another.
    pub fn prefetch(&self, hash: u64) {
        if !self.blocks.is_empty() {
            let (block, _) = place(hash, self.blocks.len() / BLOCK);
            super::prefetch(self.blocks, block * BLOCK);
        }
    }
}

/// The filter of `paths`, as stored.
pub fn build<'p>(paths: impl ExactSizeIterator<Item = &'p [u8]>) -> Vec<u8> {
    let blocks = (paths.len() * BITS_PER_PATH).div_ceil(BLOCK * 8).max(1);
    let mut out = vec![0u8; 1 + blocks * BLOCK];
    out[0] = SPLIT_BLOCK;
    for path in paths {
        let (block, key) = place(xxh3_64(path), blocks);
        let words = &mut out[1 + block * BLOCK..][..BLOCK];
        for (i, &salt) in SALTS.iter().enumerate() {
            let word = &mut words[4 * i..4 * i + 4];
            let set = u32::from_le_bytes((&*word).try_into().expect("4 bytes")) | bit(key, salt);
            word.copy_from_slice(&set.to_le_bytes());
        }
    }
    out
}

/// The block of the path with xxh3-64 `hash` among `blocks` (the hash's high 32 bits scaled to
/// the count) and the key its bits come from (the low 32 bits).
fn place(hash: u64, blocks: usize) -> (usize, u32) {
    let block = ((hash >> 32) * blocks as u64) >> 32;
    (block as usize, hash as u32)
}

/// The bit `key` sets in the word of `salt`: the top five bits of their product.
fn bit(key: u32, salt: u32) -> u32 {
    1 << (key.wrapping_mul(salt) >> 27)
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
        assert!(PathFilter::new(&[SPLIT_BLOCK]).is_none());
        assert!(PathFilter::new(&[SPLIT_BLOCK, 0, 0, 0]).is_none());
        assert!(PathFilter::new(&[2; 33]).is_none());
    }

    #[test]
    fn one_path_sets_one_bit_in_each_word_of_its_block() {
        let filter = build([b"a".as_slice()].into_iter());
        assert_eq!(filter.len(), 1 + BLOCK);
        for word in filter[1..].chunks(4) {
            let word = u32::from_le_bytes(word.try_into().unwrap());
            assert_eq!(word.count_ones(), 1);
        }
    }
}
