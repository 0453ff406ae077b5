//! The on-disk format: footer, per-container index block, containers and the dataset catalog.
//!
//! formats/SPEC.md is the contract; every module here points at its section.

pub mod catalog;
pub mod container;
pub mod entry;
pub mod filter;
pub mod footer;
pub mod generation;
mod hashed;
mod ipc;
pub mod path;
pub mod routes;

pub use catalog::{Catalog, CatalogRow};
pub use container::{Container, ContainerWriter};
pub use entry::{Codec, Entry, EntryIndex, EntryKind, EntryRef};
pub use footer::{FileKind, Footer};
pub use hashed::PathKey;

/// The format version this build writes.
///
/// History (see formats/SPEC.md, "Version history"):
/// - 1: first release.
/// - 2: container indexes add the hash lookup columns `hash_rows` and `hash_buckets`.
/// - 3: generations: numbered generation files replace the one catalog, containers may hold
///   tombstones, catalog rows carry path filters.
/// - 4: container indexes add `block_xxh3`, per-block checksums of external files.
pub const FORMAT_VERSION: u16 = 4;

/// The oldest format version this build still reads.
pub const OLDEST_SUPPORTED_VERSION: u16 = 1;

/// The largest entry (original length) a reader will materialise.
///
/// Folded entries are below the fold threshold, which is capped at this value; a larger length
/// in an index can only come from corruption.
pub const MAX_ENTRY_LEN: u64 = 1 << 30;

/// A hint that `slice[i]` will be read soon (nothing when out of range or not on x86-64).
#[inline(always)]
pub(crate) fn prefetch<T>(slice: &[T], i: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(item) = slice.get(i) {
        // SAFETY: a prefetch is a hint: it reads nothing and cannot fault.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                (item as *const T).cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slice, i);
}

/// Parses untrusted bytes as a container and as a catalog, touching every row: the entry point
/// of the fuzz targets and of the parser robustness tests. Returns the number of rows read.
pub fn parse_untrusted(bytes: &[u8]) -> usize {
    let buffer = arrow_buffer::Buffer::from(bytes.to_vec());
    let name = std::path::Path::new("<fuzz>");
    let mut rows = 0;
    if let Ok(container) = Container::from_buffer(buffer.clone(), name.into()) {
        for row in 0..container.index().len() {
            let entry = container.index().entry(row);
            let _ = container.index().find(&entry.path);
            let _ = container.read_row(row);
            rows += usize::from(!entry.path.is_empty());
        }
    }
    if let Ok(catalog) = Catalog::from_buffer(buffer, name) {
        rows += catalog.rows().len();
    }
    rows + parse_untrusted_generation(bytes)
}

/// Parses untrusted bytes as a generation file and asks every row's path filter about the
/// row's own first and last paths (which it must hold): the entry point of the generation
/// fuzz target. Returns the levels and filter answers counted.
pub fn parse_untrusted_generation(bytes: &[u8]) -> usize {
    let name = std::path::Path::new("<fuzz>");
    let Ok(snapshot) = generation::parse_recorded(bytes.to_vec(), name) else {
        return 0;
    };
    let mut seen = catalog::levels(snapshot.catalog.rows()).len();
    for row in snapshot.catalog.rows() {
        let filter = filter::PathFilter::new(&row.filter).expect("checked when decoded");
        seen += usize::from(filter.may_hold(&row.first_path));
        seen += usize::from(filter.may_hold(&row.last_path));
    }
    seen + generation::info(snapshot.number, &snapshot.catalog).containers as usize
}

/// Decodes untrusted bytes directly as a container index block and as a catalog index block,
/// touching every row: the entry point of the index fuzz target. Returns the rows read.
pub fn parse_untrusted_index(bytes: &[u8]) -> usize {
    let buffer = arrow_buffer::Buffer::from(bytes.to_vec());
    let name = std::path::Path::new("<fuzz>");
    let mut rows = 0;
    if let Ok(index) = EntryIndex::parse(&buffer, FORMAT_VERSION, name) {
        rows += (0..index.len())
            .map(|row| index.entry(row).path.len().min(1))
            .sum::<usize>();
        rows += (0..index.len())
            .filter(|&row| index.find(index.path(row)).is_some())
            .count();
        rows += index.check_paths().len();
    }
    if let Ok(catalog) = catalog::decode_index(&buffer, name) {
        rows += catalog.rows().len();
    }
    rows
}
