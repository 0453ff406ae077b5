//! The C ABI of the sheaf reader: open a folded dataset, then read, stat, list and walk it by
//! the paths of the tree it was folded from. `include/sheaf.h` is generated from this crate.
//!
//! Conventions, the same for every function:
//! - Every function that can fail returns a [`sheaf_status`]; `sheaf_last_error()` then holds
//!   the message for the calling thread. No function unwinds or aborts on bad input: null
//!   pointers are `SHEAF_INVALID_ARGUMENT`, panics are caught and become `SHEAF_INTERNAL`.
//! - Paths are byte strings with an explicit length (they need not be UTF-8 or NUL-terminated),
//!   relative to the dataset root as in the source tree; `""`, `"."` and `"/"` name the root.
//! - A `sheaf_dataset` may be used from many threads at once. Listings, walks and byte buffers
//!   it hands out must be freed with their own `_free` function, walks before the dataset.
//! - After `fork`, a child must open the dataset again rather than use the parent's handle.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)] // the header's comments and the conventions above say it

mod fold;
mod listing;
mod order;
mod status;

pub use fold::*;
pub use listing::*;
pub use order::*;
pub use status::*;

use sheaf::cache::{Cache, Counter};
use sheaf::{Dataset, Entry, EntryKind, ReadOptions, Routes};
use status::sheaf_status::*;
use std::ffi::{c_char, c_void, CStr, CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, OnceLock, RwLock};

/// An open dataset, or the tree a routes table joins. Opaque: obtained from `sheaf_open` or
/// `sheaf_open_routes`, released by `sheaf_close`.
pub struct sheaf_dataset {
    source: Source,
}

enum Source {
    One {
        /// The generation being read. Each call takes its own reference, so `sheaf_refresh`
        /// can move the handle to a newer generation while other threads finish their calls
        /// on the one they started with.
        inner: RwLock<Arc<Dataset>>,
        /// How it was opened, to open the newest generation the same way.
        uri: std::ffi::OsString,
        options: ReadOptions,
    },
    Routes(Arc<Routes>),
}

/// What one call reads: one generation of a dataset, or a routed tree.
#[derive(Clone)]
enum Reader {
    One(Arc<Dataset>),
    Routes(Arc<Routes>),
}

impl Reader {
    fn stat(&self, path: &[u8]) -> sheaf::Result<Entry> {
        match self {
            Reader::One(d) => d.stat(path),
            Reader::Routes(r) => r.stat(path),
        }
    }

    fn resolve(&self, path: &[u8]) -> sheaf::Result<Entry> {
        match self {
            Reader::One(d) => d.resolve(path).map(|(_, entry)| entry),
            Reader::Routes(r) => r.resolve(path),
        }
    }

    fn read(&self, path: &[u8]) -> sheaf::Result<sheaf::read::Buffer> {
        match self {
            Reader::One(d) => d.read(path),
            Reader::Routes(r) => r.read(path),
        }
    }

    fn read_placed<'b>(
        &self,
        path: &[u8],
        place: impl FnOnce(usize) -> Option<&'b mut [u8]>,
    ) -> sheaf::Result<usize> {
        match self {
            Reader::One(d) => d.read_placed(path, place),
            Reader::Routes(r) => r.read_placed(path, place),
        }
    }

    fn list(&self, path: &[u8]) -> sheaf::Result<Vec<Entry>> {
        match self {
            Reader::One(d) => d.list(path),
            Reader::Routes(r) => r.list(path),
        }
    }

    fn entry_count(&self) -> sheaf::Result<u64> {
        match self {
            Reader::One(d) => Ok(d.entry_count()),
            Reader::Routes(r) => r.entry_count(),
        }
    }

    /// The reader's counters in the order of `Counter::ALL` (a routed tree's: the sum over
    /// the datasets it opened), each dataset's counters read once.
    fn counters(&self) -> Vec<u64> {
        let datasets = match self {
            Reader::One(d) => vec![Arc::clone(d)],
            Reader::Routes(r) => r.opened(),
        };
        let snapshots: Vec<_> = datasets.iter().map(|d| d.stats()).collect();
        Counter::ALL
            .iter()
            .map(|&c| {
                snapshots
                    .iter()
                    .fold(0u64, |sum, s| sum.saturating_add(s.get(c)))
            })
            .collect()
    }
}

/// What kind of entry a path names.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum sheaf_kind {
    SHEAF_FILE = 0,
    SHEAF_DIR = 1,
    SHEAF_SYMLINK = 2,
}

/// `sheaf_stat.flags`: the file was too large to fold and is read from where it lives.
pub const SHEAF_STAT_EXTERNAL: u32 = 1;

/// `sheaf_open` flag: fetch containers that keep missing into the cache in the background.
pub const SHEAF_OPEN_FILL: u32 = 1;

/// Metadata of one entry, as the source tree had it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct sheaf_stat {
    /// Bytes in the file (for a symlink, in its target; 0 for a directory).
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// `st_mode`: file type bits and permission bits.
    pub mode: u32,
    /// A `sheaf_kind` value.
    pub kind: u32,
    /// `SHEAF_STAT_*` bits.
    pub flags: u32,
}

impl From<&Entry> for sheaf_stat {
    fn from(entry: &Entry) -> Self {
        let kind = match entry.kind {
            // Tombstones never get this far: lookups and listings hide them.
            EntryKind::File | EntryKind::External | EntryKind::Tombstone => sheaf_kind::SHEAF_FILE,
            EntryKind::Dir => sheaf_kind::SHEAF_DIR,
            EntryKind::Symlink => sheaf_kind::SHEAF_SYMLINK,
        };
        let external = entry.kind == EntryKind::External;
        sheaf_stat {
            size: entry.len,
            mtime_ns: entry.mtime_ns,
            mode: entry.mode,
            kind: kind as u32,
            flags: if external { SHEAF_STAT_EXTERNAL } else { 0 },
        }
    }
}

/// Bytes owned by the library (an entry's content), released by `sheaf_bytes_free`.
#[repr(C)]
#[derive(Debug)]
pub struct sheaf_bytes {
    pub data: *const u8,
    pub len: usize,
    /// The library's handle on the memory; do not touch.
    pub owner: *mut c_void,
}

/// The library's version, a NUL-terminated string such as "0.1.0".
#[no_mangle]
pub extern "C" fn sheaf_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Opens the dataset `uri` names (a local path, `file://`, `s3://`, `hdfs://`, `az://`,
/// `gs://`). `cache_dir` (may be null) is a sheaf cache directory to read containers from,
/// created when missing; `flags` are `SHEAF_OPEN_*` bits. On success `*out` is the handle.
/// Local paths (`uri` and `cache_dir`) are bytes as the OS takes them, UTF-8 or not.
#[no_mangle]
pub unsafe extern "C" fn sheaf_open(
    uri: *const c_char,
    cache_dir: *const c_char,
    flags: u32,
    out: *mut *mut sheaf_dataset,
) -> sheaf_status {
    unsafe { sheaf_open_generation(uri, cache_dir, flags, SHEAF_NEWEST, out) }
}

/// `sheaf_open_generation`'s `generation` for the newest one.
pub const SHEAF_NEWEST: u64 = u64::MAX;

/// `sheaf_open` at a given generation (`SHEAF_NEWEST` for the newest): that snapshot is read
/// until `sheaf_refresh`. `SHEAF_NOT_FOUND` when the dataset has no such generation.
#[no_mangle]
pub unsafe extern "C" fn sheaf_open_generation(
    uri: *const c_char,
    cache_dir: *const c_char,
    flags: u32,
    generation: u64,
    out: *mut *mut sheaf_dataset,
) -> sheaf_status {
    guard(|| {
        let out = unsafe { required(out, "out") }?;
        *out = std::ptr::null_mut();
        let uri = unsafe { c_os_text(uri, "uri") }?;
        let options = ReadOptions {
            generation: (generation != SHEAF_NEWEST).then_some(generation),
            ..unsafe { open_options(cache_dir, flags) }?
        };
        let inner = Dataset::open_uri_with(uri, options.clone())?;
        let source = Source::One {
            inner: RwLock::new(Arc::new(inner)),
            uri: uri.to_owned(),
            options,
        };
        *out = Box::into_raw(Box::new(sheaf_dataset { source }));
        Ok(SHEAF_OK)
    })
}

/// Opens the tree the routes table at `location` joins (see `sheaf route`): every path is
/// routed to the dataset of the longest prefix holding it, each dataset opened on first use,
/// and the handle is used like a dataset's (paths are those of the joined tree). `cache_dir`
/// and `flags` serve every rule that names no cache of its own. `sheaf_generation` gives the
/// table's version, `sheaf_refresh` reloads it and moves the datasets to their newest
/// generations. A dataset whose store cannot be reached fails its paths with
/// `SHEAF_ORIGIN`, at once for a few seconds after the first failure, and is tried again
/// after that.
#[no_mangle]
pub unsafe extern "C" fn sheaf_open_routes(
    location: *const c_char,
    cache_dir: *const c_char,
    flags: u32,
    out: *mut *mut sheaf_dataset,
) -> sheaf_status {
    guard(|| {
        let out = unsafe { required(out, "out") }?;
        *out = std::ptr::null_mut();
        let location = unsafe { c_os_text(location, "location") }?;
        let options = unsafe { open_options(cache_dir, flags) }?;
        let routes = Routes::open(location, options)?;
        let source = Source::Routes(Arc::new(routes));
        *out = Box::into_raw(Box::new(sheaf_dataset { source }));
        Ok(SHEAF_OK)
    })
}

/// The read options `cache_dir` and `flags` of an open call ask for.
unsafe fn open_options(cache_dir: *const c_char, flags: u32) -> Result<ReadOptions, Failure> {
    if flags & !SHEAF_OPEN_FILL != 0 {
        return Err(Failure::new(
            SHEAF_INVALID_ARGUMENT,
            format!("unknown sheaf_open flags {flags:#x}"),
        ));
    }
    let cache = match cache_dir.is_null() {
        true => None,
        false => Some(Arc::new(Cache::open(unsafe {
            c_os_text(cache_dir, "cache_dir")
        }?)?)),
    };
    Ok(ReadOptions {
        cache,
        fill: flags & SHEAF_OPEN_FILL != 0,
        ..Default::default()
    })
}

/// The generation the dataset handle reads (0 for a dataset written before generations); for
/// a routed tree, the routes table's version.
#[no_mangle]
pub unsafe extern "C" fn sheaf_generation(
    dataset: *const sheaf_dataset,
    out: *mut u64,
) -> sheaf_status {
    guard(|| {
        let reader = unsafe { handle(dataset) }?;
        let out = unsafe { required(out, "out") }?;
        *out = match reader {
            Reader::One(d) => d.generation(),
            Reader::Routes(r) => r.routing().table().number.unwrap_or(0),
        };
        Ok(SHEAF_OK)
    })
}

/// Moves the handle to the dataset's newest generation, if it is newer than the one read:
/// `*moved` is then 1, else 0. Calls already running on other threads finish on the
/// generation they started with; listings and walks keep theirs. A handle opened at a given
/// generation (`sheaf_open_generation`) moves too.
#[no_mangle]
pub unsafe extern "C" fn sheaf_refresh(
    dataset: *const sheaf_dataset,
    moved: *mut i32,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { required_ref(dataset, "dataset") }?;
        let moved = unsafe { required(moved, "moved") }?;
        *moved = 0;
        let (inner, uri, options) = match &dataset.source {
            Source::One {
                inner,
                uri,
                options,
            } => (inner, uri, options),
            Source::Routes(routes) => {
                let (table_changed, datasets_moved) = routes.refresh()?;
                *moved = i32::from(table_changed || datasets_moved > 0);
                return Ok(SHEAF_OK);
            }
        };
        let options = ReadOptions {
            generation: None,
            ..options.clone()
        };
        let current = read_lock(inner).generation();
        let newest = sheaf::format::generation::newest(sheaf::store::open(uri)?.as_ref())?;
        if newest.is_some_and(|n| n > current) {
            let opened = Dataset::open_uri_with(uri, options)?;
            *inner.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(opened);
            *moved = 1;
        }
        Ok(SHEAF_OK)
    })
}

/// Closes a dataset opened by `sheaf_open`. Null is ignored.
#[no_mangle]
pub unsafe extern "C" fn sheaf_close(dataset: *mut sheaf_dataset) {
    unsafe { free_boxed(dataset) }
}

/// Metadata of `path`. With `follow` non-zero a final symlink is followed (as `stat`);
/// otherwise the symlink itself is described (as `lstat`).
#[no_mangle]
pub unsafe extern "C" fn sheaf_stat_path(
    dataset: *const sheaf_dataset,
    path: *const u8,
    path_len: usize,
    follow: i32,
    out: *mut sheaf_stat,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        let path = unsafe { bytes_arg(path, path_len, "path") }?;
        let out = unsafe { required(out, "out") }?;
        let mut entry = dataset.stat(path)?;
        if follow != 0 && entry.kind == EntryKind::Symlink {
            entry = dataset.resolve(path)?;
        }
        *out = sheaf_stat::from(&entry);
        Ok(SHEAF_OK)
    })
}

/// Reads the whole file at `path` (following symlinks) into the caller's buffer `buf` of
/// `capacity` bytes and writes its length to `*len`. When the file is larger than `capacity`,
/// nothing is written to `buf`, `*len` is the size needed and the status is
/// `SHEAF_BUFFER_TOO_SMALL`. Bytes are checked against the index checksum first.
#[no_mangle]
pub unsafe extern "C" fn sheaf_read_into(
    dataset: *const sheaf_dataset,
    path: *const u8,
    path_len: usize,
    buf: *mut u8,
    capacity: usize,
    len: *mut usize,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        let path = unsafe { bytes_arg(path, path_len, "path") }?;
        let len = unsafe { required(len, "len") }?;
        let bytes = dataset.read(path)?;
        *len = bytes.len();
        if bytes.len() > capacity {
            return Err(Failure::new(
                SHEAF_BUFFER_TOO_SMALL,
                format!(
                    "{}: the file has {} bytes, the buffer holds {capacity}",
                    String::from_utf8_lossy(path),
                    bytes.len()
                ),
            ));
        }
        if !bytes.is_empty() {
            if buf.is_null() {
                return Err(Failure::null("buf"));
            }
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len()) };
        }
        Ok(SHEAF_OK)
    })
}

/// Where `sheaf_read_alloc` puts a file: called once with the file's length, it returns memory
/// for at least that many bytes, or null when it has none (the read then fails with
/// `SHEAF_BUFFER_TOO_SMALL`; for a length of 0 nothing is written, so null is accepted, as
/// `malloc(0)` may return). `ctx` is the caller's own pointer, passed through.
pub type sheaf_alloc_fn = Option<unsafe extern "C" fn(ctx: *mut c_void, len: usize) -> *mut u8>;

/// Reads the whole file at `path` (following symlinks) into memory the caller allocates once
/// it knows the length: `alloc(ctx, len)` is called exactly once, on this thread, unless the
/// path is not found (or cannot be read) first; the file's length is written to `*len`. From a
/// cached container the bytes are copied and checked against the index checksum in one pass,
/// where `sheaf_read` and a copy take two. On any status but `SHEAF_OK`, what the memory holds
/// is unspecified: discard it.
#[no_mangle]
pub unsafe extern "C" fn sheaf_read_alloc(
    dataset: *const sheaf_dataset,
    path: *const u8,
    path_len: usize,
    alloc: sheaf_alloc_fn,
    ctx: *mut c_void,
    len: *mut usize,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        let path = unsafe { bytes_arg(path, path_len, "path") }?;
        let len = unsafe { required(len, "len") }?;
        let alloc = alloc.ok_or_else(|| Failure::null("alloc"))?;
        let place = |n: usize| {
            *len = n;
            // SAFETY: the caller promises memory for at least `n` bytes, untouched by anything
            // else until this call returns; the library writes only into it.
            let at = unsafe { alloc(ctx, n) };
            match (at.is_null(), n) {
                (_, 0) => Some(&mut [][..]),
                (true, _) => None,
                (false, n) => Some(unsafe { std::slice::from_raw_parts_mut(at, n) }),
            }
        };
        dataset.read_placed(path, place)?;
        Ok(SHEAF_OK)
    })
}

/// Reads the whole file at `path` (following symlinks) into memory the library owns, checked
/// against the index checksum; release it with `sheaf_bytes_free`. From a cached container the
/// bytes are not copied at all.
#[no_mangle]
pub unsafe extern "C" fn sheaf_read(
    dataset: *const sheaf_dataset,
    path: *const u8,
    path_len: usize,
    out: *mut sheaf_bytes,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        let path = unsafe { bytes_arg(path, path_len, "path") }?;
        let out = unsafe { required(out, "out") }?;
        *out = sheaf_bytes {
            data: std::ptr::null(),
            len: 0,
            owner: std::ptr::null_mut(),
        };
        let bytes = Box::new(dataset.read(path)?);
        out.data = bytes.as_ptr();
        out.len = bytes.len();
        out.owner = Box::into_raw(bytes).cast();
        Ok(SHEAF_OK)
    })
}

/// Releases bytes from `sheaf_read` and clears `*bytes`. Null, or bytes already freed, are
/// ignored.
#[no_mangle]
pub unsafe extern "C" fn sheaf_bytes_free(bytes: *mut sheaf_bytes) {
    let Some(bytes) = (unsafe { bytes.as_mut() }) else {
        return;
    };
    let owner = std::mem::replace(&mut bytes.owner, std::ptr::null_mut());
    bytes.data = std::ptr::null();
    bytes.len = 0;
    unsafe { free_boxed(owner.cast::<sheaf::read::Buffer>()) }
}

/// The number of entries (files, directories, symlinks) the dataset's catalog records.
#[no_mangle]
pub unsafe extern "C" fn sheaf_entry_count(
    dataset: *const sheaf_dataset,
    count: *mut u64,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        let count = unsafe { required(count, "count") }?;
        *count = dataset.entry_count()?;
        Ok(SHEAF_OK)
    })
}

/// How many counters `sheaf_stats` reports.
#[no_mangle]
pub extern "C" fn sheaf_counter_count() -> usize {
    Counter::ALL.len()
}

/// The name of counter `i` (such as "hits" or "origin_reads"), a static NUL-terminated
/// string; null when `i` is out of range.
#[no_mangle]
pub extern "C" fn sheaf_counter_name(i: usize) -> *const c_char {
    static NAMES: OnceLock<Vec<CString>> = OnceLock::new();
    let names = NAMES.get_or_init(|| {
        Counter::ALL
            .iter()
            .map(|c| CString::new(c.name()).expect("counter names hold no NUL"))
            .collect()
    });
    names.get(i).map_or(std::ptr::null(), |name| name.as_ptr())
}

/// Writes this dataset's counters, in the order of `sheaf_counter_name`, to `values` (room
/// for `capacity`) and how many were written to `*written`.
#[no_mangle]
pub unsafe extern "C" fn sheaf_stats(
    dataset: *const sheaf_dataset,
    values: *mut u64,
    capacity: usize,
    written: *mut usize,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        let written = unsafe { required(written, "written") }?;
        if values.is_null() && capacity > 0 {
            return Err(Failure::null("values"));
        }
        let counters = dataset.counters();
        let count = capacity.min(counters.len());
        for (i, value) in counters.into_iter().take(count).enumerate() {
            unsafe { *values.add(i) = value };
        }
        *written = count;
        Ok(SHEAF_OK)
    })
}

/// Drops something the library boxed for the caller; null is ignored.
unsafe fn free_boxed<T>(ptr: *mut T) {
    if !ptr.is_null() {
        guard(|| {
            drop(unsafe { Box::from_raw(ptr) });
            Ok(SHEAF_OK)
        });
    }
}

/// The caller's out-parameter or handle behind a pointer that must not be null.
unsafe fn required<'a, T>(ptr: *mut T, what: &str) -> Result<&'a mut T, Failure> {
    unsafe { ptr.as_mut() }.ok_or_else(|| Failure::null(what))
}

/// A read-only argument behind a pointer that must not be null.
unsafe fn required_ref<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, Failure> {
    unsafe { ptr.as_ref() }.ok_or_else(|| Failure::null(what))
}

/// What a handle reads now (for a dataset, the generation), held for the length of one call.
unsafe fn handle(dataset: *const sheaf_dataset) -> Result<Reader, Failure> {
    let dataset = unsafe { required_ref(dataset, "dataset") }?;
    Ok(match &dataset.source {
        Source::One { inner, .. } => Reader::One(Arc::clone(&read_lock(inner))),
        Source::Routes(routes) => Reader::Routes(Arc::clone(routes)),
    })
}

/// A read lock that a panic elsewhere does not poison (the value is a whole `Arc`).
fn read_lock<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

/// A byte-string argument; a null pointer is allowed only with length 0.
unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Failure> {
    match (ptr.is_null(), len) {
        (true, 0) => Ok(&[]),
        (true, _) => Err(Failure::null(what)),
        (false, _) => Ok(unsafe { std::slice::from_raw_parts(ptr, len) }),
    }
}

/// A NUL-terminated string argument naming a location: its bytes as they are, so that local
/// paths need not be UTF-8 (a URI must be, which `store::open` checks).
unsafe fn c_os_text<'a>(ptr: *const c_char, what: &str) -> Result<&'a OsStr, Failure> {
    if ptr.is_null() {
        return Err(Failure::null(what));
    }
    Ok(OsStr::from_bytes(unsafe { CStr::from_ptr(ptr) }.to_bytes()))
}
