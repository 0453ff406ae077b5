//! The dataset catalog: one row per container with the path range it covers.
//!
//! See formats/SPEC.md, "The catalog".

use super::filter::PathFilter;
use super::footer::{FileKind, Footer, FOOTER_LEN};
use super::ipc;
use super::path::{cmp_paths, display};
use super::FORMAT_VERSION;
use crate::checksum::xxh3_64;
use crate::error::{Error, IoContext, Result};
use arrow_array::{
    ArrayRef, BinaryArray, FixedSizeBinaryArray, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow_buffer::Buffer;
use arrow_schema::DataType;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Schema metadata key for the fold threshold the dataset was made with.
pub const META_THRESHOLD: &str = "sheaf.threshold";

/// Schema metadata key for the folded tree's root directory's `st_mode`, decimal.
pub const META_ROOT_MODE: &str = "sheaf.root_mode";

/// Schema metadata key for the folded tree's root directory's mtime, nanoseconds, decimal.
pub const META_ROOT_MTIME_NS: &str = "sheaf.root_mtime_ns";

/// The dataset root's mode when the catalog records none (datasets folded before it did, and
/// folds of a store, whose prefixes have no metadata).
pub const DEFAULT_ROOT_MODE: u32 = 0o040755;

/// The folded tree's root directory: what the dataset's root shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RootMeta {
    /// `st_mode`, a directory's.
    pub mode: u32,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// One container of a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogRow {
    /// File name of the container under `.sheaf/containers/`.
    pub name: String,
    /// Path of the container's first entry.
    pub first_path: Vec<u8>,
    /// Path of the container's last entry.
    pub last_path: Vec<u8>,
    /// Entries in the container.
    pub entry_count: u64,
    /// Length of the container file.
    pub file_len: u64,
    /// The container footer's index checksum, binding this row to that exact file.
    pub index_xxh3: u64,
    /// xxh3-128 of the whole container file.
    pub content_id: u128,
    /// The generation that wrote the container: its level. Rows of one level cover disjoint
    /// path ranges; a newer level's entries shadow an older one's.
    pub generation: u32,
    /// A Bloom filter over the container's paths (format version 3; see `format::filter`), or
    /// empty when the container has none (it is then always opened to look a path up).
    pub filter: Vec<u8>,
}

/// A decoded catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    rows: Vec<CatalogRow>,
    metadata: HashMap<String, String>,
}

const COLUMNS: [(&str, DataType); 9] = [
    ("name", DataType::Utf8),
    ("first_path", DataType::Binary),
    ("last_path", DataType::Binary),
    ("entry_count", DataType::UInt64),
    ("file_len", DataType::UInt64),
    ("index_xxh3", DataType::UInt64),
    ("content_id", DataType::FixedSizeBinary(16)),
    ("generation", DataType::UInt32),
    ("filter", DataType::Binary),
];

impl Catalog {
    /// A catalog of `rows`, ordered by generation and, within one generation, by path without
    /// overlapping.
    pub fn new(rows: Vec<CatalogRow>, metadata: HashMap<String, String>) -> Self {
        Catalog { rows, metadata }
    }

    /// The containers: by generation, and in path order within one generation.
    pub fn rows(&self) -> &[CatalogRow] {
        &self.rows
    }

    /// Schema metadata (informational key-value pairs).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// The folded root's mode and time, when the catalog records them ([`META_ROOT_MODE`],
    /// [`META_ROOT_MTIME_NS`]) and the mode is a directory's.
    pub fn root_meta(&self) -> Option<RootMeta> {
        let number = |key: &str| self.metadata.get(key)?.parse::<i64>().ok();
        let mode = u32::try_from(number(META_ROOT_MODE)?).ok()?;
        let is_dir = mode & 0o170000 == 0o040000;
        is_dir.then_some(RootMeta {
            mode,
            mtime_ns: number(META_ROOT_MTIME_NS)?,
        })
    }

    /// The entry of the dataset's root directory: the folded root's mode and time where the
    /// catalog records them, else a directory of mode 0755 and time 0.
    pub fn root(&self) -> super::Entry {
        let meta = self.root_meta().unwrap_or(RootMeta {
            mode: DEFAULT_ROOT_MODE,
            mtime_ns: 0,
        });
        super::Entry {
            path: Vec::new(),
            kind: super::EntryKind::Dir,
            offset: 0,
            stored_len: 0,
            len: 0,
            codec: super::Codec::None,
            xxh3: 0,
            mode: meta.mode,
            mtime_ns: meta.mtime_ns,
            block_sums: None,
        }
    }

    /// Reads and validates the catalog file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).ctx("read", path)?;
        Self::from_buffer(Buffer::from_vec(bytes), path)
    }

    /// Validates a catalog held in `bytes`.
    pub fn from_buffer(bytes: Buffer, file: &Path) -> Result<Self> {
        let file_len = bytes.len() as u64;
        let tail = &bytes[bytes.len().saturating_sub(FOOTER_LEN)..];
        let footer = Footer::decode(tail, file_len, FileKind::Catalog, file)?;
        if footer.data_len != 0 || footer.index_offset != 0 {
            return Err(Error::corrupt(
                file,
                "a catalog holds no entry data: its index must start at offset 0",
            ));
        }
        let index =
            bytes.slice_with_length(footer.index_offset as usize, footer.index_len as usize);
        if xxh3_64(&index) != footer.index_xxh3 {
            return Err(Error::corrupt(file, "catalog checksum mismatch"));
        }
        let (batch, metadata) = ipc::decode(&index, file)?;
        let rows = decode_rows(&batch, file)?;
        if rows.len() as u64 != footer.entry_count {
            return Err(Error::corrupt(
                file,
                "catalog row count disagrees with its footer",
            ));
        }
        check_ranges(&rows).map_err(|reason| Error::corrupt(file, reason))?;
        Ok(Catalog { rows, metadata })
    }

    /// Encodes the catalog as a complete file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let rows = &self.rows;
        let u64s = |f: fn(&CatalogRow) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(f)))
        };
        let ids: Vec<u8> = rows
            .iter()
            .flat_map(|r| r.content_id.to_be_bytes())
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.name.as_str()),
            )),
            Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|r| r.first_path.as_slice()),
            )),
            Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|r| r.last_path.as_slice()),
            )),
            u64s(|r| r.entry_count),
            u64s(|r| r.file_len),
            u64s(|r| r.index_xxh3),
            Arc::new(FixedSizeBinaryArray::new(16, Buffer::from_vec(ids), None)),
            Arc::new(UInt32Array::from_iter_values(
                rows.iter().map(|r| r.generation),
            )),
            Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|r| r.filter.as_slice()),
            )),
        ];
        let batch =
            RecordBatch::try_new(ipc::schema(&COLUMNS), columns).expect("columns match schema");
        let index = ipc::encode(&batch, self.metadata.clone())?;
        let footer = Footer {
            index_offset: 0,
            index_len: index.len() as u64,
            index_xxh3: xxh3_64(&index),
            entry_count: rows.len() as u64,
            data_len: 0,
            version: FORMAT_VERSION,
            kind: FileKind::Catalog,
        };
        let mut out = index;
        out.extend_from_slice(&footer.encode());
        Ok(out)
    }
}

/// Decodes a catalog's index block and checks its rows.
pub(crate) fn decode_index(index: &Buffer, file: &Path) -> Result<Catalog> {
    let (batch, metadata) = ipc::decode(index, file)?;
    let rows = decode_rows(&batch, file)?;
    check_ranges(&rows).map_err(|reason| Error::corrupt(file, reason))?;
    Ok(Catalog { rows, metadata })
}

fn decode_rows(batch: &RecordBatch, file: &Path) -> Result<Vec<CatalogRow>> {
    let name = ipc::column::<StringArray>(batch, "name", &DataType::Utf8, file)?;
    let first = ipc::column::<BinaryArray>(batch, "first_path", &DataType::Binary, file)?;
    let last = ipc::column::<BinaryArray>(batch, "last_path", &DataType::Binary, file)?;
    let entry_count = ipc::column::<UInt64Array>(batch, "entry_count", &DataType::UInt64, file)?;
    let file_len = ipc::column::<UInt64Array>(batch, "file_len", &DataType::UInt64, file)?;
    let index_xxh3 = ipc::column::<UInt64Array>(batch, "index_xxh3", &DataType::UInt64, file)?;
    let content_id = ipc::column::<FixedSizeBinaryArray>(
        batch,
        "content_id",
        &DataType::FixedSizeBinary(16),
        file,
    )?;
    let generation = ipc::column::<UInt32Array>(batch, "generation", &DataType::UInt32, file)?;
    // Catalogs before version 3 have no filters.
    let filter = match batch.schema().column_with_name("filter") {
        Some(_) => Some(ipc::column::<BinaryArray>(
            batch,
            "filter",
            &DataType::Binary,
            file,
        )?),
        None => None,
    };
    let mut rows = Vec::with_capacity(batch.num_rows());
    for i in 0..batch.num_rows() {
        let container_name = name.value(i);
        if !is_safe_container_name(container_name) {
            return Err(Error::corrupt(
                file,
                format!("hostile container name {container_name:?}"),
            ));
        }
        rows.push(CatalogRow {
            name: container_name.to_owned(),
            first_path: first.value(i).to_vec(),
            last_path: last.value(i).to_vec(),
            entry_count: entry_count.value(i),
            file_len: file_len.value(i),
            index_xxh3: index_xxh3.value(i),
            content_id: u128::from_be_bytes(content_id.value(i).try_into().expect("16 bytes")),
            generation: generation.value(i),
            filter: match filter {
                Some(filters) => checked_filter(filters.value(i), container_name, file)?,
                None => Vec::new(),
            },
        });
    }
    Ok(rows)
}

/// A container name may not leave `.sheaf/containers/`.
fn is_safe_container_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// A row's filter bytes, refused unless well formed.
fn checked_filter(bytes: &[u8], container: &str, file: &Path) -> Result<Vec<u8>> {
    match PathFilter::new(bytes) {
        Some(_) => Ok(bytes.to_vec()),
        None => Err(Error::corrupt(
            file,
            format!("container {container} has a malformed path filter"),
        )),
    }
}

/// Checks that every container covers a non-empty range, that rows come by generation, and
/// that within one generation ranges are in order and disjoint, so binary search over each
/// generation's rows is sound.
fn check_ranges(rows: &[CatalogRow]) -> std::result::Result<(), String> {
    for (i, row) in rows.iter().enumerate() {
        if row.entry_count == 0 || cmp_paths(&row.first_path, &row.last_path).is_gt() {
            return Err(format!(
                "container {} has an empty or inverted path range",
                row.name
            ));
        }
        let Some(before) = i.checked_sub(1).map(|b| &rows[b]) else {
            continue;
        };
        if before.generation > row.generation {
            return Err(format!(
                "container {} of generation {} comes after one of generation {}",
                row.name, row.generation, before.generation
            ));
        }
        if before.generation == row.generation
            && cmp_paths(&before.last_path, &row.first_path).is_ge()
        {
            return Err(format!(
                "container {} starts at {:?}, inside the range of the one before",
                row.name,
                display(&row.first_path)
            ));
        }
    }
    Ok(())
}

/// The levels of a catalog's rows, newest first: each the range of rows one generation wrote.
pub fn levels(rows: &[CatalogRow]) -> Vec<std::ops::Range<usize>> {
    let mut levels = Vec::new();
    let mut start = 0;
    for i in 1..=rows.len() {
        if i == rows.len() || rows[i].generation != rows[start].generation {
            levels.push(start..i);
            start = i;
        }
    }
    levels.reverse();
    levels
}
