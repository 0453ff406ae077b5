//! Reads and preloads from a remote store (S3, HDFS, Azure) against plain downloads, counting
//! the requests sheaf makes.
//!
//!     cargo bench --bench remote -- --uri URI --source DIR [--reads N] [--jobs J] [--runs R]
//!
//! URI is a dataset already folded from DIR (`sheaf fold DIR URI`); the store's settings come
//! from the environment as for the CLI (`target/test-servers.env` for the test servers).
//! Three measurements, all on the same objects:
//!
//! - requests: the dataset is opened without a cache through a store that counts every request,
//!   then N files in random order are read; reported are the requests before the first read,
//!   the requests per file once each container's index is loaded (the bar: one), and files/s.
//!   Every file read is compared byte for byte with its source.
//! - preload: `preload` of the whole dataset into an empty cache with J jobs.
//! - plain download: the same container objects fetched with J threads as 8 MiB ranged
//!   requests written at their offsets into local files, then synced: what a parallel
//!   downloader does, without any checking.
//!
//! The two copies run R rounds, alternating which goes first; medians.
//!
//! Prints a small table and writes bench-out/remote-<scheme>.csv.

mod common;

use common::{list_files, Rng};
use sheaf::cache::{preload, Cache, PreloadOptions};
use sheaf::layout::container_key;
use sheaf::progress::Silent;
use sheaf::store::memory::Counting;
use sheaf::store::{self, Store};
use sheaf::Dataset;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

const RANGE: u64 = 8 << 20;

struct Settings {
    uri: String,
    source: PathBuf,
    reads: usize,
    jobs: usize,
    runs: usize,
}

fn settings() -> Settings {
    let mut s = Settings {
        uri: String::new(),
        source: PathBuf::new(),
        reads: 2000,
        jobs: 4,
        runs: 3,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--uri" => s.uri = value,
            "--source" => s.source = PathBuf::from(value),
            "--reads" => s.reads = value.parse().expect("--reads N"),
            "--jobs" => s.jobs = value.parse().expect("--jobs J"),
            "--runs" => s.runs = value.parse().expect("--runs R"),
            // cargo bench passes --bench; anything else unknown is ignored too.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    s
}

const USAGE: &str =
    "cargo bench --bench remote -- --uri URI --source DIR [--reads N] [--jobs J] [--runs R]";

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

struct RequestFigures {
    at_open: usize,
    index_loads: usize,
    per_entry: f64,
    files_per_sec: f64,
}

/// Reads `count` random files without a cache through a counting store. Requests made while
/// a container is first touched (its tail and index) are told apart from the entry reads by
/// counting the containers touched: each costs exactly one extra request when the index fits
/// the tail read, which is what SPEC.md's layout aims for.
fn count_requests(s: &Settings, files: &[String]) -> RequestFigures {
    let counting = Arc::new(Counting::new(store::open(&s.uri).expect("open the store")));
    let dataset = Dataset::open_in(counting.clone()).expect("open the dataset");
    let at_open = counting.requests();
    let containers = dataset.catalog().rows().len();
    // Touch every container once (one file each is enough when files are spread over them)
    // so the timed part below measures entry reads alone.
    let mut rng = Rng(7);
    let picks: Vec<&String> = (0..s.reads)
        .map(|_| &files[rng.below(files.len() as u64) as usize])
        .collect();
    let warm_started = counting.requests();
    let mut warm_reads = 0;
    for path in files
        .iter()
        .step_by(files.len().div_ceil(containers * 8).max(1))
    {
        dataset.read(path.as_bytes()).expect("read");
        warm_reads += 1;
    }
    let after_warm = counting.requests();
    let started = Instant::now();
    for path in &picks {
        let got = dataset.read(path.as_bytes()).expect("read");
        let want = std::fs::read(s.source.join(path)).unwrap();
        assert!(got.as_slice() == want.as_slice(), "{path}: other bytes");
    }
    let secs = started.elapsed().as_secs_f64();
    let entry_requests = counting.requests() - after_warm;
    RequestFigures {
        at_open,
        index_loads: after_warm - warm_started - warm_reads,
        per_entry: entry_requests as f64 / picks.len() as f64,
        files_per_sec: picks.len() as f64 / secs,
    }
}

/// One preload of the whole dataset into an empty cache under `dir`: (seconds, bytes copied).
fn preload_once(s: &Settings, dir: &Path) -> (f64, u64) {
    let _ = std::fs::remove_dir_all(dir);
    let cache = Cache::open(dir).expect("cache");
    let options = PreloadOptions {
        jobs: s.jobs,
        ..Default::default()
    };
    let started = Instant::now();
    let summary = preload(&s.uri, &cache, &options, &Silent).expect("preload");
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(dir).unwrap();
    (secs, summary.bytes_fetched)
}

/// The container objects of the dataset: (key, length).
fn container_objects(origin: &Arc<dyn Store>) -> Vec<(String, u64)> {
    let dataset = Dataset::open_in(origin.clone()).expect("open the dataset");
    dataset
        .catalog()
        .rows()
        .iter()
        .map(|row| (container_key(&row.name), row.file_len))
        .collect()
}

/// Every container object as 8 MiB ranges fetched by `jobs` threads and written in place
/// under `dir`, then synced: seconds.
fn download_once(s: &Settings, origin: &dyn Store, objects: &[(String, u64)], dir: &Path) -> f64 {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let started = Instant::now();
    let files: Vec<std::fs::File> = objects
        .iter()
        .enumerate()
        .map(|(i, (_, len))| {
            let f = std::fs::File::create(dir.join(format!("{i}"))).unwrap();
            f.set_len(*len).unwrap();
            f
        })
        .collect();
    let work: Vec<(usize, Range<u64>)> = objects
        .iter()
        .enumerate()
        .flat_map(|(i, &(_, len))| {
            (0..len)
                .step_by(RANGE as usize)
                .map(move |at| (i, at..(at + RANGE).min(len)))
        })
        .collect();
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..s.jobs {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let Some((i, range)) = work.get(n) else { break };
                let bytes = origin.read_range(&objects[*i].0, range.clone()).unwrap();
                files[*i].write_all_at(&bytes, range.start).unwrap();
            });
        }
    });
    for f in &files {
        f.sync_all().unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_dir_all(dir).unwrap();
    secs
}

/// Preload and plain download, `runs` rounds, the two alternating which goes first (a run
/// pays for the writeback the one before it left): medians of (preload s, download s) and
/// the bytes each copied.
fn time_copies(s: &Settings, scratch: &Path) -> (f64, f64, u64) {
    let origin = store::open(&s.uri).expect("open the store");
    let objects = container_objects(&origin);
    let total: u64 = objects.iter().map(|(_, len)| len).sum();
    let (mut preloads, mut downloads) = (Vec::new(), Vec::new());
    for run in 0..s.runs {
        let mut preload_run = || {
            let (secs, bytes) = preload_once(s, &scratch.join("cache"));
            assert_eq!(bytes, total, "preload copies every container");
            preloads.push(secs);
        };
        let download_dir = scratch.join("download");
        if run % 2 == 0 {
            preload_run();
            downloads.push(download_once(s, origin.as_ref(), &objects, &download_dir));
        } else {
            downloads.push(download_once(s, origin.as_ref(), &objects, &download_dir));
            preload_run();
        }
    }
    (median(preloads), median(downloads), total)
}

fn main() {
    let s = settings();
    if s.uri.is_empty() || !s.source.is_dir() {
        // A bare `cargo bench` runs every bench: this one needs a store, so it says how to
        // run it instead of failing (benches/compare.py runs it against the test servers).
        println!("remote: skipped; it needs a folded dataset on a store: {USAGE}");
        return;
    }
    let scheme = s.uri.split("://").next().unwrap_or("local").to_owned();
    let scratch = PathBuf::from("bench-out").join(format!("remote-{scheme}"));
    std::fs::create_dir_all(&scratch).unwrap();
    let files = list_files(&s.source);

    let r = count_requests(&s, &files);
    println!(
        "{scheme}: open {} request(s); {} request(s) to load the touched indexes; \
         {:.3} request(s) per entry over {} random reads; {:.0} files/s (1 thread, no cache)",
        r.at_open, r.index_loads, r.per_entry, s.reads, r.files_per_sec
    );
    let (preload_secs, plain_secs, plain_bytes) = time_copies(&s, &scratch);
    let preload_bytes = plain_bytes;
    let mib = |bytes: u64, secs: f64| bytes as f64 / secs / (1 << 20) as f64;
    let ratio = plain_secs / preload_secs;
    println!(
        "{scheme}: preload {:.3} s ({:.0} MiB/s), plain parallel download {:.3} s ({:.0} MiB/s), \
         {} jobs, {:.2}x",
        preload_secs,
        mib(preload_bytes, preload_secs),
        plain_secs,
        mib(plain_bytes, plain_secs),
        s.jobs,
        ratio
    );
    let csv = format!(
        "scheme,requests_at_open,index_requests,requests_per_entry,reads,files_per_sec,\
         preload_secs,download_secs,bytes,jobs,preload_over_download\n\
         {scheme},{},{},{:.4},{},{:.1},{:.4},{:.4},{},{},{:.3}\n",
        r.at_open,
        r.index_loads,
        r.per_entry,
        s.reads,
        r.files_per_sec,
        preload_secs,
        plain_secs,
        plain_bytes,
        s.jobs,
        ratio
    );
    std::fs::write(
        PathBuf::from("bench-out").join(format!("remote-{scheme}.csv")),
        csv,
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
}
