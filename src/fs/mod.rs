//! The read-only FUSE filesystem over the reader: a folded dataset served as the tree it was
//! folded from, every lookup answered from the catalog and container indexes.
//!
//! Inode numbers come from where an entry sits, not from a table: the root is 1 and the entry
//! at row `r` of container `c` is `2 + base + (entries before c) + r`, so the namespace is never
//! loaded into memory and numbers stay stable for the life of the mount. A generation never
//! changes, so the kernel may keep entries, attributes and pages for as long as it likes.
//!
//! A mount that follows new generations (`refresh`) keeps every inode it handed out meaning
//! what it meant: a new generation that only adds containers (an append, an rm) keeps the old
//! rows where they were, so old numbers stay and new entries get new ones; one that rewrote
//! them (a compaction) is served under a new `base`, while the generation it replaced keeps
//! answering for its own numbers, so a file already open keeps reading its old bytes. The
//! kernel is told to forget the names the new generations changed (FUSE notifications).
//!
//! Files are never opened in the daemon: the first `open` is answered ENOSYS, which tells the
//! kernel to open files itself from then on (keeping their page cache), so a warm read costs no
//! round trip to this process at all. Reads therefore arrive by inode: a folded entry is read
//! and checked whole on its first read request and kept among the few recently read entries
//! until its last byte has been served; a large external file is read by the blocks a request
//! touches, each checked against its checksum in the index.

use crate::error::Error;
use crate::format::path::{self, SEPARATOR};
use crate::format::{Entry, EntryKind};
use crate::read::{root_entry, Dataset, Location};
use arrow_buffer::Buffer;
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, Request,
};
use std::collections::{HashMap, VecDeque};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

mod routed;
pub use routed::{Refreshed, RoutedFs, RoutedRefresher, RoutedShared};

/// How long the kernel may trust entries and attributes: a published dataset never changes.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// Inodes at and above this name directories an index implies without holding them.
const SYNTHETIC_BASE: u64 = 1 << 62;

const ROOT: u64 = 1;

/// How many checked entries are kept between the read requests of one file (the kernel
/// splits a file into requests of at most 128 KiB to 1 MiB; entries are at most 4 MiB).
const RECENT_ENTRIES: usize = 64;

/// The read-ahead this mount asks the kernel for, in KiB: the fold's threshold, so a folded
/// file is asked for whole at its first read (in requests of up to 1 MiB sent together)
/// instead of 128 KiB at a time, one round trip after another. Read-ahead stops at a file's
/// end, and a read at a random place in a large file reads what it asks, so no more is read.
const READ_AHEAD_KIB: u64 = 4096;

/// Raises the kernel's read-ahead for the FUSE mount at `mountpoint` to 4 MiB.
/// The kernel caps a FUSE mount's read-ahead at 128 KiB when it connects, and only its
/// per-mount setting in sysfs (root's to change) lifts it. Call it from a thread other than
/// the session's, once the session serves: the `stat` waits for the connection to be set up,
/// which would otherwise cap the setting again.
pub fn widen_read_ahead(mountpoint: &std::path::Path) -> std::io::Result<()> {
    std::fs::write(read_ahead_setting(mountpoint)?, READ_AHEAD_KIB.to_string())
}

/// The sysfs file holding the kernel's read-ahead (KiB) for the mount at `mountpoint`.
pub fn read_ahead_setting(mountpoint: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint)?.dev();
    Ok(format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    )
    .into())
}

/// A directory listing taken at opendir, so readdir resumes at any offset.
type Listing = Vec<(u64, FileType, OsString)>;

/// Open directories: the listing each `opendir` took, by handle, until `releasedir`.
#[derive(Default)]
struct Handles {
    listings: RwLock<HashMap<u64, Arc<Listing>>>,
    next: AtomicU64,
}

impl Handles {
    fn add(&self, listing: Listing) -> FileHandle {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.listings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(listing));
        FileHandle(fh)
    }

    fn get(&self, fh: FileHandle) -> Option<Arc<Listing>> {
        self.listings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&u64::from(fh))
            .cloned()
    }

    fn remove(&self, fh: FileHandle) {
        self.listings
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&u64::from(fh));
    }

    /// Answers `readdir` of handle `fh` from the kernel's offset on.
    fn reply(&self, fh: FileHandle, offset: u64, reply: ReplyDirectory) {
        match self.get(fh) {
            Some(listing) => reply_listing(&listing, offset, reply),
            None => reply.error(Errno::EBADF),
        }
    }
}

/// One generation as the mount serves it.
struct Served {
    dataset: Arc<Dataset>,
    /// Entries in the containers before each one.
    starts: Vec<u64>,
    /// Added to every inode number of this generation (see the module comment).
    base: u64,
    /// Entries in every container.
    total: u64,
}

impl Served {
    fn new(dataset: Arc<Dataset>, base: u64) -> Served {
        let mut starts = Vec::with_capacity(dataset.catalog().rows().len());
        let mut total = 0u64;
        for row in dataset.catalog().rows() {
            starts.push(total);
            total = total.saturating_add(row.entry_count);
        }
        Served {
            dataset,
            starts,
            base,
            total,
        }
    }

    fn ino(&self, at: Location) -> u64 {
        2 + self.base + self.starts[at.container] + at.row as u64
    }

    /// Where inode `ino` sits, when it is one of this generation's.
    fn location(&self, ino: u64) -> Option<Location> {
        let global = ino.checked_sub(2 + self.base)?;
        let container = self
            .starts
            .partition_point(|&s| s <= global)
            .checked_sub(1)?;
        let row = global - self.starts[container];
        let count = self.dataset.catalog().rows()[container].entry_count;
        (row < count).then_some(Location {
            container,
            row: row as usize,
        })
    }

    /// True when `newer` lists this generation's containers first, in the same places: every
    /// inode of this one means the same entry there.
    fn extended_by(&self, newer: &Dataset) -> bool {
        let (old, new) = (self.dataset.catalog().rows(), newer.catalog().rows());
        new.len() >= old.len()
            && old
                .iter()
                .zip(new)
                .all(|(a, b)| a.name == b.name && a.index_xxh3 == b.index_xxh3)
    }
}

/// The filesystem.
pub struct SheafFs {
    shared: Arc<Shared>,
}

/// What the filesystem and its refresher share (opaque: reached through [`SheafFs`]).
pub struct Shared {
    /// The generation served.
    served: RwLock<Arc<Served>>,
    /// Generations replaced by one that rewrote their containers, still answering for the
    /// inodes they handed out.
    retired: RwLock<Vec<Arc<Served>>>,
    /// How long the kernel may keep entries and attributes.
    ttl: Duration,
    synthetic: Mutex<HashMap<u64, Vec<u8>>>,
    /// Where the numbers of directories an index implies start (every entry's is below).
    synthetic_base: u64,
    /// Operations that failed because the dataset's store could not be reached.
    unreachable: AtomicU64,
    /// Why the last of those failed.
    last_unreachable: Mutex<String>,
    /// Open directories.
    handles: Handles,
    /// Folded entries read and checked whole, by inode, until their last byte is served.
    recent: Mutex<VecDeque<(u64, Buffer)>>,
    uid: u32,
    gid: u32,
}

impl SheafFs {
    /// A filesystem serving `dataset`, owned by the user who mounts it.
    pub fn new(dataset: Arc<Dataset>) -> SheafFs {
        Self::following(dataset, TTL)
    }

    /// A filesystem serving `dataset` that may move to newer generations (see
    /// [`SheafFs::refresher`]); the kernel keeps entries and attributes for `ttl` at most.
    pub fn following(dataset: Arc<Dataset>, ttl: Duration) -> SheafFs {
        SheafFs {
            shared: Arc::new(Shared::new(dataset, ttl, SYNTHETIC_BASE)),
        }
    }
}

impl Shared {
    /// The state of a filesystem serving `dataset`, numbering the directories its indexes
    /// imply from `synthetic_base` up.
    fn new(dataset: Arc<Dataset>, ttl: Duration, synthetic_base: u64) -> Shared {
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Shared {
            served: RwLock::new(Arc::new(Served::new(dataset, 0))),
            retired: RwLock::default(),
            ttl: ttl.min(TTL),
            synthetic: Mutex::default(),
            synthetic_base,
            unreachable: AtomicU64::new(0),
            last_unreachable: Mutex::default(),
            handles: Handles::default(),
            recent: Mutex::default(),
            uid,
            gid,
        }
    }
}

impl SheafFs {
    /// The generation served now.
    pub fn dataset(&self) -> Arc<Dataset> {
        self.shared.current().dataset.clone()
    }

    /// What moves this filesystem to a newer generation, from another thread.
    pub fn refresher(&self) -> Refresher {
        Refresher {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl std::ops::Deref for SheafFs {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Shared {
    fn current(&self) -> Arc<Served> {
        self.served
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The generation that handed out inode `ino` and where the inode sits in it.
    fn locate(&self, ino: u64) -> Option<(Arc<Served>, Location)> {
        let current = self.current();
        if let Some(at) = current.location(ino) {
            return Some((current, at));
        }
        let retired = self.retired.read().unwrap_or_else(|p| p.into_inner());
        retired
            .iter()
            .find_map(|served| served.location(ino).map(|at| (Arc::clone(served), at)))
    }

    fn ino_of(&self, served: &Served, at: Option<Location>, entry: &Entry) -> u64 {
        match at {
            Some(at) => served.ino(at),
            None => {
                let mut synthetic = self.synthetic.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((&ino, _)) = synthetic.iter().find(|(_, p)| **p == entry.path) {
                    return ino;
                }
                let ino = self.synthetic_base + synthetic.len() as u64;
                synthetic.insert(ino, entry.path.clone());
                ino
            }
        }
    }

    /// The entry an inode names.
    fn node(&self, ino: u64) -> Result<Entry, Errno> {
        if ino == ROOT {
            return Ok(self.current().dataset.root());
        }
        if ino >= self.synthetic_base {
            let synthetic = self.synthetic.lock().unwrap_or_else(|p| p.into_inner());
            let path = synthetic.get(&ino).ok_or(Errno::ENOENT)?;
            return Ok(Entry {
                path: path.clone(),
                ..root_entry()
            });
        }
        let (served, at) = self.locate(ino).ok_or(Errno::ENOENT)?;
        served.dataset.entry_at(at).map_err(|e| self.fail(e))
    }

    fn attr(&self, ino: u64, entry: &Entry) -> FileAttr {
        let mtime = crate::time::system_time(entry.mtime_ns);
        let kind = file_type(entry.kind);
        FileAttr {
            ino: INodeNo(ino),
            size: if kind == FileType::Directory {
                0
            } else {
                entry.len
            },
            blocks: entry.len.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm: (entry.mode & 0o7777) as u16,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    fn listing(&self, ino: u64, dir: &Entry) -> Result<Listing, Errno> {
        let served = self.current();
        let children = served
            .dataset
            .list_located(&dir.path)
            .map_err(|e| self.fail(e))?;
        let parent = match dir.path.is_empty() {
            true => ROOT,
            false => self.parent_ino(&served, &dir.path),
        };
        let mut out = Vec::with_capacity(children.len() + 2);
        out.push((ino, FileType::Directory, OsString::from(".")));
        out.push((parent, FileType::Directory, OsString::from("..")));
        for (at, child) in children {
            let name = OsString::from_vec(path::file_name(&child.path).to_vec());
            out.push((
                self.ino_of(&served, at, &child),
                file_type(child.kind),
                name,
            ));
        }
        Ok(out)
    }

    fn parent_ino(&self, served: &Served, path: &[u8]) -> u64 {
        let parent = path::parent(path);
        if parent.is_empty() {
            return ROOT;
        }
        match served.dataset.lookup(parent) {
            Ok(Some((at, entry))) => self.ino_of(served, Some(at), &entry),
            _ => ROOT,
        }
    }

    /// Bytes `offset..offset+size` of the folded entry at inode `ino`, from a whole-entry
    /// read checked against its checksum (kept until the entry's last byte is served).
    fn read_stored(&self, ino: u64, offset: u64, size: u32) -> Result<Buffer, Errno> {
        let cached = {
            let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent
                .iter()
                .find(|(i, _)| *i == ino)
                .map(|(_, b)| b.clone())
        };
        let bytes = match cached {
            Some(bytes) => bytes,
            None => {
                let (served, at) = self.locate(ino).ok_or(Errno::ENOENT)?;
                served.dataset.read_at(at).map_err(|e| self.fail(e))?
            }
        };
        let len = bytes.len() as u64;
        let start = offset.min(len);
        let end = start.saturating_add(size as u64).min(len);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.retain(|(i, _)| *i != ino);
        if end < len {
            if recent.len() == RECENT_ENTRIES {
                recent.pop_front();
            }
            recent.push_back((ino, bytes.clone()));
        }
        Ok(bytes.slice_with_length(start as usize, (end - start) as usize))
    }

    /// Bytes of an external file, read from where it lives and checked by the library (block
    /// by block), whatever order and however many readers they are asked in.
    fn read_external(&self, entry: &Entry, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let end = offset.saturating_add(size as u64);
        self.current()
            .dataset
            .read_external_range(entry, offset..end)
            .map_err(|e| self.fail(e))
    }
}

fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        // Tombstones never get this far: lookups and listings hide them.
        EntryKind::File | EntryKind::External | EntryKind::Tombstone => FileType::RegularFile,
    }
}

/// The errno a reader error becomes; data faults are logged, since EIO says little.
fn errno(e: Error) -> Errno {
    match e {
        Error::NotFound { .. } | Error::InvalidPath { .. } => Errno::ENOENT,
        other => {
            eprintln!("sheaf mount: {other}");
            Errno::EIO
        }
    }
}

fn child_path(parent: &Entry, name: &OsStr) -> Vec<u8> {
    let mut child = parent.path.clone();
    if !child.is_empty() {
        child.push(SEPARATOR);
    }
    child.extend_from_slice(name.as_bytes());
    child
}

impl Shared {
    /// The errno a reader error becomes, counting failures to reach the dataset's store.
    fn fail(&self, e: Error) -> Errno {
        if matches!(e, Error::Remote { .. }) {
            *self
                .last_unreachable
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = e.to_string();
            self.unreachable.fetch_add(1, Ordering::Relaxed);
        }
        errno(e)
    }

    /// How many operations failed because the dataset's store could not be reached.
    pub(crate) fn unreachable_count(&self) -> u64 {
        self.unreachable.load(Ordering::Relaxed)
    }

    /// Why the last operation that could not reach the dataset's store failed.
    pub(crate) fn last_unreachable(&self) -> String {
        self.last_unreachable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The entry `path` (index form; empty for the root) names, its inode and attributes.
    fn lookup_path(&self, path: &[u8]) -> Result<(u64, FileAttr), Errno> {
        if path.is_empty() {
            return self.getattr_of(ROOT).map(|attr| (ROOT, attr));
        }
        let served = self.current();
        let (at, entry) = match served.dataset.lookup(path) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(Errno::ENOENT),
            Err(e) => return Err(self.fail(e)),
        };
        // A file looked up is about to be opened and read: its bytes start coming from the
        // device now, while the kernel and the reader make their next round trips (measured:
        // asked before this reply, not after, where the request would still be in the making
        // when the read arrives).
        if entry.kind == EntryKind::File {
            served.dataset.prefetch(at);
        }
        let ino = self.ino_of(&served, Some(at), &entry);
        Ok((ino, self.attr(ino, &entry)))
    }

    /// The child `name` of directory `parent`.
    fn lookup_child(&self, parent: u64, name: &OsStr) -> Result<(u64, FileAttr), Errno> {
        let dir = self.node(parent)?;
        if dir.kind != EntryKind::Dir {
            return Err(Errno::ENOTDIR);
        }
        self.lookup_path(&child_path(&dir, name))
    }

    fn getattr_of(&self, ino: u64) -> Result<FileAttr, Errno> {
        self.node(ino).map(|entry| self.attr(ino, &entry))
    }

    fn readlink_of(&self, ino: u64) -> Result<Buffer, Errno> {
        let (served, at) = self.locate(ino).ok_or(Errno::EINVAL)?;
        served.dataset.read_link(at).map_err(|e| self.fail(e))
    }

    fn read_of(&self, ino: u64, offset: u64, size: u32) -> Result<Buffer, Errno> {
        let entry = self.node(ino)?;
        match entry.kind {
            EntryKind::File => self.read_stored(ino, offset, size),
            EntryKind::External => self
                .read_external(&entry, offset, size)
                .map(Buffer::from_vec),
            EntryKind::Dir => Err(Errno::EISDIR),
            EntryKind::Symlink => Err(Errno::EINVAL),
            EntryKind::Tombstone => Err(Errno::ENOENT),
        }
    }

    /// The listing of directory `ino`, `.` and `..` first.
    fn listing_of(&self, ino: u64) -> Result<Listing, Errno> {
        let dir = self.node(ino)?;
        match dir.kind {
            EntryKind::Dir => self.listing(ino, &dir),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// Blocks of 4 KiB and entries the served generation holds.
    fn usage(&self) -> (u64, u64) {
        let served = self.current();
        let bytes: u64 = served
            .dataset
            .catalog()
            .rows()
            .iter()
            .map(|r| r.file_len)
            .sum();
        (bytes.div_ceil(4096), served.dataset.entry_count())
    }
}

/// Answers `readdir` from a listing taken at `opendir`, from the kernel's offset on.
fn reply_listing(children: &Listing, offset: u64, mut reply: ReplyDirectory) {
    for (i, (ino, kind, name)) in children.iter().enumerate().skip(offset as usize) {
        if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
            break;
        }
    }
    reply.ok();
}

/// Refuses writable opens; answers every other with "not implemented", which makes the kernel
/// open files itself from now on, with their page cache kept (see the module comment); reads
/// then arrive without a handle.
fn reply_open(flags: OpenFlags, reply: ReplyOpen) {
    if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
        return reply.error(Errno::EROFS);
    }
    reply.error(Errno::ENOSYS);
}

impl Filesystem for SheafFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_child(parent.into(), name) {
            Ok((_, attr)) => reply.entry(&self.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.getattr_of(ino.into()) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.readlink_of(ino.into()) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        reply_open(flags, reply);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.read_of(ino.into(), offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing_of(ino.into()) {
            Ok(children) => reply.opened(
                self.handles.add(children),
                FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR,
            ),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.handles.reply(fh, offset, reply);
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.remove(fh);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (blocks, files) = self.usage();
        reply.statfs(blocks, 0, 0, files, 0, 4096, 255, 4096);
    }
}

/// Moves a mounted filesystem to a newer generation, from any thread: see
/// [`SheafFs::refresher`].
#[derive(Clone)]
pub struct Refresher {
    shared: Arc<Shared>,
}

impl Refresher {
    /// The generation served now.
    pub fn generation(&self) -> u64 {
        self.shared.current().dataset.generation()
    }

    /// Serves `newer`, a newer generation of the dataset, from now on, and tells the kernel
    /// (through `notifier`, when there is one) to forget every name the generations in
    /// between changed and the listings of their directories. Returns how many names changed.
    /// A generation no newer than the one served is ignored.
    pub fn serve(
        &self,
        newer: Dataset,
        notifier: Option<&fuser::Notifier>,
    ) -> crate::error::Result<usize> {
        self.serve_with(newer, &mut |forget| {
            // The kernel may not hold the name: nothing to forget is not an error.
            if let Some(notifier) = notifier {
                let _ = match forget {
                    Forget::Entry(parent, name) => notifier.inval_entry(INodeNo(parent), name),
                    Forget::Inode(ino) => notifier.inval_inode(INodeNo(ino), 0, 0),
                };
            }
        })
    }

    /// [`Refresher::serve`], telling `forget` (in this filesystem's inode numbers) what the
    /// kernel must forget.
    pub(crate) fn serve_with(
        &self,
        newer: Dataset,
        forget: &mut dyn FnMut(Forget),
    ) -> crate::error::Result<usize> {
        let shared = &self.shared;
        let old = shared.current();
        if newer.generation() <= old.dataset.generation() {
            return Ok(0);
        }
        let changed = changed_paths(&old.dataset, &newer)?;
        let extension = old.extended_by(&newer);
        let base = match extension {
            true => old.base,
            false => old.base + old.total + 2,
        };
        let new = Arc::new(Served::new(Arc::new(newer), base));
        let previous = std::mem::replace(
            &mut *shared.served.write().unwrap_or_else(|p| p.into_inner()),
            Arc::clone(&new),
        );
        if !extension {
            shared
                .retired
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .push(previous);
        }
        let mut parents = std::collections::HashSet::new();
        // A deleted path's directory may be gone too: its number is the old generation's.
        let parent_of = |path: &[u8]| {
            let parent = path::parent(path);
            let in_served = |served: &Served| match served.dataset.lookup(parent) {
                Ok(Some((at, _))) => Some(served.ino(at)),
                _ => None,
            };
            match parent.is_empty() {
                true => ROOT,
                false => in_served(&new).or_else(|| in_served(&old)).unwrap_or(ROOT),
            }
        };
        for path in &changed {
            let parent = parent_of(path);
            forget(Forget::Entry(
                parent,
                OsStr::from_bytes(path::file_name(path)),
            ));
            parents.insert(parent);
        }
        for parent in parents {
            forget(Forget::Inode(parent));
        }
        Ok(changed.len())
    }
}

/// What the kernel is told to forget when the tree changes.
pub(crate) enum Forget<'a> {
    /// The name `.1` in directory `.0`.
    Entry(u64, &'a OsStr),
    /// The attributes and listing of an inode.
    Inode(u64),
}

/// Every path the generations after `old`'s, up to `new`'s, wrote an entry or a tombstone for:
/// the entries of the containers each of them added (a compaction rewrites without changing
/// the tree, so its containers are not read). A generation `gc` has already deleted is
/// skipped: its names are left to expire from the kernel's cache.
fn changed_paths(old: &Dataset, new: &Dataset) -> crate::error::Result<Vec<Vec<u8>>> {
    use crate::format::generation;
    let store = new.store();
    let mut paths = Vec::new();
    for number in old.generation() + 1..=new.generation() {
        let catalog = match number == new.generation() {
            true => new.catalog().clone(),
            false => match generation::read(store.as_ref(), generation::Which::Number(number)) {
                Ok(snapshot) => snapshot.catalog,
                Err(Error::NoSuchGeneration { .. }) => continue,
                Err(e) => return Err(e),
            },
        };
        if generation::info(number, &catalog).operation == "compact" {
            continue;
        }
        for row in catalog
            .rows()
            .iter()
            .filter(|r| u64::from(r.generation) == number)
        {
            let key = crate::layout::container_key(&row.name);
            let policy = crate::store::ReadPolicy::SEQUENTIAL;
            let container =
                crate::format::Container::open_in(store, &key, Some(row.file_len), policy)?;
            let index = container.index();
            paths.extend((0..index.len()).map(|i| index.path(i).to_vec()));
        }
    }
    Ok(paths)
}
