//! The fixed-size footer that ends every container and catalog file.
//!
//! See formats/SPEC.md, "The footer". All integers are little-endian.

use super::{FORMAT_VERSION, OLDEST_SUPPORTED_VERSION};
use crate::checksum::xxh3_64;
use crate::error::{Error, Result};
use std::path::Path;

/// The last eight bytes of every sheaf file.
pub const MAGIC: [u8; 8] = *b"SHEAF\x00\xf0\x0d";

/// The footer's size in bytes.
pub const FOOTER_LEN: usize = 64;

/// Alignment of the index block inside a file, so Arrow buffers can be used in place.
pub const INDEX_ALIGNMENT: u64 = 64;

/// The largest index block a reader accepts (a guard before any allocation or arithmetic).
pub const MAX_INDEX_LEN: u64 = 4 << 30;

/// Byte range covered by the footer checksum.
const CHECKED_LEN: usize = 48;

/// What a sheaf file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FileKind {
    /// Entry bytes followed by an index of entries.
    Container = 1,
    /// A dataset catalog: an index of containers and no entry bytes.
    Catalog = 2,
}

impl FileKind {
    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(FileKind::Container),
            2 => Some(FileKind::Catalog),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            FileKind::Container => "container",
            FileKind::Catalog => "catalog",
        }
    }
}

/// The decoded footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// Offset of the index block; a multiple of [`INDEX_ALIGNMENT`].
    pub index_offset: u64,
    /// Length of the index block in bytes.
    pub index_len: u64,
    /// xxh3-64 of the index block.
    pub index_xxh3: u64,
    /// Rows in the index block.
    pub entry_count: u64,
    /// Bytes of entry data at the start of the file (`<= index_offset`).
    pub data_len: u64,
    /// Format version the file was written with.
    pub version: u16,
    /// What the file holds.
    pub kind: FileKind,
}

impl Footer {
    /// The length of the whole file this footer ends: body, index and footer.
    pub fn file_len(&self) -> u64 {
        self.index_offset + self.index_len + FOOTER_LEN as u64
    }

    /// Encodes the footer with the current format version.
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut out = [0u8; FOOTER_LEN];
        out[0..8].copy_from_slice(&self.index_offset.to_le_bytes());
        out[8..16].copy_from_slice(&self.index_len.to_le_bytes());
        out[16..24].copy_from_slice(&self.index_xxh3.to_le_bytes());
        out[24..32].copy_from_slice(&self.entry_count.to_le_bytes());
        out[32..40].copy_from_slice(&self.data_len.to_le_bytes());
        out[40..42].copy_from_slice(&self.version.to_le_bytes());
        out[42] = self.kind as u8;
        // 43..48 reserved, zero.
        let checksum = xxh3_64(&out[..CHECKED_LEN]);
        out[48..56].copy_from_slice(&checksum.to_le_bytes());
        out[56..64].copy_from_slice(&MAGIC);
        out
    }

    /// Decodes and validates the footer of a file of `file_len` bytes whose last
    /// [`FOOTER_LEN`] bytes are `bytes`.
    ///
    /// Every length is checked against the file length before it is used, so a hostile footer
    /// cannot make a reader index outside the file.
    pub fn decode(bytes: &[u8], file_len: u64, expected: FileKind, file: &Path) -> Result<Self> {
        let corrupt = |reason: String| Error::corrupt(file, reason);
        if file_len < FOOTER_LEN as u64 || bytes.len() != FOOTER_LEN {
            return Err(corrupt(format!(
                "{file_len} bytes is too short to be a sheaf {} (truncated?)",
                expected.name()
            )));
        }
        if bytes[56..64] != MAGIC {
            return Err(corrupt(format!(
                "not a sheaf {}: the footer magic is missing (truncated or foreign file)",
                expected.name()
            )));
        }
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let version = u16::from_le_bytes([bytes[40], bytes[41]]);
        if !is_compatible(version) {
            return Err(Error::UnsupportedVersion {
                file: file.to_path_buf(),
                found: version,
                oldest: OLDEST_SUPPORTED_VERSION,
                newest: FORMAT_VERSION,
            });
        }
        if xxh3_64(&bytes[..CHECKED_LEN]) != u64_at(48) {
            return Err(corrupt("footer checksum mismatch".into()));
        }
        let kind = FileKind::from_byte(bytes[42])
            .ok_or_else(|| corrupt(format!("unknown file kind {}", bytes[42])))?;
        if kind != expected {
            return Err(corrupt(format!(
                "is a sheaf {}, expected a {}",
                kind.name(),
                expected.name()
            )));
        }
        let footer = Footer {
            index_offset: u64_at(0),
            index_len: u64_at(8),
            index_xxh3: u64_at(16),
            entry_count: u64_at(24),
            data_len: u64_at(32),
            version,
            kind,
        };
        footer.check_layout(file_len).map_err(corrupt)?;
        Ok(footer)
    }

    fn check_layout(&self, file_len: u64) -> std::result::Result<(), String> {
        let body_len = file_len - FOOTER_LEN as u64;
        if self.index_len > MAX_INDEX_LEN {
            return Err(format!(
                "index length {} exceeds the limit {MAX_INDEX_LEN}",
                self.index_len
            ));
        }
        if self.index_offset % INDEX_ALIGNMENT != 0 {
            return Err(format!(
                "index offset {} is not {INDEX_ALIGNMENT}-byte aligned",
                self.index_offset
            ));
        }
        if self.index_offset.checked_add(self.index_len) != Some(body_len) {
            return Err(format!(
                "index [{}, +{}) does not end where the footer starts ({body_len}): truncated or padded file",
                self.index_offset, self.index_len
            ));
        }
        if self.data_len > self.index_offset {
            return Err(format!(
                "data length {} overlaps the index at {}",
                self.data_len, self.index_offset
            ));
        }
        Ok(())
    }
}

/// True when this build can read files written with format `version`.
pub fn is_compatible(version: u16) -> bool {
    (OLDEST_SUPPORTED_VERSION..=FORMAT_VERSION).contains(&version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Footer {
        Footer {
            index_offset: 128,
            index_len: 1000,
            index_xxh3: 0xdead_beef,
            entry_count: 7,
            data_len: 100,
            version: FORMAT_VERSION,
            kind: FileKind::Container,
        }
    }

    #[test]
    fn footer_is_64_bytes_and_round_trips() {
        let bytes = sample().encode();
        assert_eq!(bytes.len(), FOOTER_LEN);
        let back =
            Footer::decode(&bytes, 128 + 1000 + 64, FileKind::Container, Path::new("t")).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn wrong_kind_version_magic_and_length_are_rejected() {
        let p = Path::new("t");
        let bytes = sample().encode();
        assert!(Footer::decode(&bytes, 1192, FileKind::Catalog, p).is_err());
        assert!(Footer::decode(&bytes, 1193, FileKind::Container, p).is_err());
        assert!(Footer::decode(&bytes, 10, FileKind::Container, p).is_err());
        let mut foreign = bytes;
        foreign[60] ^= 1;
        assert!(matches!(
            Footer::decode(&foreign, 1192, FileKind::Container, p),
            Err(Error::Corrupt { .. })
        ));
        let mut future = sample();
        future.version = FORMAT_VERSION + 1;
        assert!(matches!(
            Footer::decode(&future.encode(), 1192, FileKind::Container, p),
            Err(Error::UnsupportedVersion { .. })
        ));
        let mut flipped = bytes;
        flipped[3] ^= 0x40;
        assert!(Footer::decode(&flipped, 1192, FileKind::Container, p).is_err());
    }
}
