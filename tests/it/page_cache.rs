//! Datasets larger than memory: what reads leave in the page cache, seen with `mincore` on the
//! container: a random read brings in its own pages, not the device's read-ahead window around
//! them; reads going forward are read ahead of; a whole-container scan keeps read-ahead. The
//! mount's half (no second copy of what it serves) is in `mount`.

use crate::util::*;
use sheaf::format::Container;
use sheaf::store::{Access, LocalStore, Pages, ReadPolicy};
use sheaf::{Dataset, ReadOptions};
use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes of each file of [`folded_tree`].
pub const FILE_LEN: usize = 64 << 10;
/// Files in [`folded_tree`].
pub const FILES: usize = 64;
const PAGE: u64 = 4096;

/// A scratch directory on the disk that holds the build (target/tmp): pages there can be
/// dropped and read back, which a RAM-backed /tmp would not show.
pub fn disk_tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("sheaf-pages-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// The name of file `i` of [`folded_tree`].
pub fn file_name(i: usize) -> String {
    format!("d/f{i:02}")
}

/// Folds [`FILES`] files of [`FILE_LEN`] random bytes into one container under `dir`; returns
/// the dataset root, the container's path, where its data ends, and each file's bytes.
pub fn folded_tree(dir: &Path) -> (PathBuf, PathBuf, u64, Vec<Vec<u8>>) {
    let tree = Tree::new(dir.join("src"));
    let mut rng = Rng::new(7);
    let contents: Vec<Vec<u8>> = (0..FILES)
        .map(|i| {
            let bytes = rng.bytes(FILE_LEN);
            tree.file(file_name(i), &bytes);
            bytes
        })
        .collect();
    let ds = dir.join("ds");
    fold(
        &dir.join("src"),
        &ds,
        &["--threshold", "4MiB", "--container-size", "1GiB"],
    )
    .success();
    let container = containers(&ds).remove(0);
    let data_len = Container::open(&container).unwrap().footer().data_len;
    assert!(data_len >= (FILES * FILE_LEN) as u64);
    (ds, container, data_len, contents)
}

/// Writes `file`'s pages back and drops them from the page cache, then checks they are gone:
/// the tests need a filesystem whose pages can be dropped.
pub fn evict(file: &Path) {
    let handle = File::open(file).unwrap();
    handle.sync_all().unwrap();
    // SAFETY: advice on a descriptor this function owns.
    let rc = unsafe { libc::posix_fadvise(handle.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(rc, 0);
    let len = handle.metadata().unwrap().len();
    assert_eq!(
        resident_pages(file, 0..len),
        0,
        "{} keeps its pages after POSIX_FADV_DONTNEED: these tests need a disk-backed \
         filesystem under target/",
        file.display()
    );
}

/// Pages of `file` within `range` that are in the page cache now.
pub fn resident_pages(file: &Path, range: Range<u64>) -> usize {
    let handle = File::open(file).unwrap();
    // SAFETY: a read-only mapping of a file nothing truncates while it lives; only mincore
    // looks at it, which reads no page.
    let map = unsafe { memmap2::Mmap::map(&handle) }.unwrap();
    let start = range.start / PAGE * PAGE;
    let end = range.end.min(map.len() as u64);
    if start >= end {
        return 0;
    }
    let len = (end - start) as usize;
    let mut pages = vec![0u8; len.div_ceil(PAGE as usize)];
    // SAFETY: the address is page-aligned inside the mapping, `len` stays inside it, and
    // `pages` has one byte per page of it.
    let rc = unsafe {
        libc::mincore(
            map.as_ptr().add(start as usize) as *mut libc::c_void,
            len,
            pages.as_mut_ptr(),
        )
    };
    assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
    pages.iter().filter(|&&p| p & 1 == 1).count()
}

/// The dataset at `ds`, read as one larger than memory (a dataset this small fits in memory,
/// where the default policy lets the kernel read around).
fn open_exact(ds: &Path) -> Dataset {
    let options = ReadOptions {
        policy: ReadPolicy {
            access: Access::Random,
            pages: Pages::Keep,
        },
        ..Default::default()
    };
    let dataset = Dataset::open_in_with(std::sync::Arc::new(LocalStore::new(ds)), options);
    dataset.unwrap()
}

/// Pages a read of `len` bytes may touch: its own, and one more where it starts mid-page.
fn pages_of(len: usize) -> usize {
    len.div_ceil(PAGE as usize) + 1
}

#[test]
fn a_random_read_brings_in_its_own_pages_not_the_read_ahead_window_around_them() {
    let dir = disk_tempdir();
    let (ds, container, data_len, contents) = folded_tree(dir.path());
    evict(&container);
    let dataset = open_exact(&ds);
    // Opening reads the index only.
    assert_eq!(resident_pages(&container, 0..data_len), 0);
    let mut read = 0;
    for i in [31, 7, 52] {
        let bytes = dataset.read(file_name(i).as_bytes()).unwrap();
        assert_eq!(bytes.as_slice(), contents[i].as_slice());
        read += 1;
        let resident = resident_pages(&container, 0..data_len);
        // A plain mapping reads the device's whole read-ahead window around a fault (128 KiB
        // to megabytes, here the whole 4 MiB container): far more than these.
        assert!(
            resident <= read * pages_of(FILE_LEN) && resident >= read * FILE_LEN / PAGE as usize,
            "{resident} pages resident after {read} reads of {} pages each",
            FILE_LEN / PAGE as usize
        );
    }
}

#[test]
fn reads_going_forward_through_a_container_are_read_ahead_of() {
    let dir = disk_tempdir();
    let (ds, container, data_len, contents) = folded_tree(dir.path());
    evict(&container);
    let dataset = open_exact(&ds);
    for (i, content) in contents.iter().enumerate().take(4) {
        let bytes = dataset.read(file_name(i).as_bytes()).unwrap();
        assert_eq!(bytes.as_slice(), content.as_slice());
    }
    // The pages of the files not read yet arrive in the background.
    let ahead = (4 * FILE_LEN) as u64 + PAGE..data_len;
    let wanted = (ahead.end - ahead.start) / PAGE / 2;
    let started = Instant::now();
    while (resident_pages(&container, ahead.clone()) as u64) < wanted {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "after four reads in order, {} of the {} pages ahead are in memory",
            resident_pages(&container, ahead.clone()),
            (ahead.end - ahead.start) / PAGE
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for (i, content) in contents.iter().enumerate().skip(4) {
        assert_eq!(
            dataset.read(file_name(i).as_bytes()).unwrap().as_slice(),
            content.as_slice()
        );
    }
}

#[test]
fn a_dataset_that_fits_in_memory_is_read_around() {
    // The default policy, for a dataset far smaller than memory: one read brings in its
    // neighbours (the kernel's read-around), so a cold pass costs a few large requests.
    let dir = disk_tempdir();
    let (ds, container, data_len, contents) = folded_tree(dir.path());
    evict(&container);
    let dataset = Dataset::open(&ds).unwrap();
    assert_eq!(dataset.policy().access, Access::Around);
    let bytes = dataset.read(file_name(31).as_bytes()).unwrap();
    assert_eq!(bytes.as_slice(), contents[31].as_slice());
    let resident = resident_pages(&container, 0..data_len);
    assert!(
        resident > pages_of(FILE_LEN),
        "only {resident} pages resident after one read with read-around"
    );
}

#[test]
fn verify_and_unfold_read_whole_containers_and_get_every_byte_right() {
    // Whole-container passes keep the kernel's read-ahead; what matters here is that they
    // still read every byte right from a container whose pages start out on the disk only.
    let dir = disk_tempdir();
    let (ds, container, data_len, _) = folded_tree(dir.path());
    evict(&container);
    run!("verify", ds).success();
    assert!(resident_pages(&container, 0..data_len) > 0);
    evict(&container);
    let out = dir.path().join("out");
    run!("unfold", ds, out).success();
    assert_same_tree(
        &snapshot(&dir.path().join("src"), false),
        &snapshot(&out, false),
    );
}
