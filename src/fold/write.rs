//! Writing one container: entries are read, hashed and compressed in parallel in bounded
//! batches while a writer appends the previous batch in path order.

use super::plan::{ContainerLimits, Cutter};
use super::walk::SourceEntry;
use super::{Compression, FoldOptions};
use crate::checksum::{xxh3_64, BlockHasher};
use crate::error::{Error, IoContext, Result};
use crate::format::container::WrittenContainer;
use crate::format::entry::EXTERNAL_BLOCK;
use crate::format::path as index_path;
use crate::format::{Codec, ContainerWriter, Entry, EntryKind};
use crate::progress::Progress;
use crate::store::{FileMeta, ObjectWriter, Store};
use rayon::prelude::*;
use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{Scope, ScopedJoinHandle};

/// Most entry bytes read ahead of the writer in one batch.
const BATCH_BYTES: u64 = 32 << 20;

/// Most entries in one batch.
const BATCH_ENTRIES: usize = 2048;

/// Where entries come from and where large files go.
pub struct Sources<'a> {
    /// The tree being folded.
    pub src: SourceTree<'a>,
    /// Where external files are copied (the dataset's store), or `None` when they stay in
    /// place.
    pub copy_externals_to: Option<&'a dyn Store>,
}

/// Where the tree being folded lives.
#[derive(Clone, Copy)]
pub enum SourceTree<'a> {
    /// A local directory.
    Local(&'a Path),
    /// Objects of a store (files and directories only).
    Store(&'a dyn Store),
}

impl<'a> SourceTree<'a> {
    /// The local directory `dir` when there is one (walked and read with the filesystem's own
    /// calls), else `store`.
    pub fn of(dir: Option<&'a Path>, store: &'a dyn Store) -> Self {
        match dir {
            Some(dir) => SourceTree::Local(dir),
            None => SourceTree::Store(store),
        }
    }
}

impl SourceTree<'_> {
    /// Reads a small file whole; `dir` is the reading thread's [`OpenDir`]. A local file
    /// that has grown to `threshold` bytes or more since the walk measured it is an error: it
    /// is no longer a small file, and it may still be growing.
    fn read(&self, source: &SourceEntry, dir: &mut OpenDir, threshold: u64) -> Result<Vec<u8>> {
        match self {
            SourceTree::Local(root) => {
                let abs = || root.join(OsStr::from_bytes(source.source_path()));
                let mut file = dir.open(root, source.source_path()).ctx("open", abs())?;
                let limit = threshold.saturating_sub(1);
                crate::store::read_expected(&mut file, source.len, limit).ctx("read", abs())
            }
            SourceTree::Store(store) => store.read(&remote_key(*store, source.source_path())?),
        }
    }

    /// Streams a file through `sink` in bounded chunks.
    fn stream(
        &self,
        source: &SourceEntry,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        match self {
            SourceTree::Local(root) => {
                crate::store::stream_file(
                    &root.join(OsStr::from_bytes(source.source_path())),
                    sink,
                )?;
                Ok(())
            }
            SourceTree::Store(store) => {
                let key = remote_key(*store, source.source_path())?;
                let len = store.len(&key)?.ok_or_else(|| Error::NotFound {
                    path: store.uri(&key),
                })?;
                store.read_chunks(&key, len, sink)
            }
        }
    }
}

/// The directory of the file a reading thread opened last. Once a second file of the same
/// directory comes, the directory is opened and its files are opened by name relative to it
/// (`openat`): opened by their whole path, each file costs the kernel a walk from the root
/// through every directory above it, a part of the fold of a tree of tiny files worth saving
/// (BENCHMARKS.md has the figures). A directory holding a single file is never opened.
#[derive(Default)]
struct OpenDir {
    /// The directory's path relative to the source root.
    parent: Vec<u8>,
    fd: Option<OwnedFd>,
}

impl OpenDir {
    /// Opens `path` (relative to `root`) for reading, never through a symlink in its place.
    fn open(&mut self, root: &Path, path: &[u8]) -> std::io::Result<File> {
        let parent = index_path::parent(path);
        if self.parent != parent {
            // Reuses the buffer: a fold changes directory once per directory per batch.
            self.parent.clear();
            self.parent.extend_from_slice(parent);
            self.fd = None;
            return crate::store::open_nofollow(&root.join(OsStr::from_bytes(path)));
        }
        if self.fd.is_none() {
            let dir = root.join(OsStr::from_bytes(parent));
            self.fd = Some(
                fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_DIRECTORY)
                    .open(dir)?
                    .into(),
            );
        }
        let fd = self.fd.as_ref().expect("the directory was opened");
        open_in(fd, index_path::file_name(path))
    }
}

/// Opens the file `name` of the open directory `dir` for reading, not through a symlink.
fn open_in(dir: &OwnedFd, name: &[u8]) -> std::io::Result<File> {
    let name = CString::new(name).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; `dir` is open.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `openat` returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// What a container's writer is handed.
enum Queued {
    /// The next entries, in path order.
    Entries(Vec<SourceEntry>),
    /// No more entries: the container is complete and may be published. A queue that closes
    /// without it (the fold failed or stopped) abandons the container, which is never
    /// published.
    End,
}

/// An entry ready to append: its index row and the bytes to store.
struct Prepared {
    entry: Entry,
    stored: Vec<u8>,
}

/// A container being written while its entries still arrive from the walk: entries are
/// gathered into read batches, each batch is read, hashed and compressed in parallel on one
/// thread while another appends the batch before it, so reading starts with the container's
/// first entries instead of after its last is found.
pub struct ContainerStream<'scope> {
    batches: SyncSender<Queued>,
    batch: Vec<SourceEntry>,
    cutter: Cutter,
    /// False once the writer has stopped on an error ([`ContainerStream::finish`] returns it).
    running: bool,
    uri: String,
    written: ScopedJoinHandle<'scope, Result<WrittenContainer>>,
}

impl<'scope> ContainerStream<'scope> {
    /// Starts writing a new container `key` of `store` on threads of `scope`.
    pub fn start<'data: 'scope>(
        scope: &'scope Scope<'scope, '_>,
        store: &'data dyn Store,
        key: String,
        sources: &'data Sources<'data>,
        options: &'data FoldOptions,
        progress: &'data dyn Progress,
    ) -> Result<Self> {
        let uri = store.uri(&key);
        let writer = ContainerWriter::new(store.create(&key)?, PathBuf::from(&uri));
        // One batch queued while one is read and one written: about three batches in memory.
        let (batches, queued) = sync_channel::<Queued>(1);
        let written =
            scope.spawn(move || write_batches(writer, queued, sources, options, progress));
        Ok(ContainerStream {
            batches,
            batch: Vec::new(),
            cutter: Cutter::new(ContainerLimits {
                bytes: BATCH_BYTES,
                entries: BATCH_ENTRIES,
            }),
            running: true,
            uri,
            written,
        })
    }

    /// Adds the next entry (in path order). False when the writer has stopped on an error:
    /// call [`ContainerStream::finish`] for it.
    pub fn push(&mut self, entry: SourceEntry) -> bool {
        if self.cutter.starts_group(&entry) {
            self.send_batch();
        }
        self.batch.push(entry);
        self.running
    }

    fn send_batch(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        self.send(Queued::Entries(batch));
    }

    fn send(&mut self, queued: Queued) {
        // A closed queue means the writer stopped on an error.
        self.running = self.running && self.batches.send(queued).is_ok();
    }

    /// Writes what is left; the container is visible, durable and whole when this returns.
    /// A stream dropped without this call is abandoned: its container is never published.
    pub fn finish(mut self) -> Result<WrittenContainer> {
        if !self.batch.is_empty() {
            self.send_batch();
        }
        self.send(Queued::End);
        let running = self.running;
        drop(self.batches);
        let written = self
            .written
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
        if !running {
            // The writer stops early only on an error it returns; should it ever not, the
            // container lacks entries and must not be published.
            return Err(Error::Refused {
                path: PathBuf::from(self.uri),
                reason: "the container's writer stopped before its last entry".into(),
            });
        }
        Ok(written)
    }
}

/// Writes `entries` (in path order) to a new container `key` of `store`; it becomes visible,
/// durable and whole when this returns.
pub fn write_container(
    store: &dyn Store,
    key: String,
    entries: Vec<SourceEntry>,
    sources: &Sources,
    options: &FoldOptions,
    progress: &dyn Progress,
) -> Result<WrittenContainer> {
    std::thread::scope(|scope| {
        let mut stream = ContainerStream::start(scope, store, key, sources, options, progress)?;
        for entry in entries {
            if !stream.push(entry) {
                break;
            }
        }
        stream.finish()
    })
}

/// Reads, hashes and compresses each batch of `queued` in parallel while the batch before it is
/// appended to `writer`, in order; then closes the container, if the queue ended with
/// [`Queued::End`]. Otherwise the writer is dropped, which removes what it wrote.
fn write_batches(
    mut writer: ContainerWriter,
    queued: Receiver<Queued>,
    sources: &Sources,
    options: &FoldOptions,
    progress: &dyn Progress,
) -> Result<WrittenContainer> {
    let (tx, rx) = sync_channel::<Result<Vec<Prepared>>>(1);
    let complete = std::thread::scope(|scope| {
        let reading = scope.spawn(move || {
            for queued in queued {
                let Queued::Entries(batch) = queued else {
                    return true;
                };
                let prepared = batch
                    .par_iter()
                    .map_init(OpenDir::default, |dir, e| {
                        prepare(e, dir, sources, options, progress)
                    })
                    .collect::<Result<Vec<_>>>();
                let failed = prepared.is_err();
                if tx.send(prepared).is_err() || failed {
                    break;
                }
            }
            false
        });
        for batch in rx {
            for item in batch? {
                writer.add(item.entry, &item.stored)?;
            }
        }
        Ok::<_, crate::error::Error>(
            reading
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
        )
    })?;
    if !complete {
        return Err(Error::Refused {
            path: writer.file().to_path_buf(),
            reason: "the fold stopped before the container's last entry; it was not published"
                .into(),
        });
    }
    writer.finish()
}

fn prepare(
    source: &SourceEntry,
    dir: &mut OpenDir,
    sources: &Sources,
    options: &FoldOptions,
    progress: &dyn Progress,
) -> Result<Prepared> {
    let mut entry = Entry {
        path: source.path.clone(),
        kind: source.kind,
        offset: 0,
        stored_len: 0,
        len: 0,
        codec: Codec::None,
        xxh3: 0,
        mode: source.mode,
        mtime_ns: source.mtime_ns,
        block_sums: None,
    };
    let mut stored = Vec::new();
    match source.kind {
        // A walk yields no tombstones; they are written by `sheaf rm` alone.
        EntryKind::Dir | EntryKind::Tombstone => {}
        EntryKind::Symlink => {
            let SourceTree::Local(root) = sources.src else {
                unreachable!("stores hold no symlinks")
            };
            let abs = root.join(OsStr::from_bytes(source.source_path()));
            stored = fs::read_link(&abs)
                .ctx("read symlink", &abs)?
                .into_os_string()
                .into_vec();
            (entry.len, entry.xxh3) = (stored.len() as u64, xxh3_64(&stored));
        }
        EntryKind::File => {
            let content = sources.src.read(source, dir, options.threshold)?;
            (entry.len, entry.xxh3) = (content.len() as u64, xxh3_64(&content));
            (entry.codec, stored) = compress(content, options.compression);
        }
        EntryKind::External => {
            let (len, xxh3, block_sums) = hash_and_copy(sources, source)?;
            (entry.len, entry.xxh3) = (len, xxh3);
            entry.block_sums = Some(block_sums.into());
        }
    }
    progress.advance(1, entry.len);
    Ok(Prepared { entry, stored })
}

/// Applies the fold's compression setting to one entry's bytes.
fn compress(content: Vec<u8>, compression: Compression) -> (Codec, Vec<u8>) {
    let (level, keep_only_if_smaller) = match compression {
        Compression::None => return (Codec::None, content),
        Compression::Zstd(level) => (level, false),
        Compression::Auto(level) => (level, true),
    };
    match zstd::bulk::compress(&content, level) {
        Ok(packed) if !keep_only_if_smaller || packed.len() < content.len() => {
            (Codec::Zstd, packed)
        }
        _ => (Codec::None, content),
    }
}

/// Where a large file is being copied to while it is hashed: nowhere in place, otherwise a
/// file of the dataset's store that gets the source's mode and mtime where the store keeps them.
enum CopyTarget {
    Nowhere,
    Store {
        out: Box<dyn ObjectWriter>,
        uri: String,
    },
}

impl CopyTarget {
    fn open(copy_to: Option<&dyn Store>, source: &SourceEntry) -> Result<Self> {
        let Some(store) = copy_to else {
            return Ok(CopyTarget::Nowhere);
        };
        Ok(CopyTarget::Store {
            out: store.create_file(&source.path, file_meta(source))?,
            uri: crate::store::uri_of(store, &source.path),
        })
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        match self {
            CopyTarget::Nowhere => Ok(()),
            CopyTarget::Store { out, uri } => out.write_all(chunk).ctx("write", uri.as_str()),
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            CopyTarget::Nowhere => Ok(()),
            CopyTarget::Store { out, .. } => out.finish(),
        }
    }
}

/// What a copy of `source` keeps besides its bytes.
fn file_meta(source: &SourceEntry) -> FileMeta {
    FileMeta {
        mode: source.mode,
        mtime_ns: source.mtime_ns,
    }
}

/// Streams a large file once, hashing it and, when folding to a new root, copying it into the
/// dataset's store. Returns its length, xxh3 and block checksums.
fn hash_and_copy(sources: &Sources, source: &SourceEntry) -> Result<(u64, u64, Vec<u64>)> {
    let mut target = CopyTarget::open(sources.copy_externals_to, source)?;
    let mut hasher = BlockHasher::new(EXTERNAL_BLOCK);
    sources.src.stream(source, &mut |chunk| {
        hasher.update(chunk);
        target.write(chunk)
    })?;
    target.finish()?;
    Ok(hasher.finish())
}

/// The store key of an entry path: object stores and HDFS need UTF-8 names.
fn remote_key(store: &dyn Store, path: &[u8]) -> Result<String> {
    crate::store::utf8_file_key(store.uri(""), path).map(str::to_owned)
}

/// True when a resumed fold need not copy an external file again: the dataset's store already
/// holds a finished copy of it (see [`Store::holds_copy`]).
pub fn external_copy_is_current(store: &dyn Store, source: &SourceEntry) -> bool {
    store.holds_copy(&source.path, source.len, file_meta(source))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;
    use crate::store::LocalStore;

    fn file_entry(path: &str, len: u64) -> SourceEntry {
        SourceEntry::test_file(path, len)
    }

    /// Writes `files` files into `src`, then streams them into container `key` of a store
    /// over `out`, finishing the stream only when `finish` is set.
    fn stream(src: &Path, out: &Path, files: usize, finish: bool) -> Option<WrittenContainer> {
        let store = LocalStore::new(out);
        let sources = Sources {
            src: SourceTree::Local(src),
            copy_externals_to: None,
        };
        let options = FoldOptions::default();
        std::thread::scope(|scope| {
            let mut stream = ContainerStream::start(
                scope,
                &store,
                "c.sheaf".into(),
                &sources,
                &options,
                &Silent,
            )
            .unwrap();
            for i in 0..files {
                let name = format!("f{i:05}");
                fs::write(src.join(&name), name.as_bytes()).unwrap();
                assert!(stream.push(file_entry(&name, name.len() as u64)));
            }
            finish.then(|| stream.finish().unwrap())
        })
    }

    #[test]
    fn files_are_opened_relative_to_their_directory_and_never_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        for path in ["top", "a/x", "a/y", "a/z", "a/b/w"] {
            fs::write(root.join(path), path).unwrap();
        }
        std::os::unix::fs::symlink("x", root.join("a/link")).unwrap();
        let mut dir = OpenDir::default();
        // Alternating directories, then three files of one: the second and third are opened
        // with `openat`.
        for path in ["top", "a/x", "a/b/w", "a/x", "a/y", "a/z"] {
            let mut got = String::new();
            let mut file = dir.open(root, path.as_bytes()).unwrap();
            std::io::Read::read_to_string(&mut file, &mut got).unwrap();
            assert_eq!(got, path);
        }
        assert!(dir.fd.is_some(), "the directory of a second file is opened");
        let refused = dir.open(root, b"a/link").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ELOOP));
        let missing = dir.open(root, b"a/gone").unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        // A first file of a directory is opened by its path, also never through a symlink.
        let mut fresh = OpenDir::default();
        let refused = fresh.open(root, b"a/link").unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn a_stream_dropped_before_finish_publishes_nothing_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
        fs::create_dir_all(&src).unwrap();
        fs::create_dir_all(&out).unwrap();
        // More than one read batch, so the writer has appended some entries when it stops.
        assert!(stream(&src, &out, BATCH_ENTRIES + 10, false).is_none());
        let left: Vec<_> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "an abandoned container left {left:?}");

        let written = stream(&src, &out, BATCH_ENTRIES + 10, true).unwrap();
        assert_eq!(written.footer.entry_count, (BATCH_ENTRIES + 10) as u64);
        assert!(out.join("c.sheaf").is_file());
    }
}
