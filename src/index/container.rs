//! Containers: entry bytes, then the index block, then the footer. Reading maps the file and
//! serves entries zero-copy; writing streams entries and appends index and footer at the end.
//!
//! See formats/SPEC.md, "Containers".

use super::entry::{encode_index, Codec, Entry, EntryIndex, EntryRef, MAX_ENTRIES};
use super::footer::{FileKind, Footer, FOOTER_LEN, INDEX_ALIGNMENT};
use super::path::{cmp_paths, display};
use super::{FORMAT_VERSION, MAX_ENTRY_LEN};
use crate::checksum::{xxh3_64, Xxh3};
use crate::error::{Error, IoContext, Result};
use crate::store::{ObjectWriter, Store};
use arrow_buffer::Buffer;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;
// A container's content id is the xxh3-128 of the whole file.
use xxhash_rust::xxh3::Xxh3 as ContentIdHasher;

/// Where a container's entry bytes are read from.
#[derive(Debug)]
enum Body {
    /// The whole file, memory-mapped (or in memory): entries are slices of it.
    Mapped(Buffer),
    /// A file in a remote store: each entry costs one ranged read.
    Remote { store: Arc<dyn Store>, key: String },
}

/// A container opened for reading.
#[derive(Debug)]
pub struct Container {
    file: PathBuf,
    body: Body,
    footer: Footer,
    index: EntryIndex,
}

/// How much of a remote container's end is fetched at once: the footer and, for most
/// containers, the whole index in one request.
const REMOTE_TAIL: u64 = 1 << 20;

impl Container {
    /// Maps the container file at `path` and validates its footer and index.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes = map_file(path)?;
        Self::from_buffer(bytes, path.to_path_buf())
    }

    /// Opens the container `key` of a store: mapped when the store is local, otherwise by
    /// fetching its tail (footer and index) with at most two ranged reads. `file_len`, when the
    /// catalog gives it, saves a length request.
    pub fn open_in(store: &Arc<dyn Store>, key: &str, file_len: Option<u64>) -> Result<Self> {
        if let Some(root) = store.local_root() {
            return Self::open(&root.join(key));
        }
        let file = PathBuf::from(store.uri(key));
        let len = match file_len {
            Some(len) => len,
            None => store.len(key)?.ok_or_else(|| Error::NotFound {
                path: store.uri(key),
            })?,
        };
        if len < FOOTER_LEN as u64 {
            return Err(Error::corrupt(
                &file,
                format!("{len} bytes is too short to be a sheaf file (truncated?)"),
            ));
        }
        let tail_start = len - len.min(REMOTE_TAIL);
        let tail = store.read_range(key, tail_start..len)?;
        let footer = Footer::decode(
            &tail[tail.len() - FOOTER_LEN..],
            len,
            FileKind::Container,
            &file,
        )?;
        let index_bytes = if footer.index_offset >= tail_start {
            let start = (footer.index_offset - tail_start) as usize;
            Buffer::from_vec(tail[start..start + footer.index_len as usize].to_vec())
        } else {
            Buffer::from_vec(store.read_range(key, footer.index_offset..len - FOOTER_LEN as u64)?)
        };
        let index = parse_index(&index_bytes, &footer, &file)?;
        let body = Body::Remote {
            store: store.clone(),
            key: key.to_owned(),
        };
        Ok(Container {
            file,
            body,
            footer,
            index,
        })
    }

    /// Validates a container held in memory (or mapped) as `bytes`.
    pub fn from_buffer(bytes: Buffer, file: PathBuf) -> Result<Self> {
        let file_len = bytes.len() as u64;
        let tail = &bytes[bytes.len().saturating_sub(FOOTER_LEN)..];
        let footer = Footer::decode(tail, file_len, FileKind::Container, &file)?;
        let index_bytes =
            bytes.slice_with_length(footer.index_offset as usize, footer.index_len as usize);
        let index = parse_index(&index_bytes, &footer, &file)?;
        Ok(Container {
            file,
            body: Body::Mapped(bytes),
            footer,
            index,
        })
    }

    /// The file this container was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The decoded footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The entry index.
    pub fn index(&self) -> &EntryIndex {
        &self.index
    }

    /// xxh3-128 of the whole file: the container's content id. A remote container is read
    /// whole, in chunks, to compute it.
    pub fn content_id(&self) -> Result<u128> {
        match &self.body {
            Body::Mapped(bytes) => Ok(xxhash_rust::xxh3::xxh3_128(bytes)),
            Body::Remote { store, key } => {
                let mut hasher = ContentIdHasher::new();
                let len = self.footer.index_offset + self.footer.index_len + FOOTER_LEN as u64;
                store.read_chunks(key, len, &mut |chunk| {
                    hasher.update(chunk);
                    Ok(())
                })?;
                Ok(hasher.digest128())
            }
        }
    }

    /// The original bytes of row `row` (a file's content or a symlink's target), checked
    /// against the index checksum. Uncompressed entries are returned without a copy.
    pub fn read_row(&self, row: usize) -> Result<Buffer> {
        let entry = self.index.entry_ref(row);
        if !entry.kind.is_stored() {
            return Err(Error::WrongKind {
                path: display(entry.path),
                reason: "has no bytes stored in a container",
            });
        }
        let stored = self.stored_bytes(&entry)?;
        let bytes = match entry.codec {
            Codec::None => stored,
            Codec::Zstd => self.decompress(&entry, &stored)?,
        };
        self.check(&entry, bytes.len(), xxh3_64(&bytes))?;
        Ok(bytes)
    }

    /// The length of row `row`'s original bytes, as its index gives it (what
    /// [`Container::read_row_to`] needs room for).
    pub fn row_len(&self, row: usize) -> u64 {
        self.index.entry_ref(row).len
    }

    /// Brings a small entry's stored bytes of a mapped container into memory now, one read
    /// of a byte per page, so that a cold page is read from disk here rather than during a
    /// later copy the caller may make while holding a lock (a Python reader holds the GIL
    /// while it copies a small file). Larger entries are left alone: touching every page of
    /// one would cost more than it could save. Reads nothing outside the container's data.
    pub fn fault_in_row(&self, row: usize) {
        let Body::Mapped(bytes) = &self.body else {
            return;
        };
        let entry = self.index.entry_ref(row);
        if entry.stored_len > FAULT_IN_UP_TO || entry.offset > self.footer.data_len {
            return;
        }
        let (start, len) = (entry.offset as usize, entry.stored_len as usize);
        let Some(stored) = start
            .checked_add(len)
            .filter(|&end| end as u64 <= self.footer.data_len)
            .and_then(|end| bytes.as_slice().get(start..end))
        else {
            return;
        };
        for page in stored.chunks(PAGE) {
            std::hint::black_box(page[0]);
        }
    }

    /// Reads row `row` like [`Container::read_row`], into `dst`, which must be exactly
    /// [`Container::row_len`] bytes. An uncompressed entry of a mapped container is copied and
    /// checked in one pass (each chunk hashed from `dst` while it is still in cache), where
    /// `read_row` and a copy would pass over the bytes twice. On an error, what `dst` holds is
    /// unspecified and must not be used.
    pub fn read_row_to(&self, row: usize, dst: &mut [u8]) -> Result<()> {
        let entry = self.index.entry_ref(row);
        if dst.len() as u64 != entry.len {
            return Err(Error::corrupt(
                &self.file,
                format!(
                    "entry {:?} has {} bytes, {} were asked for",
                    display(entry.path),
                    entry.len,
                    dst.len()
                ),
            ));
        }
        let mapped_and_plain = matches!(self.body, Body::Mapped(_)) && entry.codec == Codec::None;
        if !mapped_and_plain {
            dst.copy_from_slice(&self.read_row(row)?);
            return Ok(());
        }
        if !entry.kind.is_stored() {
            return Err(Error::WrongKind {
                path: display(entry.path),
                reason: "has no bytes stored in a container",
            });
        }
        let stored = self.stored_bytes(&entry)?;
        let found = copy_hashed(&stored, dst);
        self.check(&entry, stored.len(), found)
    }

    /// A checksum mismatch unless `len` bytes hashing to `found` are what `entry` records.
    fn check(&self, entry: &EntryRef, len: usize, found: u64) -> Result<()> {
        if len as u64 != entry.len || found != entry.xxh3 {
            return Err(Error::ChecksumMismatch {
                file: self.file.clone(),
                path: display(entry.path),
                expected: entry.xxh3,
                found,
            });
        }
        Ok(())
    }

    fn stored_bytes(&self, entry: &EntryRef) -> Result<Buffer> {
        let in_range = entry
            .offset
            .checked_add(entry.stored_len)
            .is_some_and(|end| end <= self.footer.data_len);
        if !in_range {
            return Err(Error::corrupt(
                &self.file,
                format!(
                    "entry {:?} points at [{}, +{}), outside the {} data bytes",
                    display(entry.path),
                    entry.offset,
                    entry.stored_len,
                    self.footer.data_len
                ),
            ));
        }
        if entry.len > MAX_ENTRY_LEN
            || (entry.codec == Codec::None && entry.stored_len != entry.len)
        {
            return Err(Error::corrupt(
                &self.file,
                format!("entry {:?} has inconsistent lengths", display(entry.path)),
            ));
        }
        match &self.body {
            Body::Mapped(bytes) => {
                Ok(bytes.slice_with_length(entry.offset as usize, entry.stored_len as usize))
            }
            Body::Remote { store, key } => {
                let range = entry.offset..entry.offset + entry.stored_len;
                Ok(Buffer::from_vec(store.read_range(key, range)?))
            }
        }
    }

    fn decompress(&self, entry: &EntryRef, stored: &[u8]) -> Result<Buffer> {
        let out = zstd::bulk::decompress(stored, entry.len as usize).map_err(|e| {
            Error::corrupt(
                &self.file,
                format!("entry {:?}: zstd: {e}", display(entry.path)),
            )
        })?;
        Ok(Buffer::from_vec(out))
    }
}

/// Checks an index block against its footer and decodes it.
fn parse_index(index_bytes: &Buffer, footer: &Footer, file: &Path) -> Result<EntryIndex> {
    let found = xxh3_64(index_bytes);
    if found != footer.index_xxh3 {
        return Err(Error::corrupt(
            file,
            format!(
                "index checksum mismatch (footer {:016x}, index {found:016x})",
                footer.index_xxh3
            ),
        ));
    }
    let index = EntryIndex::parse(index_bytes, footer.version, file)?;
    if index.len() as u64 != footer.entry_count {
        return Err(Error::corrupt(
            file,
            format!(
                "footer counts {} entries, index holds {}",
                footer.entry_count,
                index.len()
            ),
        ));
    }
    Ok(index)
}

/// Maps a whole file read-only as an Arrow buffer that keeps the mapping alive.
pub fn map_file(path: &Path) -> Result<Buffer> {
    let file = File::open(path).ctx("open", path)?;
    let len = file.metadata().ctx("stat", path)?.len();
    if len < FOOTER_LEN as u64 {
        return Err(Error::corrupt(
            path,
            format!("{len} bytes is too short to be a sheaf file (truncated?)"),
        ));
    }
    // SAFETY: sheaf files are immutable once published (written under a temporary name and
    // renamed); the mapping is only read.
    let map = unsafe { memmap2::Mmap::map(&file) }.ctx("map", path)?;
    let ptr = NonNull::new(map.as_ptr() as *mut u8).expect("mmap of a non-empty file is non-null");
    let len = map.len();
    // SAFETY: `ptr` and `len` describe the mapping, which the Arc keeps alive as long as any
    // slice of the buffer exists.
    Ok(unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(map)) })
}

/// What a finished container looks like, for the catalog.
#[derive(Clone, Debug)]
pub struct WrittenContainer {
    /// Length of the whole file.
    pub file_len: u64,
    /// The footer written.
    pub footer: Footer,
    /// xxh3-128 of the whole file.
    pub content_id: u128,
    /// First and last entry paths.
    pub first_path: Vec<u8>,
    /// Last entry path.
    pub last_path: Vec<u8>,
}

impl WrittenContainer {
    /// The catalog row describing this container under the file name `name`.
    pub fn catalog_row(&self, name: &str) -> crate::index::CatalogRow {
        crate::index::CatalogRow {
            name: name.to_owned(),
            first_path: self.first_path.clone(),
            last_path: self.last_path.clone(),
            entry_count: self.footer.entry_count,
            file_len: self.file_len,
            index_xxh3: self.footer.index_xxh3,
            content_id: self.content_id,
            generation: 0,
        }
    }
}

/// Bytes gathered before a write to the container object. Entries this large or larger are
/// written straight from the caller's buffer: copying 100 KiB images into a buffer first was
/// one more pass over every byte on the fold's one writing thread.
const WRITE_BUFFER: usize = 64 << 10;

/// Bytes copied before they are hashed: small enough that a chunk is still in cache when the
/// hash reads it back.
const COPY_CHUNK: usize = 64 << 10;

/// Entries up to this many stored bytes are faulted in by [`Container::fault_in_row`].
const FAULT_IN_UP_TO: u64 = 64 << 10;

/// The page size the kernel maps files with (4 KiB on the machines sheaf runs on; a larger
/// page only makes some of the reads redundant).
const PAGE: usize = 4096;

/// Copies `src` into `dst` (of the same length) and returns the xxh3-64 of the bytes, hashed
/// chunk by chunk from `dst` right after each chunk is copied.
fn copy_hashed(src: &[u8], dst: &mut [u8]) -> u64 {
    if src.len() <= COPY_CHUNK {
        // xxh3's one-shot form is faster than its streaming form for small inputs.
        dst.copy_from_slice(src);
        return xxh3_64(dst);
    }
    let mut hasher = Xxh3::new();
    for (from, to) in src.chunks(COPY_CHUNK).zip(dst.chunks_mut(COPY_CHUNK)) {
        to.copy_from_slice(from);
        hasher.update(to);
    }
    hasher.digest()
}

/// Streams entries into a new container object.
pub struct ContainerWriter {
    file: PathBuf,
    out: BufWriter<Box<dyn ObjectWriter>>,
    offset: u64,
    entries: Vec<Entry>,
    hasher: ContentIdHasher,
}

impl ContainerWriter {
    /// Starts a container on `out` (a store's streamed write); `file` names it in messages.
    pub fn new(out: Box<dyn ObjectWriter>, file: PathBuf) -> Self {
        ContainerWriter {
            file,
            out: BufWriter::with_capacity(WRITE_BUFFER, out),
            offset: 0,
            entries: Vec::new(),
            hasher: ContentIdHasher::new(),
        }
    }

    /// Creates (replacing) the container file at a local `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let out = crate::store::LocalStore::new(dir).create(&name)?;
        Ok(Self::new(out, path.to_path_buf()))
    }

    /// Adds an entry. `stored` is what goes into the container (empty for directories and
    /// external files); the entry's offset and stored length are set here.
    ///
    /// Entries must arrive in path order.
    pub fn add(&mut self, mut entry: Entry, stored: &[u8]) -> Result<()> {
        if let Some(last) = self.entries.last() {
            assert!(
                cmp_paths(&last.path, &entry.path).is_lt(),
                "container entries must be added in path order"
            );
        }
        if self.entries.len() == MAX_ENTRIES {
            return Err(Error::Refused {
                path: self.file.clone(),
                reason: format!("a container holds at most {MAX_ENTRIES} entries"),
            });
        }
        entry.stored_len = stored.len() as u64;
        // SPEC: an entry that stores nothing has offset 0, whatever its kind.
        entry.offset = if stored.is_empty() { 0 } else { self.offset };
        self.write(stored)?;
        self.entries.push(entry);
        Ok(())
    }

    /// The container's name in messages.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Entries added so far.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).ctx("write", &self.file)?;
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// Writes padding, index and footer, and makes the container durable and visible.
    pub fn finish(mut self) -> Result<WrittenContainer> {
        let data_len = self.offset;
        let padding = (INDEX_ALIGNMENT - data_len % INDEX_ALIGNMENT) % INDEX_ALIGNMENT;
        self.write(&vec![0u8; padding as usize])?;
        let index = encode_index(&self.entries)?;
        let footer = Footer {
            index_offset: self.offset,
            index_len: index.len() as u64,
            index_xxh3: xxh3_64(&index),
            entry_count: self.entries.len() as u64,
            data_len,
            version: FORMAT_VERSION,
            kind: FileKind::Container,
        };
        self.write(&index)?;
        self.write(&footer.encode())?;
        let out = self
            .out
            .into_inner()
            .map_err(|e| Error::io("write", &self.file, e.into_error()))?;
        out.finish()?;
        let path_of = |e: Option<&Entry>| e.map(|e| e.path.clone()).unwrap_or_default();
        Ok(WrittenContainer {
            file_len: self.offset,
            footer,
            content_id: self.hasher.digest128(),
            first_path: path_of(self.entries.first()),
            last_path: path_of(self.entries.last()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_hashed_in_chunks_is_the_copy_and_its_one_shot_hash() {
        let source: Vec<u8> = (0..300_000u32).map(|i| (i * 31 % 257) as u8).collect();
        let edges = [
            COPY_CHUNK - 1,
            COPY_CHUNK,
            COPY_CHUNK + 1,
            3 * COPY_CHUNK + 5,
        ];
        for len in [0, 1, 100].into_iter().chain(edges).chain([source.len()]) {
            let mut copy = vec![0u8; len];
            let hash = copy_hashed(&source[..len], &mut copy);
            assert_eq!(copy, source[..len], "len {len}");
            assert_eq!(hash, xxh3_64(&source[..len]), "len {len}");
        }
    }
}
