//! The read-only FUSE filesystem over the reader: a folded dataset served as the tree it was
//! folded from, every lookup answered from the catalog and container indexes.
//!
//! Inode numbers come from where an entry sits, not from a table: the root is 1 and the entry
//! at row `r` of container `c` is `2 + (entries before c) + r`, so the namespace is never
//! loaded into memory and numbers stay stable for the life of the mount. A published dataset
//! never changes, so the kernel may keep entries, attributes and pages for as long as it likes.
//!
//! Files are never opened in the daemon: the first `open` is answered ENOSYS, which tells the
//! kernel to open files itself from then on (keeping their page cache), so a warm read costs no
//! round trip to this process at all. Reads therefore arrive by inode: a folded entry is read
//! and checked whole on its first read request and kept among the few recently read entries
//! until its last byte has been served; a large external file is checked as it is read in order.

use crate::checksum::Xxh3;
use crate::error::Error;
use crate::index::path::{self, SEPARATOR};
use crate::index::{Entry, EntryKind};
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

/// How long the kernel may trust entries and attributes: a published dataset never changes.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// Inodes at and above this name directories an index implies without holding them.
const SYNTHETIC_BASE: u64 = 1 << 62;

const ROOT: u64 = 1;

/// How many checked entries are kept between the read requests of one file (the kernel
/// splits a file into requests of at most 128 KiB to 1 MiB; entries are at most 4 MiB).
const RECENT_ENTRIES: usize = 64;

/// A directory listing taken at opendir, so readdir resumes at any offset.
type Listing = Vec<(u64, FileType, OsString)>;

/// The whole-file checksum of an external file, computed while it is read in order.
struct SequentialCheck {
    next: u64,
    hasher: Xxh3,
}

/// The filesystem.
pub struct SheafFs {
    dataset: Arc<Dataset>,
    /// Entries in the containers before each one.
    starts: Vec<u64>,
    synthetic: Mutex<HashMap<u64, Vec<u8>>>,
    /// Open directories.
    handles: RwLock<HashMap<u64, Arc<Listing>>>,
    /// Folded entries read and checked whole, by inode, until their last byte is served.
    recent: Mutex<VecDeque<(u64, Buffer)>>,
    /// External files being read, by inode.
    external_checks: Mutex<HashMap<u64, SequentialCheck>>,
    next_handle: AtomicU64,
    uid: u32,
    gid: u32,
}

impl SheafFs {
    /// A filesystem serving `dataset`, owned by the user who mounts it.
    pub fn new(dataset: Arc<Dataset>) -> SheafFs {
        let mut starts = Vec::with_capacity(dataset.catalog().rows().len());
        let mut total = 0u64;
        for row in dataset.catalog().rows() {
            starts.push(total);
            total = total.saturating_add(row.entry_count);
        }
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        SheafFs {
            dataset,
            starts,
            synthetic: Mutex::default(),
            handles: RwLock::default(),
            recent: Mutex::default(),
            external_checks: Mutex::default(),
            next_handle: AtomicU64::new(1),
            uid,
            gid,
        }
    }

    /// The dataset served.
    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    fn ino_of(&self, at: Option<Location>, entry: &Entry) -> u64 {
        match at {
            Some(at) => 2 + self.starts[at.container] + at.row as u64,
            None => {
                let mut synthetic = self.synthetic.lock().unwrap_or_else(|p| p.into_inner());
                if let Some((&ino, _)) = synthetic.iter().find(|(_, p)| **p == entry.path) {
                    return ino;
                }
                let ino = SYNTHETIC_BASE + synthetic.len() as u64;
                synthetic.insert(ino, entry.path.clone());
                ino
            }
        }
    }

    /// The entry an inode names.
    fn node(&self, ino: u64) -> Result<Entry, Errno> {
        if ino == ROOT {
            return Ok(root_entry());
        }
        if ino >= SYNTHETIC_BASE {
            let synthetic = self.synthetic.lock().unwrap_or_else(|p| p.into_inner());
            let path = synthetic.get(&ino).ok_or(Errno::ENOENT)?;
            return Ok(Entry {
                path: path.clone(),
                ..root_entry()
            });
        }
        let at = self.location(ino).ok_or(Errno::ENOENT)?;
        self.dataset.entry_at(at).map_err(errno)
    }

    fn location(&self, ino: u64) -> Option<Location> {
        let global = ino.checked_sub(2)?;
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

    fn add_handle(&self, handle: Listing) -> FileHandle {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(handle));
        FileHandle(fh)
    }

    fn handle(&self, fh: FileHandle) -> Option<Arc<Listing>> {
        self.handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&u64::from(fh))
            .cloned()
    }

    fn drop_handle(&self, fh: FileHandle) {
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&u64::from(fh));
    }

    fn listing(&self, ino: u64, dir: &Entry) -> Result<Listing, Errno> {
        let children = self.dataset.list_located(&dir.path).map_err(errno)?;
        let parent = match dir.path.is_empty() {
            true => ROOT,
            false => self.parent_ino(&dir.path),
        };
        let mut out = Vec::with_capacity(children.len() + 2);
        out.push((ino, FileType::Directory, OsString::from(".")));
        out.push((parent, FileType::Directory, OsString::from("..")));
        for (at, child) in children {
            let name = OsString::from_vec(path::file_name(&child.path).to_vec());
            out.push((self.ino_of(at, &child), file_type(child.kind), name));
        }
        Ok(out)
    }

    fn parent_ino(&self, path: &[u8]) -> u64 {
        let parent = path::parent(path);
        if parent.is_empty() {
            return ROOT;
        }
        match self.dataset.lookup(parent) {
            Ok(Some((at, entry))) => self.ino_of(Some(at), &entry),
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
                let at = self.location(ino).ok_or(Errno::ENOENT)?;
                self.dataset.read_at(at).map_err(errno)?
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

    /// Bytes of an external file, read from where it lives; the whole-file checksum is
    /// checked when the file is read from start to end in order.
    fn read_external(
        &self,
        ino: u64,
        entry: &Entry,
        offset: u64,
        size: u32,
    ) -> Result<Vec<u8>, Errno> {
        let end = offset.saturating_add(size as u64).min(entry.len);
        if offset >= end {
            return Ok(Vec::new());
        }
        let bytes = self
            .dataset
            .read_external_range(entry, offset..end)
            .map_err(errno)?;
        let mut checks = self
            .external_checks
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if offset == 0 {
            checks.insert(
                ino,
                SequentialCheck {
                    next: 0,
                    hasher: Xxh3::new(),
                },
            );
        }
        let Some(check) = checks.get_mut(&ino).filter(|c| c.next == offset) else {
            // Read out of order (or by two readers at once): no whole-file check this time.
            checks.remove(&ino);
            return Ok(bytes);
        };
        check.hasher.update(&bytes);
        check.next = end;
        if end == entry.len {
            let digest = check.hasher.digest();
            checks.remove(&ino);
            if digest != entry.xxh3 {
                eprintln!(
                    "sheaf mount: {}: checksum mismatch (changed since the fold?)",
                    self.dataset.external_uri(entry)
                );
                return Err(Errno::EIO);
            }
        }
        Ok(bytes)
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

impl Filesystem for SheafFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.node(parent.into()).and_then(|dir| {
            if dir.kind != EntryKind::Dir {
                return Err(Errno::ENOTDIR);
            }
            let path = child_path(&dir, name);
            match self.dataset.lookup(&path) {
                Ok(Some((at, entry))) => Ok((at, entry)),
                Ok(None) => Err(Errno::ENOENT),
                Err(e) => Err(errno(e)),
            }
        });
        match found {
            Ok((at, entry)) => {
                // A file looked up is about to be opened and read: its bytes start coming from
                // the device now, while the kernel and the reader make their next round trips
                // (measured: asked before this reply, not after, where the request would still
                // be in the making when the read arrives).
                if entry.kind == EntryKind::File {
                    self.dataset.prefetch(at);
                }
                let ino = self.ino_of(Some(at), &entry);
                reply.entry(&TTL, &self.attr(ino, &entry), Generation(0));
            }
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino.into()) {
            Ok(entry) => reply.attr(&TTL, &self.attr(ino.into(), &entry)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let Some(at) = self.location(ino.into()) else {
            return reply.error(Errno::EINVAL);
        };
        match self.dataset.read_link(at) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        // "Not implemented" makes the kernel open files itself from now on, with their page
        // cache kept (see the module comment); reads then arrive without a handle.
        reply.error(Errno::ENOSYS);
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
        let ino = u64::from(ino);
        let entry = match self.node(ino) {
            Ok(entry) => entry,
            Err(e) => return reply.error(e),
        };
        let read = match entry.kind {
            EntryKind::File => self.read_stored(ino, offset, size),
            EntryKind::External => self
                .read_external(ino, &entry, offset, size)
                .map(Buffer::from_vec),
            EntryKind::Dir => Err(Errno::EISDIR),
            EntryKind::Symlink => Err(Errno::EINVAL),
            EntryKind::Tombstone => Err(Errno::ENOENT),
        };
        match read {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let listed = self.node(ino.into()).and_then(|dir| match dir.kind {
            EntryKind::Dir => self.listing(ino.into(), &dir),
            _ => Err(Errno::ENOTDIR),
        });
        match listed {
            Ok(children) => reply.opened(
                self.add_handle(children),
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
        mut reply: ReplyDirectory,
    ) {
        let Some(children) = self.handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        for (i, (ino, kind, name)) in children.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.drop_handle(fh);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let bytes: u64 = self
            .dataset
            .catalog()
            .rows()
            .iter()
            .map(|r| r.file_len)
            .sum();
        let files = self.dataset.entry_count();
        reply.statfs(bytes.div_ceil(4096), 0, 0, files, 0, 4096, 255, 4096);
    }
}
