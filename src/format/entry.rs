//! Entries and the per-container index block that lists them, sorted in path order.
//!
//! See formats/SPEC.md, "The container index".

use super::hashed::{self, HashLookup, PathKey};
use super::ipc;
use super::path::{check_entry_path, cmp_paths, display};
use super::prefetch;
use crate::error::{Error, Result};
use arrow_array::{
    Array, ArrayRef, BinaryArray, Int64Array, RecordBatch, UInt32Array, UInt64Array, UInt8Array,
};
use arrow_buffer::Buffer;
use arrow_schema::DataType;
use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The format version whose containers may hold tombstones.
const TOMBSTONES_SINCE: u16 = 3;

/// The format version whose container indexes hold [`BLOCK_SUMS_COLUMN`].
const BLOCK_SUMS_SINCE: u16 = 4;

/// Since format version 4: per-block checksums of external files (see formats/SPEC.md).
const BLOCK_SUMS_COLUMN: &str = "block_xxh3";

/// The bytes of an external file one block checksum covers: a read of any range of the file is
/// checked by reading the blocks it touches. Small enough that the kernel's reads of a mounted
/// file (128 KiB at a time) cover whole blocks, large enough that the sums cost 8 bytes per
/// 64 KiB of file in the index.
pub const EXTERNAL_BLOCK: u64 = 64 << 10;

/// The number of block checksums an external file of `len` bytes has.
pub fn block_count(len: u64) -> u64 {
    len.div_ceil(EXTERNAL_BLOCK)
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum EntryKind {
    /// A regular file whose bytes are stored in the container.
    File = 0,
    /// A directory (no bytes).
    Dir = 1,
    /// A symbolic link whose target is stored in the container like file bytes.
    Symlink = 2,
    /// A regular file at or above the fold threshold, kept as an ordinary file at its path
    /// under the dataset root.
    External = 3,
    /// Since format version 3: the path was deleted by this entry's generation; it hides the
    /// path in every older generation. Readers never show it.
    Tombstone = 4,
}

impl EntryKind {
    /// Decodes the `kind` column value.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(EntryKind::File),
            1 => Some(EntryKind::Dir),
            2 => Some(EntryKind::Symlink),
            3 => Some(EntryKind::External),
            4 => Some(EntryKind::Tombstone),
            _ => None,
        }
    }

    /// True for entries whose bytes live inside the container.
    pub fn is_stored(self) -> bool {
        matches!(self, EntryKind::File | EntryKind::Symlink)
    }

    /// True for entries that read as regular files.
    pub fn is_file(self) -> bool {
        matches!(self, EntryKind::File | EntryKind::External)
    }
}

/// How an entry's bytes are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Codec {
    /// The original bytes.
    None = 0,
    /// One zstd frame holding the original bytes.
    Zstd = 1,
}

impl Codec {
    /// Decodes the `codec` column value.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Codec::None),
            1 => Some(Codec::Zstd),
            _ => None,
        }
    }
}

/// One row of a container index: an entry's metadata and where its bytes are. Owned by
/// default; [`EntryRef`] borrows its path from the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<P = Vec<u8>> {
    /// Path relative to the dataset root, components separated by `/`, not necessarily UTF-8.
    pub path: P,
    /// What the entry is.
    pub kind: EntryKind,
    /// Offset of the stored bytes in the container (0 when nothing is stored).
    pub offset: u64,
    /// Bytes stored in the container (the compressed length when compressed).
    pub stored_len: u64,
    /// Original length: file size, symlink target length, 0 for directories.
    pub len: u64,
    /// How the stored bytes are encoded.
    pub codec: Codec,
    /// xxh3-64 of the original bytes (0 for directories).
    pub xxh3: u64,
    /// The original `st_mode`, file type bits included.
    pub mode: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// For an external entry indexed by format version 4 on: the xxh3-64 of each consecutive
    /// [`EXTERNAL_BLOCK`] bytes of the file. `None` for other kinds and older indexes.
    pub block_sums: Option<Arc<[u64]>>,
}

/// A row seen in place, its path borrowed from the index: what a read needs, without the copy
/// of the path that an owned [`Entry`] makes (reads of small files are short enough to show it).
pub type EntryRef<'a> = Entry<&'a [u8]>;

impl<P> Entry<P> {
    /// The same entry under another form of its path.
    pub fn with_path<Q>(self, path: Q) -> Entry<Q> {
        Entry {
            path,
            kind: self.kind,
            offset: self.offset,
            stored_len: self.stored_len,
            len: self.len,
            codec: self.codec,
            xxh3: self.xxh3,
            mode: self.mode,
            mtime_ns: self.mtime_ns,
            block_sums: self.block_sums,
        }
    }
}

const COLUMNS: [(&str, DataType); 9] = [
    ("path", DataType::Binary),
    ("kind", DataType::UInt8),
    ("offset", DataType::UInt64),
    ("stored_len", DataType::UInt64),
    ("len", DataType::UInt64),
    ("codec", DataType::UInt8),
    ("xxh3", DataType::UInt64),
    ("mode", DataType::UInt32),
    ("mtime_ns", DataType::Int64),
];

/// The hash lookup columns, written since format version 2.
const HASH_COLUMNS: [(&str, DataType); 2] = [
    (hashed::ROWS_COLUMN, DataType::UInt64),
    (hashed::BUCKETS_COLUMN, DataType::UInt32),
];

/// The most entries one container index can hold: the hash table stores rows in 32 bits.
pub const MAX_ENTRIES: usize = hashed::MAX_ROWS;

/// The first format version whose container indexes hold [`HASH_COLUMNS`].
const HASH_COLUMNS_SINCE: u16 = 2;

/// Encodes entries (already in path order, at most [`MAX_ENTRIES`]) as an index block.
pub fn encode_index(entries: &[Entry]) -> Result<Vec<u8>> {
    let u64s = |f: fn(&Entry) -> u64| -> ArrayRef {
        Arc::new(UInt64Array::from_iter_values(entries.iter().map(f)))
    };
    let u8s = |f: fn(&Entry) -> u8| -> ArrayRef {
        Arc::new(UInt8Array::from_iter_values(entries.iter().map(f)))
    };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(BinaryArray::from_iter_values(
            entries.iter().map(|e| e.path.as_slice()),
        )),
        u8s(|e| e.kind as u8),
        u64s(|e| e.offset),
        u64s(|e| e.stored_len),
        u64s(|e| e.len),
        u8s(|e| e.codec as u8),
        u64s(|e| e.xxh3),
        Arc::new(UInt32Array::from_iter_values(
            entries.iter().map(|e| e.mode),
        )),
        Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|e| e.mtime_ns),
        )),
    ];
    columns.push(Arc::new(BinaryArray::from_iter_values(
        entries.iter().map(block_sums_bytes),
    )));
    let (hash_rows, hash_buckets) = hashed::build(entries.iter().map(|e| e.path.as_slice()));
    columns.push(Arc::new(UInt64Array::from(hash_rows)));
    columns.push(Arc::new(UInt32Array::from(hash_buckets)));
    let mut fields = COLUMNS.to_vec();
    fields.push((BLOCK_SUMS_COLUMN, DataType::Binary));
    fields.extend(HASH_COLUMNS);
    let batch = RecordBatch::try_new(ipc::schema(&fields), columns).expect("columns match schema");
    ipc::encode(&batch, HashMap::new())
}

/// A decoded index block: typed, zero-copy views of its columns.
#[derive(Debug, Clone)]
pub struct EntryIndex {
    path: BinaryArray,
    kind: UInt8Array,
    offset: UInt64Array,
    stored_len: UInt64Array,
    len: UInt64Array,
    codec: UInt8Array,
    xxh3: UInt64Array,
    mode: UInt32Array,
    mtime_ns: Int64Array,
    /// The hash lookup table (absent in version 1 indexes).
    hashed: Option<HashLookup>,
    /// External files' block checksums (absent before version 4).
    block_sums: Option<BinaryArray>,
}

impl EntryIndex {
    /// Decodes an index block held in `buf` (a slice of the container's memory map), written
    /// with format `version`.
    ///
    /// Column types, nulls, kind and codec values are checked here; path validity and order are
    /// checked where paths are used (and all at once by [`EntryIndex::check_paths`]); the hash
    /// table's values are bounds-checked and confirmed where it is used.
    pub fn parse(buf: &Buffer, version: u16, file: &Path) -> Result<Self> {
        let (batch, _) = ipc::decode(buf, file)?;
        let hashed = if version >= HASH_COLUMNS_SINCE {
            let [(rows, rows_type), (buckets, buckets_type)] = &HASH_COLUMNS;
            Some(HashLookup::new(
                ipc::column::<UInt64Array>(&batch, rows, rows_type, file)?.clone(),
                ipc::column::<UInt32Array>(&batch, buckets, buckets_type, file)?.clone(),
            ))
        } else {
            None
        };
        let index = EntryIndex {
            path: ipc::column::<BinaryArray>(&batch, "path", &DataType::Binary, file)?.clone(),
            kind: ipc::column::<UInt8Array>(&batch, "kind", &DataType::UInt8, file)?.clone(),
            offset: ipc::column::<UInt64Array>(&batch, "offset", &DataType::UInt64, file)?.clone(),
            stored_len: ipc::column::<UInt64Array>(&batch, "stored_len", &DataType::UInt64, file)?
                .clone(),
            len: ipc::column::<UInt64Array>(&batch, "len", &DataType::UInt64, file)?.clone(),
            codec: ipc::column::<UInt8Array>(&batch, "codec", &DataType::UInt8, file)?.clone(),
            xxh3: ipc::column::<UInt64Array>(&batch, "xxh3", &DataType::UInt64, file)?.clone(),
            mode: ipc::column::<UInt32Array>(&batch, "mode", &DataType::UInt32, file)?.clone(),
            mtime_ns: ipc::column::<Int64Array>(&batch, "mtime_ns", &DataType::Int64, file)?
                .clone(),
            hashed,
            block_sums: if version >= BLOCK_SUMS_SINCE {
                let column =
                    ipc::column::<BinaryArray>(&batch, BLOCK_SUMS_COLUMN, &DataType::Binary, file)?;
                Some(column.clone())
            } else {
                None
            },
        };
        if let Some(bad) = index.kind.values().iter().find(|&&k| {
            EntryKind::from_byte(k)
                .is_none_or(|kind| kind == EntryKind::Tombstone && version < TOMBSTONES_SINCE)
        }) {
            return Err(Error::corrupt(
                file,
                format!("unknown entry kind {bad} in the index"),
            ));
        }
        if let Some(bad) = index
            .codec
            .values()
            .iter()
            .find(|&&c| Codec::from_byte(c).is_none())
        {
            return Err(Error::corrupt(
                file,
                format!("unknown codec {bad} in the index"),
            ));
        }
        index.check_block_sums(file)?;
        Ok(index)
    }

    /// Refuses an index whose block checksums do not fit its rows: an external entry of `len`
    /// bytes has exactly [`block_count`] of them or none (an entry carried over from an older
    /// version's index by a compaction), every other entry none. Checked once here so that
    /// every read can rely on them.
    fn check_block_sums(&self, file: &Path) -> Result<()> {
        let Some(sums) = &self.block_sums else {
            return Ok(());
        };
        for row in 0..self.len() {
            let expected = match self.kind(row) {
                EntryKind::External => block_count(self.len.value(row)).saturating_mul(8),
                _ => 0,
            };
            let found = sums.value_length(row) as u64;
            if found != expected && found != 0 {
                return Err(Error::corrupt(
                    file,
                    format!(
                        "row {row}: {found} bytes of block checksums where {:?} needs {expected}",
                        display(self.path(row))
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The block checksums of row `row`, when it is an external entry of an index that has them.
    fn block_sums(&self, row: usize) -> Option<Arc<[u64]>> {
        let sums = self.block_sums.as_ref()?;
        if self.kind(row) != EntryKind::External {
            return None;
        }
        let bytes = binary_value(sums, row);
        if bytes.is_empty() && self.len.value(row) > 0 {
            return None;
        }
        Some(
            bytes
                .chunks_exact(8)
                .map(|sum| u64::from_le_bytes(sum.try_into().expect("8 bytes")))
                .collect(),
        )
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.path.len()
    }

    /// True when the index lists no entries.
    pub fn is_empty(&self) -> bool {
        self.path.is_empty()
    }

    /// The path of row `row`, as stored (unchecked).
    pub fn path(&self, row: usize) -> &[u8] {
        binary_value(&self.path, row)
    }

    /// The kind of row `row`.
    pub fn kind(&self, row: usize) -> EntryKind {
        // Validated at parse; a mapping cut short under the index reads zeros (a file), which
        // later checks refuse, so nothing here may panic on a changed byte.
        EntryKind::from_byte(self.kind.value(row)).unwrap_or(EntryKind::Tombstone)
    }

    /// Row `row` as an owned entry.
    pub fn entry(&self, row: usize) -> Entry {
        let entry = self.entry_ref(row);
        let path = entry.path.to_vec();
        entry.with_path(path)
    }

    /// Row `row` in place, its path borrowed from the index.
    pub fn entry_ref(&self, row: usize) -> EntryRef<'_> {
        Entry {
            path: self.path(row),
            kind: self.kind(row),
            offset: self.offset.value(row),
            stored_len: self.stored_len.value(row),
            len: self.len.value(row),
            codec: Codec::from_byte(self.codec.value(row)).unwrap_or(Codec::Zstd),
            xxh3: self.xxh3.value(row),
            mode: self.mode.value(row),
            mtime_ns: self.mtime_ns.value(row),
            block_sums: self.block_sums(row),
        }
    }

    /// The first row for which `before(path)` is false, given that `before` is true for a
    /// prefix of the rows and false for the rest.
    pub fn partition_point(&self, mut before: impl FnMut(&[u8]) -> bool) -> usize {
        let offsets = self.path.value_offsets();
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // The next probe is the middle of one half or the other. In a large index both are
            // cache misses; asking for both offsets now overlaps them with this comparison.
            prefetch(offsets, lo + (mid - lo) / 2);
            prefetch(offsets, mid + 1 + (hi - mid - 1) / 2);
            if before(self.path(mid)) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Starts loading the first memory [`EntryIndex::find`] will read for `path`: a hint that
    /// never faults, so it may be given before the mapping is known to be whole, and the load
    /// overlaps whatever the caller does next.
    pub fn prefetch_find(&self, key: &PathKey) {
        if let Some(table) = &self.hashed {
            table.prefetch(key);
        }
    }

    /// The row holding exactly `path`: through the hash table when the index has one. A path
    /// the table does not list is searched for too, so a damaged table costs time, never an
    /// answer.
    pub fn find(&self, path: &[u8]) -> Option<usize> {
        self.find_key(&PathKey::new(path))
    }

    /// [`EntryIndex::find`] for a path whose key is already made (by the caller of
    /// [`EntryIndex::prefetch_find`]), so the path is hashed once.
    pub fn find_key(&self, key: &PathKey) -> Option<usize> {
        let listed = self.hashed.as_ref().and_then(|t| t.find(key, &self.path));
        listed.or_else(|| self.find_by_search(key.path()))
    }

    /// The row holding exactly `path`, by binary search alone.
    pub fn find_by_search(&self, path: &[u8]) -> Option<usize> {
        let row = self.partition_point(|p| cmp_paths(p, path) == Ordering::Less);
        (row < self.len() && self.path(row) == path).then_some(row)
    }

    /// Checks that the hash table (version 2) leads to every row from its own path; returns
    /// every row it does not. Lookups stay right without it ([`EntryIndex::find`] falls back to
    /// binary search) but get slower, so `verify` reports it.
    pub fn check_hash_table(&self) -> Vec<String> {
        let Some(table) = &self.hashed else {
            return Vec::new();
        };
        (0..self.len())
            .filter(|&row| table.find(&PathKey::new(self.path(row)), &self.path) != Some(row))
            .map(|row| {
                format!(
                    "row {row}: the hash table does not lead to {:?}",
                    display(self.path(row))
                )
            })
            .collect()
    }

    /// Checks every path for safety and strict path order; returns every problem found.
    pub fn check_paths(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for row in 0..self.len() {
            let path = self.path(row);
            if let Err(reason) = check_entry_path(path) {
                problems.push(format!(
                    "row {row}: hostile path {:?}: {reason}",
                    display(path)
                ));
            }
            if row > 0 && cmp_paths(self.path(row - 1), path) != Ordering::Less {
                problems.push(format!(
                    "row {row}: {:?} is out of path order",
                    display(path)
                ));
            }
        }
        problems
    }

    /// Checks what the format fixes beyond paths (formats/SPEC.md, "Containers"): every
    /// entry's stored bytes follow the previous entry's with no gap and together are exactly
    /// the body's `data_len` bytes, a directory stores nothing and has length 0, and each
    /// mode's file-type bits are its kind's. Returns every problem found.
    pub fn check_layout(&self, data_len: u64) -> Vec<String> {
        let mut problems = Vec::new();
        let mut next_offset = 0u64;
        for row in 0..self.len() {
            let entry = self.entry_ref(row);
            let path = display(entry.path);
            if entry.stored_len > 0 {
                if entry.offset != next_offset {
                    problems.push(format!(
                        "row {row}: {path:?} is stored at offset {} where the previous entry's bytes end at {next_offset}",
                        entry.offset
                    ));
                }
                next_offset = entry.offset.saturating_add(entry.stored_len);
            }
            if entry.stored_len == 0 && entry.offset != 0 {
                problems.push(format!(
                    "row {row}: {path:?} stores nothing but has offset {}",
                    entry.offset
                ));
            }
            if entry.kind == EntryKind::Dir
                && (entry.len != 0 || entry.stored_len != 0 || entry.xxh3 != 0)
            {
                problems.push(format!(
                    "row {row}: {path:?} is a directory with a length ({}), stored bytes ({}) or a checksum",
                    entry.len, entry.stored_len
                ));
            }
            if let Some(expected) = file_type_bits(entry.kind) {
                if entry.mode & FILE_TYPE_MASK != expected {
                    problems.push(format!(
                        "row {row}: {path:?} is a {:?} entry whose mode {:o} has another file type",
                        entry.kind, entry.mode
                    ));
                }
            }
        }
        let stored = (0..self.len())
            .map(|row| self.stored_len.value(row))
            .fold(0u64, u64::saturating_add);
        if stored != data_len {
            problems.push(format!(
                "the entries store {stored} bytes but the body holds {data_len}"
            ));
        }
        problems
    }
}

/// An entry's block checksums as the index stores them: u64 little-endian, one after another.
fn block_sums_bytes(entry: &Entry) -> Vec<u8> {
    let sums = entry.block_sums.as_deref().unwrap_or_default();
    sums.iter().flat_map(|sum| sum.to_le_bytes()).collect()
}

/// The file-type bits of `st_mode`.
const FILE_TYPE_MASK: u32 = 0o170000;

/// The file-type bits a mode of this kind must carry (none for a tombstone, which has no file).
fn file_type_bits(kind: EntryKind) -> Option<u32> {
    match kind {
        EntryKind::File | EntryKind::External => Some(0o100000),
        EntryKind::Dir => Some(0o040000),
        EntryKind::Symlink => Some(0o120000),
        EntryKind::Tombstone => None,
    }
}

/// Value `row` of a binary column, sliced by its offsets checked one by one. Arrow's own
/// accessor trusts offsets validated when the block was decoded; a mapped index can change
/// under a reader (its file cut short: see `store::fault_guard`), and checked slicing keeps
/// changed offsets from naming memory outside the column's values (they give an empty value).
pub(crate) fn binary_value(column: &BinaryArray, row: usize) -> &[u8] {
    let offsets = column.value_offsets();
    let (Some(&start), Some(&end)) = (offsets.get(row), offsets.get(row + 1)) else {
        return &[];
    };
    let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
        return &[];
    };
    column.value_data().get(start..end).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File,
            offset: 0,
            stored_len: 0,
            len: 0,
            codec: Codec::None,
            xxh3: 0,
            mode: 0o100644,
            mtime_ns: 0,
            block_sums: None,
        }
    }

    /// An index block whose hash table lists every row under the next row's path hash: what a
    /// buggy writer could leave behind a valid checksum.
    fn index_with_a_shuffled_table(entries: &[Entry]) -> Buffer {
        let good = encode_index(entries).unwrap();
        let (batch, _) = ipc::decode(&Buffer::from(good), Path::new("good")).unwrap();
        let rows = batch
            .column_by_name(hashed::ROWS_COLUMN)
            .unwrap()
            .as_any()
            .downcast_ref::<UInt64Array>()
            .unwrap();
        let n = rows.len() as u64;
        let shuffled = rows
            .values()
            .iter()
            .map(|v| (v & !0xffff_ffff) | (((v + 1) & 0xffff_ffff) % n));
        let mut columns = batch.columns().to_vec();
        let at = batch.schema().index_of(hashed::ROWS_COLUMN).unwrap();
        columns[at] = Arc::new(UInt64Array::from_iter_values(shuffled));
        let batch = RecordBatch::try_new(batch.schema(), columns).unwrap();
        Buffer::from(ipc::encode(&batch, HashMap::new()).unwrap())
    }

    #[test]
    fn a_sound_table_passes_its_check_and_finds_every_row() {
        let entries: Vec<Entry> = (0..500).map(|i| file(&format!("d/{i:04}"))).collect();
        let block = Buffer::from(encode_index(&entries).unwrap());
        let index = EntryIndex::parse(&block, HASH_COLUMNS_SINCE, Path::new("t")).unwrap();
        assert!(index.check_hash_table().is_empty());
        for (row, entry) in entries.iter().enumerate() {
            assert_eq!(index.find(&entry.path), Some(row));
        }
        assert_eq!(index.find(b"d/9999"), None);
    }

    #[test]
    fn a_damaged_table_is_reported_and_lookups_stay_right() {
        let entries: Vec<Entry> = (0..500).map(|i| file(&format!("d/{i:04}"))).collect();
        let block = index_with_a_shuffled_table(&entries);
        let index = EntryIndex::parse(&block, HASH_COLUMNS_SINCE, Path::new("t")).unwrap();
        let problems = index.check_hash_table();
        assert_eq!(problems.len(), entries.len(), "{problems:?}");
        assert!(problems[7].contains("row 7: the hash table does not lead to \"d/0007\""));
        for (row, entry) in entries.iter().enumerate() {
            assert_eq!(index.find(&entry.path), Some(row));
        }
    }

    #[test]
    fn a_version_1_index_has_no_table_to_check() {
        let entries = [file("a"), file("b")];
        let block = Buffer::from(encode_index(&entries).unwrap());
        let index = EntryIndex::parse(&block, 1, Path::new("t")).unwrap();
        assert!(index.check_hash_table().is_empty());
        assert_eq!(index.find(b"b"), Some(1));
    }
}
