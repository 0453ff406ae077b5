//! The local filesystem as a store: keys are paths under a root directory; writes go to a
//! temporary sibling, are synced, and are renamed into place.

use super::{
    DirListing, FileKind, FileMeta, FileStat, FileStats, ObjectInfo, ObjectWriter, Store, StoreLock,
};
use crate::error::{Error, IoContext, Result};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// How much written data may wait before its writeback is started.
const WRITEBACK_STEP: u64 = 32 << 20;

/// A directory of the local filesystem.
#[derive(Clone, Debug)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// The store rooted at `root` (which need not exist yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file behind a key.
    pub fn path(&self, key: &str) -> PathBuf {
        self.root.join(OsStr::from_bytes(key.as_bytes()))
    }

    /// Opens a key for reading without following a symlink in its place.
    fn open_file(&self, key: &str) -> Result<File> {
        let path = self.path(key);
        open_nofollow(&path).map_err(|e| not_found_or_io(e, &path))
    }
}

/// Opens a local regular file for reading: never through a symlink in its place, and a FIFO,
/// device or directory is refused without blocking on it (opening a FIFO waits for a writer
/// that may never come).
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    regular_and_blocking(file)
}

/// Opens the regular file `key` under the directory `root` for reading, refusing every symlink
/// on the way (a symlinked directory could lead out of `root`) and, like [`open_nofollow`],
/// anything but a regular file, without blocking. `openat2` with `RESOLVE_BENEATH` and
/// `RESOLVE_NO_SYMLINKS` does it in one call where the kernel has it (Linux 5.6+); otherwise
/// each directory is opened in turn without following links.
pub(crate) fn open_beneath(root: &Path, key: &[u8]) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_PATH)
        .open(root)?;
    let name = std::ffi::CString::new(key).map_err(|_| io::ErrorKind::InvalidInput)?;
    let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;
    // SAFETY: `open_how` is plain integers, for which all zeroes is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: openat2 with a valid directory descriptor, a NUL-terminated name and a
    // correctly sized `open_how`; a returned descriptor is owned by the File made from it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    let file = if fd >= 0 {
        unsafe { File::from_raw_fd(fd as i32) }
    } else {
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ENOSYS) => open_components(dir, key, flags)?,
            e if matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::EXDEV)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a symlink on the path (files are read beneath the dataset root only)",
                ))
            }
            e => return Err(e),
        }
    };
    regular_and_blocking(file)
}

/// [`open_beneath`] without `openat2`: one directory at a time, never following a link.
fn open_components(mut dir: File, key: &[u8], flags: i32) -> io::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let mut parts = key.split(|&b| b == b'/').peekable();
    while let Some(part) = parts.next() {
        if part.is_empty() || part == b"." || part == b".." {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        let name = std::ffi::CString::new(part).map_err(|_| io::ErrorKind::InvalidInput)?;
        let last = parts.peek().is_none();
        let part_flags = match last {
            true => flags,
            false => libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        };
        // SAFETY: openat on a descriptor we own with a NUL-terminated name.
        let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), part_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor openat just returned, owned from here on.
        dir = unsafe { File::from_raw_fd(fd) };
    }
    Ok(dir)
}

/// Refuses anything but a regular file and turns blocking reads back on.
fn regular_and_blocking(file: File) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "is not a regular file (a FIFO, device or directory where a file belongs)",
        ));
    }
    // Back to blocking reads, the only kind a regular file has anyway.
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, 0) };
    Ok(file)
}

/// Reads a whole file the caller expects to be `expected` bytes long. The usual case is one
/// `read`: std's `read_to_end` would first `fstat` and seek to size its buffer and then read
/// once more to see the end, three system calls a file that a fold of a million tiny files
/// pays a million times. The buffer has one byte of room past `expected`, so a first read that
/// stops short at exactly `expected` is the end (a local regular file's read stops short only
/// there), and a file that has grown or shrunk since it was measured is read to its actual
/// end. Once a file took more than one read (network and FUSE filesystems may stop short
/// anywhere) only a read that returns nothing ends it. A file that has grown past `limit`
/// bytes is an error (`FileTooLarge`) once `limit + 1` bytes are in: a file being written
/// while it is read must not be taken into memory however large it gets.
pub(crate) fn read_expected(file: &mut File, expected: u64, limit: u64) -> io::Result<Vec<u8>> {
    let room = usize::try_from(expected.min(limit)).map_or(usize::MAX, |n| n.saturating_add(1));
    let mut content = Vec::with_capacity(room);
    let mut first = true;
    loop {
        if content.len() == content.capacity() {
            // Grown since it was measured: the rest, to its end or just past the limit.
            let room_left = limit.saturating_add(1).saturating_sub(content.len() as u64);
            (&mut *file).take(room_left).read_to_end(&mut content)?;
            if content.len() as u64 > limit {
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!("grew past {limit} bytes while it was being read"),
                ));
            }
            return Ok(content);
        }
        let got = read_into_spare(file, &mut content)?;
        if got == 0 || (first && content.len() as u64 == expected) {
            return Ok(content);
        }
        first = false;
    }
}

/// One `read` into the unused capacity of `buf`, retried when interrupted; returns the bytes
/// read (0 at the end of the file).
fn read_into_spare(file: &File, buf: &mut Vec<u8>) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let spare = buf.spare_capacity_mut();
    loop {
        // SAFETY: the kernel writes at most `spare.len()` bytes into memory `buf` owns and
        // does not otherwise use; only the count it reports written is then marked as set.
        let n = unsafe { libc::read(file.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
        if n >= 0 {
            let n = n as usize;
            // SAFETY: the read initialised `n` bytes right after the current length.
            unsafe { buf.set_len(buf.len() + n) };
            return Ok(n);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Streams a local file (never through a symlink) to `sink` in 1 MiB chunks; returns the length
/// its metadata gave when it was opened.
pub(crate) fn stream_file(path: &Path, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<u64> {
    let mut file = open_nofollow(path).ctx("open", path)?;
    let len = file.metadata().ctx("stat", path)?.len();
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut chunk).ctx("read", path)?;
        if n == 0 {
            return Ok(len);
        }
        sink(&chunk[..n])?;
    }
}

fn not_found_or_io(e: io::Error, path: &Path) -> Error {
    if e.kind() == io::ErrorKind::NotFound {
        Error::NotFound {
            path: path.display().to_string(),
        }
    } else {
        Error::io("open", path, e)
    }
}

impl Store for LocalStore {
    fn uri(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    fn read_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let file = self.open_file(key)?;
        let path = self.path(key);
        let mut out = vec![0u8; (range.end - range.start) as usize];
        file.read_exact_at(&mut out, range.start)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Error::corrupt(
                    &path,
                    format!("shorter than the {range:?} read from it (truncated?)"),
                ),
                _ => Error::io("read", &path, e),
            })?;
        Ok(out)
    }

    fn read(&self, key: &str) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.open_file(key)?
            .read_to_end(&mut out)
            .ctx("read", self.path(key))?;
        Ok(out)
    }

    fn len(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key);
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            // A FIFO, socket or device where a file belongs is a fault, not an absence.
            Ok(meta) if !meta.is_dir() && !meta.file_type().is_symlink() => Err(Error::Refused {
                path,
                reason: "is not a regular file (a FIFO, device or socket where a file belongs)"
                    .into(),
            }),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("stat", &path, e)),
        }
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        let target = self.path(key);
        let parent = target.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).ctx("create directory", parent)?;
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let partial = parent.join(format!(".{name}.partial-{}", std::process::id()));
        let file = File::create(&partial).ctx("create", &partial)?;
        Ok(Box::new(LocalWriter {
            file,
            partial,
            target,
            writeback: Writeback::default(),
        }))
    }

    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        let target = self.path(key);
        let parent = target.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent).ctx("create directory", parent)?;
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let partial = parent.join(format!(".{name}.new-{}", super::unique_suffix()));
        let written = write_synced(&partial, bytes);
        let placed = written.and_then(|()| move_without_replacing(&partial, &target));
        let _ = fs::remove_file(&partial);
        match placed {
            Ok(()) => {
                sync_dir(parent)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("create", &target, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut pending = vec![prefix.trim_end_matches('/').to_owned()];
        while let Some(dir) = pending.pop() {
            let level = self.list_dir(&dir)?;
            out.extend(level.objects);
            pending.extend(level.dirs);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_dir(&self, dir: &str) -> Result<DirListing> {
        let path = self.path(dir);
        let mut level = DirListing::default();
        let children = match fs::read_dir(&path) {
            Ok(children) => children,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(level),
            Err(e) => return Err(Error::io("read directory", &path, e)),
        };
        for child in children {
            let child = child.ctx("read directory", &path)?;
            let key = child_key(dir, &child.file_name());
            let meta = match child.metadata() {
                Ok(meta) => meta,
                // Gone since the directory was read (another writer's temporary file).
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("stat", child.path(), e)),
            };
            if meta.is_dir() {
                level.dirs.push(key);
            } else if meta.is_file() {
                level.objects.push(ObjectInfo {
                    key,
                    len: meta.len(),
                    mtime_ns: crate::time::mtime_ns(&meta),
                });
            }
        }
        Ok(level)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("delete", &path, e)),
            _ => Ok(()),
        }
    }

    fn create_file(&self, key: &[u8], meta: FileMeta) -> Result<Box<dyn ObjectWriter>> {
        let target = self.root.join(OsStr::from_bytes(key));
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).ctx("create directory", parent)?;
        }
        // Written in place: a copy cut short has the wrong length or time (the time is set
        // last), so `holds_copy` says it must be copied again.
        let file = File::create(&target).ctx("create", &target)?;
        Ok(Box::new(LocalFileWriter { file, target, meta }))
    }

    fn holds_copy(&self, key: &[u8], len: u64, meta: FileMeta) -> bool {
        match fs::symlink_metadata(self.root.join(OsStr::from_bytes(key))) {
            Ok(found) => {
                found.is_file()
                    && found.len() == len
                    && filetime::FileTime::from_last_modification_time(&found)
                        == crate::time::file_time(meta.mtime_ns)
            }
            Err(_) => false,
        }
    }

    fn remove_dir(&self, key: &str) -> Result<()> {
        let path = self.path(key);
        match fs::remove_dir_all(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("remove", path, e)),
            _ => Ok(()),
        }
    }

    fn ranges_in_parallel(&self) -> bool {
        false
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn is_empty(&self) -> Result<bool> {
        // Every child counts, symlinks and FIFOs too, not only what `list_dir` reports.
        match fs::read_dir(&self.root) {
            Ok(mut children) => Ok(children.next().is_none()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(Error::io("read directory", &self.root, e)),
        }
    }

    fn lock(&self, key: &str) -> Result<Option<StoreLock>> {
        LocalLock::take(self, key).map(|lock| Some(StoreLock::new(lock)))
    }

    fn file_stats(&self) -> Result<Box<dyn FileStats + '_>> {
        Ok(Box::new(self))
    }

    fn delete_file(&self, key: &[u8]) -> Result<()> {
        let path = self.root.join(OsStr::from_bytes(key));
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("delete", &path, e)),
            _ => Ok(()),
        }
    }
}

impl FileStats for &LocalStore {
    fn stat(&self, key: &[u8]) -> Result<Option<FileStat>> {
        let path = self.root.join(OsStr::from_bytes(key));
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("stat", &path, e)),
        };
        let kind = match meta.file_type() {
            t if t.is_file() => FileKind::File,
            t if t.is_symlink() => FileKind::Symlink,
            _ => FileKind::Other,
        };
        Ok(Some(FileStat {
            kind,
            len: meta.len(),
            mtime_ns: crate::time::mtime_ns(&meta),
        }))
    }
}

/// Writes a new file and makes its bytes durable.
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Gives `from` the name `to` unless `to` exists (then `AlreadyExists`): `renameat2` with
/// `RENAME_NOREPLACE`, or, where the file system lacks it, a hard link (`from` is left for the
/// caller to remove either way).
fn move_without_replacing(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (from_c, to_c) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths we own, relative to the working directory.
    let moved = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if moved == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) => fs::hard_link(from, to),
        _ => Err(e),
    }
}

/// Makes a directory's entries durable (a new name in it survives a crash).
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("sync directory", dir)
}

/// An exclusive `flock` on a lock file of a local root, which is removed when released.
#[derive(Debug)]
pub struct LocalLock {
    /// Held open: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl LocalLock {
    /// Locks the file `key` under `store`'s root, creating it and its directory (which must be
    /// a real directory, not a symlink). Refused when another process holds it.
    fn take(store: &LocalStore, key: &str) -> Result<Self> {
        use std::os::fd::AsRawFd;
        let path = store.path(key);
        let dir = path.parent().unwrap_or(Path::new("."));
        if fs::symlink_metadata(dir).is_ok_and(|meta| !meta.is_dir()) {
            return Err(Error::Refused {
                path: dir.to_path_buf(),
                reason: "is not a directory (a symlink?): sheaf writes its own files only into a real directory".into(),
            });
        }
        fs::create_dir_all(dir).ctx("create directory", dir)?;
        let file = File::create(&path).ctx("create", &path)?;
        // SAFETY: flock on a descriptor we own; the lock is released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            return Err(Error::Refused {
                path: store.root.clone(),
                reason: "another writer holds this dataset's lock right now".into(),
            });
        }
        let same_inode = |a: &fs::Metadata, b: &fs::Metadata| {
            use std::os::unix::fs::MetadataExt;
            a.dev() == b.dev() && a.ino() == b.ino()
        };
        let held = file.metadata().ctx("stat", &path)?;
        if !fs::metadata(&path).is_ok_and(|now| same_inode(&held, &now)) {
            return Err(Error::Refused {
                path: store.root.clone(),
                reason: "another writer finished while this one started: run it again".into(),
            });
        }
        Ok(Self { _file: file, path })
    }
}

impl Drop for LocalLock {
    fn drop(&mut self) {
        // Removed while still held, so a later writer never locks a stale inode we unlinked.
        let _ = fs::remove_file(&self.path);
    }
}

/// An absolute, symlink-resolved form of a path that may not exist yet: the longest existing
/// ancestor is canonicalized and the rest appended.
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(base) = existing.canonicalize() {
            return Ok(rest
                .iter()
                .rev()
                .fold(base, |acc, c: &std::ffi::OsString| acc.join(c)));
        }
        match (
            existing.file_name().map(|n| n.to_os_string()),
            existing.parent(),
        ) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = match parent.as_os_str().is_empty() {
                    true => PathBuf::from("."),
                    false => parent.to_path_buf(),
                };
            }
            _ => {
                return Err(Error::Refused {
                    path: path.to_path_buf(),
                    reason: "cannot resolve this path".into(),
                })
            }
        }
    }
}

/// A dataset file written in place by [`LocalStore::create_file`]: synced, then given its mode
/// and modification time when finished.
struct LocalFileWriter {
    file: File,
    target: PathBuf,
    meta: FileMeta,
}

impl Write for LocalFileWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl ObjectWriter for LocalFileWriter {
    fn finish(self: Box<Self>) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let LocalFileWriter { file, target, meta } = *self;
        file.sync_all().ctx("sync", &target)?;
        drop(file);
        fs::set_permissions(&target, fs::Permissions::from_mode(meta.mode & 0o7777))
            .ctx("chmod", &target)?;
        let mtime = crate::time::file_time(meta.mtime_ns);
        filetime::set_file_times(&target, mtime, mtime).ctx("set mtime", &target)
    }
}

/// The key of `name` in the directory `dir` (a key, empty for the root).
fn child_key(dir: &str, name: &OsStr) -> String {
    match dir {
        "" => name.to_string_lossy().into_owned(),
        _ => format!("{dir}/{}", name.to_string_lossy()),
    }
}

/// A write to a temporary sibling file, renamed over the key when finished.
struct LocalWriter {
    file: File,
    partial: PathBuf,
    target: PathBuf,
    writeback: Writeback,
}

/// Early writeback for a file written front to back and synced at the end: every
/// `WRITEBACK_STEP` bytes the kernel is asked to start writing what it holds, so the disk works
/// while the caller produces more and the final sync has little left to wait for.
#[derive(Debug, Default)]
pub(crate) struct Writeback {
    written: u64,
    started: u64,
}

impl Writeback {
    /// Records `n` more bytes written to `file` and starts their writeback when enough wait.
    pub(crate) fn wrote(&mut self, file: &File, n: usize) {
        use std::os::fd::AsRawFd;
        self.written += n as u64;
        if self.written - self.started < WRITEBACK_STEP {
            return;
        }
        // SAFETY: a plain syscall on a descriptor the caller owns; failure only loses the
        // early start, the final fsync still makes the file durable.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                self.started as libc::off64_t,
                (self.written - self.started) as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
        self.started = self.written;
    }
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.writeback.wrote(&self.file, n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn finish(self: Box<Self>) -> Result<()> {
        self.file.sync_all().ctx("sync", &self.partial)?;
        fs::rename(&self.partial, &self.target).ctx("rename into place", &self.target)?;
        let parent = self.target.parent().unwrap_or(Path::new("."));
        File::open(parent)
            .and_then(|d| d.sync_all())
            .ctx("sync directory", parent)
    }
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        // After finish the partial name is gone and this does nothing.
        let _ = fs::remove_file(&self.partial);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of `len` bytes, opened for reading, and its bytes.
    fn file_of(dir: &Path, len: usize) -> (File, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let path = dir.join(format!("f{len}"));
        fs::write(&path, &bytes).unwrap();
        (File::open(&path).unwrap(), bytes)
    }

    #[test]
    fn read_expected_returns_the_whole_file_whatever_length_was_expected() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 4095, 4096, 100_000] {
            // As measured, grown since (expected less) and shrunk since (expected more).
            for expected in [len, len.saturating_sub(1), 0, len + 1, len + 5000] {
                let (mut file, bytes) = file_of(dir.path(), len);
                let got = read_expected(&mut file, expected as u64, u64::MAX).unwrap();
                assert_eq!(got, bytes, "len {len} expected {expected}");
            }
        }
    }

    #[test]
    fn read_expected_stops_just_past_the_limit_of_a_file_that_grew() {
        let dir = tempfile::tempdir().unwrap();
        for len in [1usize, 4096, 100_000] {
            // Up to the limit a grown file is read whole; one byte more is refused.
            let (mut file, bytes) = file_of(dir.path(), len);
            let got = read_expected(&mut file, 0, len as u64).unwrap();
            assert_eq!(got, bytes, "len {len} at its limit");
            let (mut file, _) = file_of(dir.path(), len);
            let err = read_expected(&mut file, 0, len as u64 - 1).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::FileTooLarge, "len {len}");
            assert!(err.to_string().contains("grew past"), "{err}");
        }
    }

    /// Bytes waiting in the pipe `fd`.
    fn waiting(fd: &impl std::os::fd::AsRawFd) -> libc::c_int {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int through the pointer given.
        assert_eq!(
            unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) },
            0
        );
        n
    }

    #[test]
    fn read_expected_reads_past_a_short_read_that_ends_at_the_expected_length() {
        // A pipe stops short wherever its writer paused, as network filesystems may: 60 bytes,
        // then 40 (exactly the 100 expected after two reads), then 100 more the file grew by.
        let mut fds = [0; 2];
        // SAFETY: pipe writes two new descriptors, each owned by one File below.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        use std::os::fd::FromRawFd;
        // SAFETY: both descriptors are new and owned by nothing else.
        let (mut out, mut into) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
        let bytes: Vec<u8> = (0..200u8).collect();
        let writer = std::thread::spawn({
            let bytes = bytes.clone();
            let watched = out.try_clone().unwrap();
            move || {
                for part in [&bytes[..60], &bytes[60..100], &bytes[100..]] {
                    into.write_all(part).unwrap();
                    // Each part is read on its own before the next is written.
                    while waiting(&watched) > 0 {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
        });
        let got = read_expected(&mut out, 100, u64::MAX).unwrap();
        writer.join().unwrap();
        assert_eq!(got, bytes);
    }

    #[test]
    fn read_expected_reports_a_failed_read() {
        let dir = tempfile::tempdir().unwrap();
        let mut not_readable = File::open(dir.path()).unwrap();
        let err = read_expected(&mut not_readable, 10, u64::MAX).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
    }
}
