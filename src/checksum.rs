//! The format's xxh3-64 (entry and index checksums, footers, the path hash table), computed
//! with the widest SIMD the running CPU has, and containers' content ids (xxh3-128): the one
//! place sheaf computes either.
//!
//! Every byte sheaf returns is checked against its entry's xxh3-64, so on large files the hash
//! is a pass over every byte read. A build for generic x86-64 can only assume SSE2; this
//! module picks AVX2 at run time where the CPU has it (about 1.5x the hash's speed), so one
//! binary is fast on new machines and still runs on old ones. The digests are the standard
//! xxh3-64 (seed 0), the same values the index has always recorded.

use std::hash::Hasher;

/// The xxh3-64 of `bytes`, as an entry's index row records it.
#[inline]
pub fn xxh3_64(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(bytes)
}

/// xxh3-64 of bytes that arrive in pieces: equal to [`xxh3_64`] of them all at once.
#[derive(Default)]
pub struct Xxh3(twox_hash::XxHash3_64);

impl Xxh3 {
    pub fn new() -> Xxh3 {
        Xxh3::default()
    }

    /// Adds the next piece.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// The hash of every piece added so far.
    pub fn digest(&self) -> u64 {
        self.0.finish()
    }
}

/// xxh3-64 of a file whole and of each of its consecutive `block`-byte blocks (the last one
/// may be shorter), from pieces of any size: what the index records for an external file, so
/// that a read of any part of it can be checked without reading the rest.
pub struct BlockHasher {
    block: u64,
    whole: Xxh3,
    current: Xxh3,
    in_current: u64,
    sums: Vec<u64>,
    len: u64,
}

impl BlockHasher {
    pub fn new(block: u64) -> BlockHasher {
        assert!(block > 0, "blocks hold at least one byte");
        BlockHasher {
            block,
            whole: Xxh3::new(),
            current: Xxh3::new(),
            in_current: 0,
            sums: Vec::new(),
            len: 0,
        }
    }

    /// Adds the next piece.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.whole.update(bytes);
        self.len += bytes.len() as u64;
        while !bytes.is_empty() {
            let room = (self.block - self.in_current).min(bytes.len() as u64) as usize;
            self.current.update(&bytes[..room]);
            self.in_current += room as u64;
            bytes = &bytes[room..];
            if self.in_current == self.block {
                self.sums.push(self.current.digest());
                (self.current, self.in_current) = (Xxh3::new(), 0);
            }
        }
    }

    /// The length seen, the hash of it all, and the hash of each block.
    pub fn finish(mut self) -> (u64, u64, Vec<u64>) {
        if self.in_current > 0 {
            self.sums.push(self.current.digest());
        }
        (self.len, self.whole.digest(), self.sums)
    }
}

/// A container's content id: the xxh3-128 (seed 0) of the whole file. Caches name copies by
/// it and catalogs record it; the one place it is computed.
pub fn content_id(bytes: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(bytes)
}

/// [`content_id`] of bytes that arrive in pieces.
#[derive(Default, Clone)]
pub struct ContentId(xxhash_rust::xxh3::Xxh3);

impl ContentId {
    pub fn new() -> ContentId {
        ContentId::default()
    }

    /// Adds the next piece.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The content id of every piece added so far.
    pub fn digest(&self) -> u128 {
        self.0.digest128()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes that are not a repeating pattern short enough to hide a bug.
    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn digests_are_the_ones_the_index_has_always_recorded() {
        // Every length through the short and medium forms and the first blocks of the long
        // one, then sizes around stripes and blocks of the long form.
        let lengths = (0..=2048).chain([4095, 4096, 65_536, 100_003, 1 << 20, (1 << 20) + 17]);
        let bytes = sample((1 << 20) + 17);
        for len in lengths {
            let part = &bytes[..len];
            assert_eq!(xxh3_64(part), xxhash_rust::xxh3::xxh3_64(part), "len {len}");
        }
    }

    #[test]
    fn pieces_hash_as_the_whole() {
        let bytes = sample(300_001);
        for piece in [1usize, 7, 64, 240, 1000, 65_536, 300_001] {
            let mut hasher = Xxh3::new();
            for chunk in bytes.chunks(piece) {
                hasher.update(chunk);
            }
            assert_eq!(hasher.digest(), xxh3_64(&bytes), "pieces of {piece}");
        }
        assert_eq!(Xxh3::new().digest(), xxh3_64(&[]));
    }

    #[test]
    fn blocks_hash_as_their_slices_whatever_the_pieces() {
        let bytes = sample(10 * 1000 + 1);
        for piece in [1usize, 999, 1000, 1001, 4096, 10_001] {
            let mut hasher = BlockHasher::new(1000);
            for chunk in bytes.chunks(piece) {
                hasher.update(chunk);
            }
            let (len, whole, sums) = hasher.finish();
            let expected: Vec<u64> = bytes.chunks(1000).map(xxh3_64).collect();
            assert_eq!((len, whole), (bytes.len() as u64, xxh3_64(&bytes)));
            assert_eq!(sums, expected, "pieces of {piece}");
        }
        assert_eq!(BlockHasher::new(8).finish(), (0, xxh3_64(b""), Vec::new()));
    }

    #[test]
    fn a_known_vector() {
        // xxh3-64 of the empty input with seed 0, from the algorithm's reference.
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2);
    }
}
