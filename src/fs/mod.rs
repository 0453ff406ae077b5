//! The read-only FUSE filesystem over the reader: a folded dataset served as the tree it was
//! folded from, every lookup answered from the catalog and container indexes.
//!
//! Inode numbers come from where an entry sits, not from a table: the root is 1 and the entry
//! at row `r` of container `c` is `2 + (entries before c) + r`, so the namespace is never
//! loaded into memory and numbers stay stable for the life of the mount. A published dataset
//! never changes, so the kernel may keep entries, attributes and pages for as long as it likes.

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
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, UNIX_EPOCH};
use xxhash_rust::xxh3::Xxh3;

/// How long the kernel may trust entries and attributes: a published dataset never changes.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// Inodes at and above this name directories an index implies without holding them.
const SYNTHETIC_BASE: u64 = 1 << 62;

const ROOT: u64 = 1;

/// One open file or directory.
enum Handle {
    /// A folded file, read and checked whole at open.
    Stored(Buffer),
    /// A large file kept outside the containers, read by ranges from where it lives; its
    /// checksum is checked when it is read from start to end in order.
    External {
        entry: Entry,
        check: Box<Mutex<SequentialCheck>>,
    },
    /// A directory listing taken at opendir, so readdir resumes at any offset.
    Dir(Vec<(u64, FileType, OsString)>),
}

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
    handles: RwLock<HashMap<u64, Arc<Handle>>>,
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
        let mtime = match u64::try_from(entry.mtime_ns) {
            Ok(ns) => UNIX_EPOCH + Duration::from_nanos(ns),
            Err(_) => UNIX_EPOCH - Duration::from_nanos(entry.mtime_ns.unsigned_abs()),
        };
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

    fn add_handle(&self, handle: Handle) -> FileHandle {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(handle));
        FileHandle(fh)
    }

    fn handle(&self, fh: FileHandle) -> Option<Arc<Handle>> {
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

    fn listing(&self, ino: u64, dir: &Entry) -> Result<Vec<(u64, FileType, OsString)>, Errno> {
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

    fn read_external(
        &self,
        entry: &Entry,
        check: &Mutex<SequentialCheck>,
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
        let mut check = check.lock().unwrap_or_else(|p| p.into_inner());
        if check.next == offset {
            check.hasher.update(&bytes);
            check.next = end;
            if end == entry.len && check.hasher.digest() != entry.xxh3 {
                eprintln!(
                    "sheaf mount: {}: checksum mismatch (changed since the fold?)",
                    self.dataset.external_uri(entry)
                );
                return Err(Errno::EIO);
            }
        } else {
            // Read out of order: the whole-file check cannot be made on this handle.
            check.next = u64::MAX;
        }
        Ok(bytes)
    }
}

fn file_type(kind: EntryKind) -> FileType {
    match kind {
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::File | EntryKind::External => FileType::RegularFile,
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
                Ok(Some((at, entry))) => Ok((self.ino_of(Some(at), &entry), entry)),
                Ok(None) => Err(Errno::ENOENT),
                Err(e) => Err(errno(e)),
            }
        });
        match found {
            Ok((ino, entry)) => reply.entry(&TTL, &self.attr(ino, &entry), Generation(0)),
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

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.0 & libc::O_ACCMODE != libc::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let opened = self.node(ino.into()).and_then(|entry| match entry.kind {
            EntryKind::File => {
                let at = self.location(ino.into()).ok_or(Errno::ENOENT)?;
                Ok(Handle::Stored(self.dataset.read_at(at).map_err(errno)?))
            }
            EntryKind::External => Ok(Handle::External {
                entry,
                check: Box::new(Mutex::new(SequentialCheck {
                    next: 0,
                    hasher: Xxh3::new(),
                })),
            }),
            EntryKind::Dir => Err(Errno::EISDIR),
            EntryKind::Symlink => Err(Errno::ELOOP),
        });
        match opened {
            Ok(handle) => reply.opened(self.add_handle(handle), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.handle(fh).as_deref() {
            Some(Handle::Stored(bytes)) => {
                let start = (offset as usize).min(bytes.len());
                let end = start.saturating_add(size as usize).min(bytes.len());
                reply.data(&bytes[start..end]);
            }
            Some(Handle::External { entry, check }) => {
                match self.read_external(entry, check, offset, size) {
                    Ok(bytes) => reply.data(&bytes),
                    Err(e) => reply.error(e),
                }
            }
            Some(Handle::Dir(_)) => reply.error(Errno::EISDIR),
            None => reply.error(Errno::EBADF),
        }
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.drop_handle(fh);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let listed = self.node(ino.into()).and_then(|dir| match dir.kind {
            EntryKind::Dir => self.listing(ino.into(), &dir),
            _ => Err(Errno::ENOTDIR),
        });
        match listed {
            Ok(children) => reply.opened(
                self.add_handle(Handle::Dir(children)),
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
        let Some(handle) = self.handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        let Handle::Dir(children) = &*handle else {
            return reply.error(Errno::ENOTDIR);
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
