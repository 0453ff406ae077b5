//! A local file opened for reading: memory-mapped for zero-copy access, with the kernel's
//! read-around replaced by a policy of our own, so that a dataset many times larger than
//! memory costs the disk about what its readers ask for.
//!
//! Why: a page fault on a mapping reads the device's whole read-ahead window around it
//! (megabytes on a disk that reads ahead 8 MiB); under memory pressure those pages are evicted
//! before their neighbours are used, so every small read costs megabytes. Here:
//!
//! - the mapping is advised random, so a fault reads the one page it needs;
//! - a read of several pages is announced to the kernel first (`POSIX_FADV_WILLNEED`: one
//!   request for exactly the range) while this file's reads keep finding their pages missing,
//!   and not while they find them resident, where the announcement would be a system call for
//!   nothing: a file is "cold" from its first slow touch until 32 announced reads in a row find
//!   their pages already there;
//! - a forward stream of reads (a scan, an unfold, a loader reading in order) is detected and
//!   read ahead of, a few MiB at a time;
//! - a reader whose consumer keeps its own copy of what it reads (the FUSE mount: the kernel
//!   caches the pages it serves) reads with positioned reads and drops the pages afterwards,
//!   so the page cache holds one copy of a file, not two;
//! - a whole-file scan ([`Access::Sequential`]) keeps the kernel's read-ahead, doubled.

use super::fault_guard::Guard;
use crate::error::{Error, IoContext, Result};
use arrow_buffer::Buffer;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a reader goes through a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Access {
    /// Chosen for the whole dataset when it is opened ([`ReadPolicy::for_data`]): `Around`
    /// when it fits in a quarter of the memory this process may use (cgroup limits included),
    /// `Random` otherwise. A file opened with `Auto` itself is read as `Random`.
    #[default]
    Auto,
    /// Lookups in any order over data larger than memory (a training job): read what is asked,
    /// and read ahead only of a stream of reads that is seen to go forward.
    Random,
    /// Lookups in any order over data that fits in memory: the kernel's read-around, which
    /// reads megabytes about each fault, so a cold pass costs few large requests of the device
    /// and what was read about a file is still in memory when its turn comes.
    Around,
    /// Front to back, all of it (verify, a content hash): the kernel's read-ahead, doubled.
    Sequential,
}

/// What happens to the page-cache pages a read brought in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pages {
    /// They stay: they are the one cached copy of the bytes, and warm reads are served from
    /// them without a copy.
    #[default]
    Keep,
    /// They are dropped once read, for a consumer that keeps its own copy (the FUSE mount,
    /// whose files the kernel caches): the bytes are read into memory the reader owns.
    DropAfterRead,
}

/// How a local file is read: see [`Access`] and [`Pages`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadPolicy {
    /// The order reads come in.
    pub access: Access,
    /// Whether read pages stay cached.
    pub pages: Pages,
}

impl ReadPolicy {
    /// Whole-file scans: verify, content hashes.
    pub const SEQUENTIAL: ReadPolicy = ReadPolicy {
        access: Access::Sequential,
        pages: Pages::Keep,
    };

    /// This policy for `data_bytes` of data (a dataset's containers): [`Access::Auto`] becomes
    /// `Around` when the data fits four times over in the memory this process may use (it
    /// then stays cached, and a mount's two copies, its own pages and the kernel's, fit too, so
    /// the pages are kept), and `Random` otherwise.
    pub fn for_data(self, data_bytes: u64) -> ReadPolicy {
        if self.access != Access::Auto {
            return self;
        }
        let fits = memory_limit().is_some_and(|memory| data_bytes.saturating_mul(4) <= memory);
        match fits {
            true => ReadPolicy {
                access: Access::Around,
                pages: Pages::Keep,
            },
            false => ReadPolicy {
                access: Access::Random,
                ..self
            },
        }
    }

    /// Whether reads are exact (announced, streamed, perhaps dropped) rather than left to the
    /// kernel's read-ahead.
    fn is_exact(self) -> bool {
        matches!(self.access, Access::Auto | Access::Random)
    }
}

/// The memory this process may use: the machine's, or less where a memory cgroup it is in (or
/// an ancestor of that cgroup) sets a lower limit, which counts the page cache too.
pub fn memory_limit() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let mut limit = total_kib.saturating_mul(1024);
    // The calling thread's cgroups (v1 may place threads apart; they are the process's
    // otherwise).
    let cgroups = std::fs::read_to_string("/proc/thread-self/cgroup")
        .or_else(|_| std::fs::read_to_string("/proc/self/cgroup"))
        .unwrap_or_default();
    for line in cgroups.lines() {
        // "4:memory:/a/b" (v1) or "0::/a/b" (v2).
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next(), fields.next());
        let (Some(controllers), Some(path)) = (controllers, path) else {
            continue;
        };
        let (base, file) = match controllers {
            "" => ("/sys/fs/cgroup", "memory.max"),
            c if c.split(',').any(|c| c == "memory") => {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            }
            _ => continue,
        };
        let mut dir = Path::new(base).join(path.trim_start_matches('/'));
        loop {
            if let Some(bytes) = std::fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
            {
                limit = limit.min(bytes);
            }
            if dir.as_os_str().len() <= base.len() || !dir.pop() {
                break;
            }
        }
    }
    Some(limit)
}

/// The page size files are mapped and cached with (4 KiB on the machines sheaf runs on; a
/// larger page only makes some of the advice coarser).
pub const PAGE: u64 = 4096;

/// A touch of a mapped page that takes this long read it from the device (a fault on a page
/// already in memory takes a few microseconds at most).
const SLOW_TOUCH: Duration = Duration::from_micros(10);

/// Announced reads in a row that must find their pages in memory before a cold file is
/// trusted to be warm again (and reads go back to costing no system call).
const WARM_AFTER: u32 = 32;

/// A read starting this far past the end of the same thread's previous one (a reader that
/// skips some files), or this far before it, continues a stream.
const STREAM_SLACK: u64 = 256 << 10;

/// Reads in a row that continue a stream (after the first of a file) before it is read ahead
/// of.
const STREAM_AFTER: u32 = 3;

/// How far ahead of a stream the kernel is asked to read; asked again when half is consumed.
const STREAM_AHEAD: u64 = 4 << 20;

/// A local file, mapped, read under a [`ReadPolicy`].
#[derive(Debug)]
pub struct MappedFile {
    path: PathBuf,
    file: File,
    map: Buffer,
    /// The mapping's registration with the fault guard (see [`MappedFile::faulted`]).
    guarded: Option<Arc<GuardedMap>>,
    policy: ReadPolicy,
    /// This file's number for the per-thread stream tracking.
    id: u64,
    residency: Residency,
    stream: Stream,
}

impl MappedFile {
    /// Opens and maps the regular file at `path` (never through a symlink in its place; a FIFO
    /// or device is refused without blocking on it).
    pub fn open(path: &Path, policy: ReadPolicy) -> Result<MappedFile> {
        let file = open_regular(path)?;
        let len = file.metadata().ctx("stat", path)?.len();
        let (map, guarded) = map_whole(&file, len, path)?;
        let mapped = MappedFile {
            path: path.to_path_buf(),
            file,
            map,
            guarded,
            policy,
            id: NEXT_FILE_ID.fetch_add(1, Relaxed),
            residency: Residency::default(),
            stream: Stream::default(),
        };
        mapped.advise_whole();
        Ok(mapped)
    }

    /// The file's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole mapping, for structures read in place (an index). Reading it faults pages in
    /// one at a time under [`Access::Random`]: announce a large region with
    /// [`MappedFile::will_need`] before going through it.
    pub fn bytes(&self) -> &Buffer {
        &self.map
    }

    /// The length the file had when it was mapped.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The file's length now (a system call): shorter than [`MappedFile::len`] when it was cut
    /// short under the mapping, which must then not be read past the new end.
    pub fn current_len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// True once a read of the mapping went past the file's end (it was cut short by another
    /// program since it was mapped) and was given zeros instead of the process being killed
    /// (see `store::fault_guard`): from then on, what the mapping reads is not the file's, and
    /// a result read from it must be thrown away.
    pub fn faulted(&self) -> bool {
        self.guarded.as_ref().is_some_and(|g| g.guard.faulted())
    }

    /// Asks the kernel to start reading `range` into memory now, in as few requests as it can.
    /// Advice only: a failure changes nothing but speed.
    pub fn will_need(&self, range: Range<u64>) {
        self.fadvise(range, libc::POSIX_FADV_WILLNEED);
    }

    /// Bytes `range` of the file, checked to lie inside it. Under [`Pages::Keep`] a slice of the
    /// mapping (no copy), its pages announced to the kernel first when they are likely missing;
    /// under [`Pages::DropAfterRead`] a positioned read into new memory, whose pages are then
    /// dropped from the page cache.
    pub fn read(&self, range: Range<u64>) -> Result<Buffer> {
        self.check_range(&range)?;
        if range.is_empty() {
            return Ok(Buffer::from_vec(Vec::<u8>::new()));
        }
        let streaming = self.follow_stream(&range);
        match self.policy.pages {
            Pages::Keep => {
                self.make_resident(&range);
                Ok(self
                    .map
                    .slice_with_length(range.start as usize, (range.end - range.start) as usize))
            }
            Pages::DropAfterRead => {
                let len = (range.end - range.start) as usize;
                let mut bytes = ReadBuffer::take(len);
                self.file
                    .read_exact_at(&mut bytes.0[..len], range.start)
                    .map_err(|e| self.read_error(e, &range))?;
                self.drop_pages(&range, streaming);
                Ok(bytes.into_buffer(len))
            }
        }
    }

    /// Brings `range` into memory now, so that a later pass over [`MappedFile::read`]'s slice
    /// of it does not wait for the device (a caller about to take a lock it will copy under).
    /// Does nothing under [`Pages::DropAfterRead`], whose reads own their bytes.
    pub fn fault_in(&self, range: Range<u64>) {
        if self.policy.pages == Pages::DropAfterRead || self.check_range(&range).is_err() {
            return;
        }
        self.make_resident(&range);
        let bytes = &self.map.as_slice()[range.start as usize..range.end as usize];
        for page in bytes.chunks(PAGE as usize) {
            std::hint::black_box(page[0]);
        }
    }

    fn check_range(&self, range: &Range<u64>) -> Result<()> {
        if range.start <= range.end && range.end <= self.len() {
            return Ok(());
        }
        Err(Error::corrupt(
            &self.path,
            format!(
                "a read of [{}, {}) goes past its {} bytes",
                range.start,
                range.end,
                self.len()
            ),
        ))
    }

    fn read_error(&self, e: io::Error, range: &Range<u64>) -> Error {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => Error::corrupt(
                &self.path,
                format!("shorter than the {range:?} read from it (cut short since it was opened?)"),
            ),
            _ => Error::io("read", &self.path, e),
        }
    }

    /// Under [`Access::Random`], makes sure a read of several pages costs one request of the
    /// device rather than one per page: announced first while the file is cold; while it is
    /// warm, its first page is touched and timed, and a slow touch announces the rest and marks
    /// the file cold. A read within one page needs nothing: its one fault reads that page.
    fn make_resident(&self, range: &Range<u64>) {
        let within_one_page = range.start / PAGE == range.end.saturating_sub(1) / PAGE;
        if !self.policy.is_exact() || range.is_empty() || within_one_page {
            return;
        }
        let bytes = self.map.as_slice();
        let started = Instant::now();
        if self.residency.is_cold() {
            self.will_need(range.clone());
            std::hint::black_box(bytes[range.start as usize]);
            std::hint::black_box(bytes[range.end as usize - 1]);
            self.residency.announced(started.elapsed() < SLOW_TOUCH);
        } else {
            std::hint::black_box(bytes[range.start as usize]);
            if started.elapsed() >= SLOW_TOUCH {
                self.residency.went_cold();
                self.will_need((range.start / PAGE + 1) * PAGE..range.end);
            }
        }
    }

    /// Notes a read of `range`; returns true when it continues a forward stream, which is then
    /// read ahead of (under [`Access::Random`]; sequential files have the kernel's read-ahead).
    fn follow_stream(&self, range: &Range<u64>) -> bool {
        if !self.policy.is_exact() {
            return true;
        }
        let (streaming, ahead) = self.stream.advance(self.id, range);
        if let Some(ahead) = ahead {
            self.will_need(ahead.start..ahead.end.min(self.len()));
        }
        streaming
    }

    /// Drops the pages of a read that is done with them. A read in a stream keeps its last,
    /// partial page, which the next read of the stream starts on; another read drops every page
    /// it touched (a neighbour read later reads a shared page again, as a file of its own would
    /// have had its own page read).
    fn drop_pages(&self, range: &Range<u64>, streaming: bool) {
        let start = range.start / PAGE * PAGE;
        let end = match streaming {
            true => range.end / PAGE * PAGE,
            false => range.end.div_ceil(PAGE) * PAGE,
        };
        if start < end {
            self.fadvise(start..end, libc::POSIX_FADV_DONTNEED);
        }
    }

    fn advise_whole(&self) {
        let (map_advice, file_advice) = match self.policy.access {
            Access::Auto | Access::Random => (libc::MADV_RANDOM, libc::POSIX_FADV_RANDOM),
            Access::Around => (libc::MADV_NORMAL, libc::POSIX_FADV_NORMAL),
            Access::Sequential => (libc::MADV_SEQUENTIAL, libc::POSIX_FADV_SEQUENTIAL),
        };
        if !self.map.is_empty() {
            // SAFETY: the range is exactly the live mapping this file holds; the advice only
            // changes how its pages are read in.
            unsafe {
                libc::madvise(
                    self.map.as_ptr() as *mut libc::c_void,
                    self.map.len(),
                    map_advice,
                )
            };
        }
        self.fadvise(0..self.len(), file_advice);
    }

    fn fadvise(&self, range: Range<u64>, advice: libc::c_int) {
        let len = range.end.saturating_sub(range.start);
        // SAFETY: a plain system call on a descriptor this file owns; advice cannot fail in a
        // way that matters (EINVAL on a filesystem without it leaves the default behaviour).
        unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                range.start as libc::off_t,
                len as libc::off_t,
                advice,
            )
        };
    }
}

/// Memory that positioned reads are made into, kept for the next read once the bytes are done
/// with (the Arrow buffer handed out owns it and gives it back when dropped). A mount reads
/// every file into new memory on several threads, and the allocator kept what they freed per
/// thread: 4 to 18 MiB of a daemon that otherwise holds 2. Kept buffers are initialised, so a
/// read into one does not clear it first.
#[derive(Debug)]
struct ReadBuffer(Vec<u8>);

/// At most this many read buffers are kept, none larger than [`KEPT_BUFFER_MAX`].
const KEPT_BUFFERS: usize = 16;
const KEPT_BUFFER_MAX: usize = 1 << 20;

static KEPT: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

impl ReadBuffer {
    /// A buffer of at least `len` initialised bytes: a kept one when there is one.
    fn take(len: usize) -> ReadBuffer {
        let kept = match len <= KEPT_BUFFER_MAX {
            true => KEPT.lock().unwrap_or_else(|p| p.into_inner()).pop(),
            false => None,
        };
        let mut bytes = kept.unwrap_or_default();
        if bytes.len() < len {
            bytes.resize(len, 0);
        }
        ReadBuffer(bytes)
    }

    /// The first `len` bytes as an Arrow buffer that gives the memory back when dropped.
    fn into_buffer(self, len: usize) -> Buffer {
        let ptr = NonNull::new(self.0.as_ptr() as *mut u8).unwrap_or(NonNull::dangling());
        // SAFETY: `ptr` points at `self.0`'s heap memory, at least `len` initialised bytes,
        // which the Arc keeps alive (and unmoved: a Vec's heap memory stays where it is) for as
        // long as any slice of the buffer exists.
        unsafe { Buffer::from_custom_allocation(ptr, len, Arc::new(self)) }
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        let bytes = std::mem::take(&mut self.0);
        if bytes.is_empty() || bytes.len() > KEPT_BUFFER_MAX {
            return;
        }
        let mut kept = KEPT.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < KEPT_BUFFERS {
            kept.push(bytes);
        }
    }
}

/// Opens `path` read-only without following a symlink in its place and without blocking on a
/// FIFO, and refuses anything but a regular file. A missing file is an I/O error naming it
/// ([`Error::is_not_found`]): a sheaf file that should be there and is not.
fn open_regular(path: &Path) -> Result<File> {
    super::local::open_nofollow(path).map_err(|e| match e.kind() {
        // What open_nofollow refuses: a file of the wrong type where a sheaf file belongs.
        io::ErrorKind::InvalidInput => Error::corrupt(
            path,
            "is not a regular file (a FIFO, device or directory where a sheaf file belongs)",
        ),
        _ => Error::io("open", path, e),
    })
}

/// Maps `len` bytes of `file` read-only as an Arrow buffer that keeps the mapping alive,
/// registered with the fault guard (`None` for an empty file, which maps nothing).
fn map_whole(file: &File, len: u64, path: &Path) -> Result<(Buffer, Option<Arc<GuardedMap>>)> {
    if len == 0 {
        return Ok((Buffer::from_vec(Vec::<u8>::new()), None));
    }
    // SAFETY: sheaf files are immutable once published (written under a temporary name and
    // renamed); the mapping is only read.
    let map = unsafe { memmap2::Mmap::map(file) }.ctx("map", path)?;
    let ptr = NonNull::new(map.as_ptr() as *mut u8).expect("mmap of a non-empty file is non-null");
    let len = map.len();
    let guarded = Arc::new(GuardedMap {
        guard: Guard::register(map.as_ptr(), len),
        _map: map,
    });
    // SAFETY: `ptr` and `len` describe the mapping, which the Arc keeps alive as long as any
    // slice of the buffer exists.
    let buffer = unsafe { Buffer::from_custom_allocation(ptr, len, guarded.clone()) };
    Ok((buffer, Some(guarded)))
}

/// A mapping registered with the fault guard for as long as it is mapped.
#[derive(Debug)]
struct GuardedMap {
    /// Declared first, so dropped (unregistered) before the mapping is unmapped.
    guard: Guard,
    _map: memmap2::Mmap,
}

/// Whether a file's multi-page reads have lately found their pages missing.
#[derive(Debug, Default)]
struct Residency {
    cold: AtomicBool,
    /// Announced reads in a row that found their pages in memory.
    found_in_memory: AtomicU32,
}

impl Residency {
    fn is_cold(&self) -> bool {
        self.cold.load(Relaxed)
    }

    fn went_cold(&self) {
        self.found_in_memory.store(0, Relaxed);
        self.cold.store(true, Relaxed);
    }

    /// An announced read found its pages in memory (`fast`) or waited for the device.
    fn announced(&self, fast: bool) {
        if !fast {
            self.found_in_memory.store(0, Relaxed);
        } else if self.found_in_memory.fetch_add(1, Relaxed) + 1 >= WARM_AFTER {
            self.cold.store(false, Relaxed);
        }
    }
}

/// Reads that go forward through a file, followed per thread: each thread remembers its last
/// read (a training loader's worker, an unfold thread, a scan each read in order on their own,
/// and other threads' reads must not break their streams). Per thread, too, because a shared
/// position would be written by every read of every thread, a cache line bouncing between
/// cores on the random reads that are most reads.
#[derive(Clone, Copy, Debug, Default)]
struct LastRead {
    /// The file ([`MappedFile::id`]); 0 before any read.
    file: u64,
    /// Where the read ended.
    end: u64,
    /// Reads in a row, before and including it, that continued a stream.
    run: u32,
}

thread_local! {
    static LAST_READ: std::cell::Cell<LastRead> = const {
        std::cell::Cell::new(LastRead { file: 0, end: 0, run: 0 })
    };
}

/// Gives every file opened a number of its own, for [`LastRead`].
static NEXT_FILE_ID: AtomicU64 = AtomicU64::new(1);

/// How far ahead of the streams through one file the kernel has been asked to read. Shared by
/// the threads streaming through the file (relaxed: a race costs one announcement too many or
/// too few, never a wrong byte); written only by reads that are part of a stream.
#[derive(Debug, Default)]
struct Stream {
    ahead: AtomicU64,
}

impl Stream {
    /// Notes this thread's read of `range` in file `file`; returns whether it continues a
    /// stream, and the range to ask the kernel to read ahead when one is due.
    fn advance(&self, file: u64, range: &Range<u64>) -> (bool, Option<Range<u64>>) {
        let last = LAST_READ.get();
        let continues = last.file == file
            && range.start + STREAM_SLACK >= last.end
            && range.start <= last.end + STREAM_SLACK;
        let run = if continues { last.run + 1 } else { 0 };
        LAST_READ.set(LastRead {
            file,
            end: range.end,
            run,
        });
        if run < STREAM_AFTER {
            return (false, None);
        }
        let ahead = self.ahead.load(Relaxed);
        // Further ahead than any window asked for from here: left by a stream elsewhere.
        let stale = ahead > range.end + STREAM_AHEAD;
        if !stale && range.end + STREAM_AHEAD / 2 <= ahead {
            return (true, None);
        }
        let from = if stale {
            range.end
        } else {
            ahead.max(range.end)
        };
        let to = range.end + STREAM_AHEAD;
        self.ahead.store(to, Relaxed);
        (true, Some(from..to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_of(dir: &Path, len: usize) -> (PathBuf, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        let path = dir.join(format!("f{len}"));
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    }

    #[test]
    fn every_policy_reads_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = file_of(dir.path(), 300_000);
        let policies = [
            ReadPolicy::default(),
            ReadPolicy::SEQUENTIAL,
            ReadPolicy {
                access: Access::Around,
                pages: Pages::Keep,
            },
            ReadPolicy {
                access: Access::Random,
                pages: Pages::DropAfterRead,
            },
        ];
        for policy in policies {
            let file = MappedFile::open(&path, policy).unwrap();
            // In order (a stream), out of order, within a page, across pages, empty, the end.
            let ranges = (0..30u64).map(|i| i * 9_000..i * 9_000 + 9_000).chain([
                5..6,
                4090..4100,
                250_000..260_000,
                7..7,
                0..0,
                299_990..300_000,
            ]);
            for range in ranges {
                let got = file.read(range.clone()).unwrap();
                let want = &bytes[range.start as usize..range.end as usize];
                assert_eq!(got.as_slice(), want, "{policy:?} {range:?}");
                file.fault_in(range);
            }
        }
    }

    #[test]
    fn read_buffers_are_kept_for_reuse_and_never_hand_out_stale_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let (path, bytes) = file_of(dir.path(), 200_000);
        let policy = ReadPolicy {
            access: Access::Random,
            pages: Pages::DropAfterRead,
        };
        let file = MappedFile::open(&path, policy).unwrap();
        // Shorter reads into buffers a longer read filled, and buffers alive at once.
        let held: Vec<Buffer> = (0..3)
            .map(|i| file.read(i * 1000..100_000).unwrap())
            .collect();
        for (i, got) in held.iter().enumerate() {
            assert_eq!(got.as_slice(), &bytes[i * 1000..100_000]);
        }
        drop(held);
        for len in [150_000u64, 10, 0, 99_999] {
            let got = file.read(7..7 + len).unwrap();
            assert_eq!(got.as_slice(), &bytes[7..7 + len as usize]);
        }
        assert!(KEPT.lock().unwrap().len() <= KEPT_BUFFERS);
    }

    #[test]
    fn a_read_past_the_end_is_an_error_not_a_fault() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = file_of(dir.path(), 10_000);
        for pages in [Pages::Keep, Pages::DropAfterRead] {
            let policy = ReadPolicy {
                access: Access::Random,
                pages,
            };
            let file = MappedFile::open(&path, policy).unwrap();
            let err = file.read(9_000..10_001).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err}");
            assert!(file.read(10_001..10_001).is_err());
        }
    }

    #[test]
    fn a_file_cut_short_after_opening_fails_the_positioned_read() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = file_of(dir.path(), 50_000);
        let policy = ReadPolicy {
            access: Access::Random,
            pages: Pages::DropAfterRead,
        };
        let file = MappedFile::open(&path, policy).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(20_000)
            .unwrap();
        assert_eq!(file.current_len().unwrap(), 20_000);
        let err = file.read(30_000..40_000).unwrap_err();
        assert!(err.to_string().contains("cut short"), "{err}");
    }

    #[test]
    fn anything_but_a_regular_file_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
        let err = MappedFile::open(&fifo, ReadPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let err = MappedFile::open(dir.path(), ReadPolicy::default()).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
        let (target, _) = file_of(dir.path(), 10);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(MappedFile::open(&link, ReadPolicy::default()).is_err());
        let missing = MappedFile::open(&dir.path().join("missing"), ReadPolicy::default());
        assert!(missing.unwrap_err().is_not_found());
    }

    #[test]
    fn a_stream_is_read_ahead_of_after_a_few_reads_and_a_jump_ends_it() {
        let stream = Stream::default();
        let step = 100_000u64;
        let read = |i: u64| stream.advance(1, &(i * step..(i + 1) * step));
        // The first read of a file starts nothing; three more in order start a stream.
        let first: Vec<_> = (0..6).map(read).collect();
        assert!(first[..3].iter().all(|r| *r == (false, None)));
        assert_eq!(first[3], (true, Some(4 * step..4 * step + STREAM_AHEAD)));
        // Well inside the window: nothing more until half of it is consumed.
        assert!(first[4..].iter().all(|r| *r == (true, None)));
        let (at, next) = (6u64..).find_map(|i| read(i).1.map(|r| (i, r))).unwrap();
        assert_eq!(
            next,
            4 * step + STREAM_AHEAD..(at + 1) * step + STREAM_AHEAD
        );
        assert!((at + 1) * step + STREAM_AHEAD / 2 > 4 * step + STREAM_AHEAD);
        // A jump ends the stream; so does a read of another file in between.
        assert_eq!(
            stream.advance(1, &(900_000_000..900_000_100)),
            (false, None)
        );
        let resumed: Vec<_> = (20..24).map(read).collect();
        assert!(resumed[3].0);
        assert_eq!(stream.advance(2, &(0..10)), (false, None));
        assert_eq!(read(24), (false, None));
    }

    #[test]
    fn threads_keep_their_own_streams() {
        let stream = std::sync::Arc::new(Stream::default());
        let halves: Vec<_> = [0u64, 500]
            .into_iter()
            .map(|first| {
                let stream = stream.clone();
                std::thread::spawn(move || {
                    (first..first + 10)
                        .map(|i| stream.advance(1, &(i * 1000..(i + 1) * 1000)).0)
                        .filter(|&streaming| streaming)
                        .count()
                })
            })
            .collect();
        for half in halves {
            assert_eq!(half.join().unwrap(), 10 - STREAM_AFTER as usize);
        }
    }

    #[test]
    fn data_that_fits_in_a_quarter_of_memory_is_read_around_and_larger_data_exactly() {
        let memory = memory_limit().unwrap();
        assert!(memory > 0);
        let mount = ReadPolicy {
            access: Access::Auto,
            pages: Pages::DropAfterRead,
        };
        let small = mount.for_data(memory / 8);
        assert_eq!((small.access, small.pages), (Access::Around, Pages::Keep));
        let large = mount.for_data(memory / 2);
        assert_eq!(
            (large.access, large.pages),
            (Access::Random, Pages::DropAfterRead)
        );
        // A policy asked for outright is kept whatever the size.
        assert_eq!(ReadPolicy::SEQUENTIAL.for_data(1), ReadPolicy::SEQUENTIAL);
    }

    #[test]
    fn a_memory_cgroup_limit_is_the_memory_a_process_may_use() {
        // A thread moved into a child memory cgroup with a limit sees that limit. Runs where
        // this process sits in a v1 memory cgroup it may make a child of (root, on the
        // machines the suite runs on); elsewhere the machine's memory is checked above.
        let Some(path) = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap()
            .lines()
            .find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned()))
        else {
            return;
        };
        let parent = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/'));
        let child = parent.join(format!("sheaf-limit-test-{}", std::process::id()));
        if std::fs::create_dir(&child).is_err() {
            return;
        }
        let limit = 512u64 << 20;
        std::fs::write(child.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        let seen = std::thread::spawn({
            let child = child.clone();
            move || {
                // SAFETY: gettid has no arguments and cannot fail.
                let tid = unsafe { libc::syscall(libc::SYS_gettid) };
                std::fs::write(child.join("tasks"), tid.to_string()).unwrap();
                let seen = memory_limit();
                std::fs::write(parent.join("tasks"), tid.to_string()).unwrap();
                seen
            }
        })
        .join()
        .unwrap();
        std::fs::remove_dir(&child).unwrap();
        assert_eq!(seen, Some(limit));
    }

    #[test]
    fn a_cold_file_turns_warm_after_reads_find_their_pages() {
        let residency = Residency::default();
        assert!(!residency.is_cold());
        residency.went_cold();
        for _ in 0..WARM_AFTER - 1 {
            residency.announced(true);
        }
        residency.announced(false);
        assert!(residency.is_cold(), "a slow read starts the count again");
        for _ in 0..WARM_AFTER {
            residency.announced(true);
        }
        assert!(!residency.is_cold());
    }
}
