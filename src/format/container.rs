//! Containers: entry bytes, then the index block, then the footer. Reading maps the file, uses
//! the index in place and reads entries as the file's read policy says (see store::mapped);
//! writing streams entries and appends index and footer at the end.
//!
//! See formats/SPEC.md, "Containers".

use super::entry::{encode_index, Codec, Entry, EntryIndex, EntryRef, MAX_ENTRIES};
use super::footer::{FileKind, Footer, FOOTER_LEN, INDEX_ALIGNMENT};
use super::path::{cmp_paths, display};
use super::{FORMAT_VERSION, MAX_ENTRY_LEN};
use crate::checksum::{xxh3_64, ContentId, Xxh3};
use crate::error::{Error, IoContext, KindProblem, Result};
use crate::store::{MappedFile, ObjectWriter, OpenAs, ReadPolicy, Store, StoredFile, PAGE};
use arrow_buffer::Buffer;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
// A container's content id is the xxh3-128 of the whole file.

/// Where a container's bytes are read from.
#[derive(Debug)]
enum Body {
    /// Bytes in memory: entries are slices of them.
    Memory(Buffer),
    /// A file of a store: mapped when local (the index read in place, entries as its policy
    /// says), else read by ranges (each entry costs one).
    File(StoredFile),
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

/// How much of a local container a content hash reads at a time, asking the kernel for the
/// next part while it hashes this one.
const HASH_STEP: u64 = 8 << 20;

impl Container {
    /// Maps the container file at `path` for random access and validates its footer and index.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, ReadPolicy::default())
    }

    /// Maps the container file at `path`, to be read as `policy` says, and validates its
    /// footer and index.
    pub fn open_with(path: &Path, policy: ReadPolicy) -> Result<Self> {
        Self::from_mapped(MappedFile::open(path, policy)?)
    }

    /// Validates the footer and index of a mapped container file.
    fn from_mapped(mapped: MappedFile) -> Result<Self> {
        let path = mapped.path().to_path_buf();
        let path = path.as_path();
        let len = mapped.len();
        if len < FOOTER_LEN as u64 {
            return Err(too_short(path, len));
        }
        let bytes = mapped.bytes();
        let footer = Footer::decode(
            &bytes[bytes.len() - FOOTER_LEN..],
            len,
            FileKind::Container,
            path,
        )?;
        // The index is hashed whole right below: one request for all of it, not a fault a page.
        mapped.will_need(footer.index_offset..len);
        let index = parse_index(&index_slice(bytes, &footer), &footer, path)?;
        Ok(Container {
            file: path.to_path_buf(),
            body: Body::File(StoredFile::Mapped(mapped)),
            footer,
            index,
        })
    }

    /// Opens the container `key` of a store: mapped when the store is local (read as `policy`
    /// says), otherwise by fetching its tail (footer and index) with at most two ranged reads.
    /// `file_len`, when the catalog gives it, saves a length request.
    pub fn open_in(
        store: &Arc<dyn Store>,
        key: &str,
        file_len: Option<u64>,
        policy: ReadPolicy,
    ) -> Result<Self> {
        match crate::store::open_file(store, key.as_bytes(), OpenAs::Mapped(policy), file_len)? {
            StoredFile::Mapped(mapped) => Self::from_mapped(mapped),
            other => Self::from_ranged(other),
        }
    }

    /// Validates the footer and index of a container file read by ranges: its tail (footer
    /// and index) takes at most two.
    fn from_ranged(stored: StoredFile) -> Result<Self> {
        let file = PathBuf::from(stored.uri());
        let len = stored.len();
        if len < FOOTER_LEN as u64 {
            return Err(too_short(&file, len));
        }
        let tail_start = len - len.min(REMOTE_TAIL);
        let tail = stored.read_range(tail_start..len)?;
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
            Buffer::from_vec(stored.read_range(footer.index_offset..len - FOOTER_LEN as u64)?)
        };
        let index = parse_index(&index_bytes, &footer, &file)?;
        Ok(Container {
            file,
            body: Body::File(stored),
            footer,
            index,
        })
    }

    /// Validates a container held in memory as `bytes`.
    pub fn from_buffer(bytes: Buffer, file: PathBuf) -> Result<Self> {
        let file_len = bytes.len() as u64;
        let tail = &bytes[bytes.len().saturating_sub(FOOTER_LEN)..];
        let footer = Footer::decode(tail, file_len, FileKind::Container, &file)?;
        let index = parse_index(&index_slice(&bytes, &footer), &footer, &file)?;
        Ok(Container {
            file,
            body: Body::Memory(bytes),
            footer,
            index,
        })
    }

    /// The file this container was read from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The mapped local file behind this container, when it is one.
    pub fn local_file(&self) -> Option<&MappedFile> {
        match &self.body {
            Body::File(StoredFile::Mapped(mapped)) => Some(mapped),
            _ => None,
        }
    }

    /// True once the container's mapped file was found cut short under the mapping (by
    /// another program) during a read: see [`MappedFile::faulted`]. Reads check it after
    /// they are done; a lookup that saw it must look again elsewhere.
    pub fn faulted(&self) -> bool {
        self.local_file().is_some_and(MappedFile::faulted)
    }

    /// An error when the mapping faulted (see [`Container::faulted`]): what was just read from
    /// it, checksum or not, is not the file's.
    pub fn check_not_faulted(&self) -> Result<()> {
        match self.faulted() {
            false => Ok(()),
            true => Err(Error::corrupt(
                &self.file,
                "was cut short while it was read (truncated by another program)",
            )),
        }
    }

    /// The decoded footer.
    pub fn footer(&self) -> &Footer {
        &self.footer
    }

    /// The entry index.
    pub fn index(&self) -> &EntryIndex {
        &self.index
    }

    /// xxh3-128 of the whole file: the container's content id. A local file is hashed in
    /// steps, each asked of the kernel while the one before is hashed; a remote container is
    /// read whole, in chunks.
    pub fn content_id(&self) -> Result<u128> {
        match &self.body {
            Body::Memory(bytes) => Ok(crate::checksum::content_id(bytes)),
            Body::File(StoredFile::Mapped(mapped)) => {
                let mut hasher = ContentId::new();
                let len = mapped.len();
                mapped.will_need(0..HASH_STEP.min(len));
                for start in (0..len).step_by(HASH_STEP as usize) {
                    let end = (start + HASH_STEP).min(len);
                    mapped.will_need(end..(end + HASH_STEP).min(len));
                    hasher.update(&mapped.bytes()[start as usize..end as usize]);
                }
                Ok(hasher.digest())
            }
            Body::File(stored) => {
                let mut hasher = ContentId::new();
                stored.stream(&mut |chunk| {
                    hasher.update(chunk);
                    Ok(())
                })?;
                Ok(hasher.digest())
            }
        }
    }

    /// The original bytes of row `row` (a file's content or a symlink's target), checked
    /// against the index checksum. Uncompressed entries of a container in memory, or mapped
    /// and kept in the page cache, are returned without a copy.
    pub fn read_row(&self, row: usize) -> Result<Buffer> {
        let entry = self.index.entry_ref(row);
        let stored = self.stored_bytes(&entry)?;
        let bytes = match entry.codec {
            Codec::None => stored,
            Codec::Zstd => self.decompress(&entry, &stored)?,
        };
        self.check(&entry, bytes.len(), xxh3_64(&bytes))?;
        self.check_not_faulted()?;
        Ok(bytes)
    }

    /// Row `row`'s bytes as the container stores them (compressed when its codec says so),
    /// once checked to decode to the bytes its checksum names: what a compaction copies into
    /// a new container without compressing again.
    pub fn read_row_stored(&self, row: usize) -> Result<Buffer> {
        let entry = self.index.entry_ref(row);
        let stored = self.stored_bytes(&entry)?;
        let found = match entry.codec {
            Codec::None => (stored.len(), xxh3_64(&stored)),
            Codec::Zstd => {
                let bytes = self.decompress(&entry, &stored)?;
                (bytes.len(), xxh3_64(&bytes))
            }
        };
        self.check(&entry, found.0, found.1)?;
        self.check_not_faulted()?;
        Ok(stored)
    }

    /// The length of row `row`'s original bytes, as its index gives it (what
    /// [`Container::read_row_to`] needs room for).
    pub fn row_len(&self, row: usize) -> u64 {
        self.index.entry_ref(row).len
    }

    /// Brings a small entry's stored bytes into memory now, so that a cold page is read from
    /// the device here rather than during a later copy the caller may make while holding a
    /// lock (a Python reader holds the GIL while it copies a small file). Larger entries are
    /// left alone: touching every page of one would cost more than it could save. Reads
    /// nothing outside the container's data.
    pub fn fault_in_row(&self, row: usize) {
        let entry = self.index.entry_ref(row);
        if entry.stored_len > FAULT_IN_UP_TO {
            return;
        }
        let Ok(range) = self.stored_range(&entry) else {
            return;
        };
        match &self.body {
            Body::Memory(bytes) => {
                for page in bytes[range.start as usize..range.end as usize].chunks(PAGE as usize) {
                    std::hint::black_box(page[0]);
                }
            }
            Body::File(StoredFile::Mapped(mapped)) => mapped.fault_in(range),
            Body::File(_) => {}
        }
    }

    /// Asks for row `row`'s stored bytes to be read into memory in the background, when the
    /// container is a local file: a reader that will soon read the row (a mount that was just
    /// asked to look it up) overlaps the device's latency with its own work.
    pub fn prefetch_row(&self, row: usize) {
        if let (Body::File(StoredFile::Mapped(mapped)), Ok(range)) =
            (&self.body, self.stored_range(&self.index.entry_ref(row)))
        {
            mapped.will_need(range);
        }
    }

    /// Reads row `row` like [`Container::read_row`], into `dst`, which must be exactly
    /// [`Container::row_len`] bytes. An uncompressed entry is copied and checked in one pass
    /// (each chunk hashed from `dst` while it is still in cache), where `read_row` and a copy
    /// would pass over the bytes twice. On an error, what `dst` holds is unspecified and must
    /// not be used.
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
        if entry.codec != Codec::None {
            dst.copy_from_slice(&self.read_row(row)?);
            return Ok(());
        }
        let stored = self.stored_bytes(&entry)?;
        let found = copy_hashed(&stored, dst);
        self.check(&entry, stored.len(), found)?;
        self.check_not_faulted()
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

    /// Where `entry`'s stored bytes lie in the file, checked against the data section and the
    /// entry's own lengths.
    fn stored_range(&self, entry: &EntryRef) -> Result<Range<u64>> {
        if !entry.kind.is_stored() {
            return Err(Error::WrongKind {
                path: display(entry.path),
                problem: KindProblem::NotStored,
            });
        }
        let end = entry
            .offset
            .checked_add(entry.stored_len)
            .filter(|&end| end <= self.footer.data_len);
        let Some(end) = end else {
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
        };
        if entry.len > MAX_ENTRY_LEN
            || (entry.codec == Codec::None && entry.stored_len != entry.len)
        {
            return Err(Error::corrupt(
                &self.file,
                format!("entry {:?} has inconsistent lengths", display(entry.path)),
            ));
        }
        Ok(entry.offset..end)
    }

    fn stored_bytes(&self, entry: &EntryRef) -> Result<Buffer> {
        let range = self.stored_range(entry)?;
        match &self.body {
            Body::Memory(bytes) => {
                Ok(bytes
                    .slice_with_length(range.start as usize, (range.end - range.start) as usize))
            }
            Body::File(StoredFile::Mapped(mapped)) => mapped.read(range),
            Body::File(stored) => Ok(Buffer::from_vec(stored.read_range(range)?)),
        }
    }

    fn decompress(&self, entry: &EntryRef, stored: &[u8]) -> Result<Buffer> {
        // One zstd frame and nothing else (formats/SPEC.md): no skippable frames, no second
        // frame, nothing after it, so an entry has one encoding.
        if !is_one_zstd_frame(stored) {
            return Err(Error::corrupt(
                &self.file,
                format!(
                    "entry {:?}: the stored bytes are not exactly one zstd frame",
                    display(entry.path)
                ),
            ));
        }
        let out = zstd::bulk::decompress(stored, entry.len as usize).map_err(|e| {
            Error::corrupt(
                &self.file,
                format!("entry {:?}: zstd: {e}", display(entry.path)),
            )
        })?;
        Ok(Buffer::from_vec(out))
    }
}

/// True when `stored` is exactly one zstd frame (not a skippable one), with nothing after it.
fn is_one_zstd_frame(stored: &[u8]) -> bool {
    const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
    stored.starts_with(&ZSTD_MAGIC)
        && zstd::zstd_safe::find_frame_compressed_size(stored) == Ok(stored.len())
}

/// The index block of a whole file's `bytes`, as its (decoded, so in-range) footer places it.
fn index_slice(bytes: &Buffer, footer: &Footer) -> Buffer {
    bytes.slice_with_length(footer.index_offset as usize, footer.index_len as usize)
}

fn too_short(file: &Path, len: u64) -> Error {
    Error::corrupt(
        file,
        format!("{len} bytes is too short to be a sheaf file (truncated?)"),
    )
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
    /// A Bloom filter over every entry path (see `format::filter`).
    pub filter: Vec<u8>,
}

impl WrittenContainer {
    /// The catalog row describing this container under the file name `name`, as written by
    /// generation `generation`. Containers of generation 0 (a fold's first) carry no filter:
    /// nothing older sits under them, so a lookup that reaches them opens them anyway.
    pub fn catalog_row(&self, name: &str, generation: u32) -> crate::format::CatalogRow {
        crate::format::CatalogRow {
            name: name.to_owned(),
            first_path: self.first_path.clone(),
            last_path: self.last_path.clone(),
            entry_count: self.footer.entry_count,
            file_len: self.file_len,
            index_xxh3: self.footer.index_xxh3,
            content_id: self.content_id,
            generation,
            filter: match generation {
                0 => Vec::new(),
                _ => self.filter.clone(),
            },
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
    hasher: ContentId,
}

impl ContainerWriter {
    /// Starts a container on `out` (a store's streamed write); `file` names it in messages.
    pub fn new(out: Box<dyn ObjectWriter>, file: PathBuf) -> Self {
        ContainerWriter {
            file,
            out: BufWriter::with_capacity(WRITE_BUFFER, out),
            offset: 0,
            entries: Vec::new(),
            hasher: ContentId::new(),
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
            content_id: self.hasher.digest(),
            first_path: path_of(self.entries.first()),
            last_path: path_of(self.entries.last()),
            filter: super::filter::build(self.entries.iter().map(|e| e.path.as_slice())),
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
