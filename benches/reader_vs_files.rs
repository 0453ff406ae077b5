//! Random-order reads of every file of a tree: sheaf's cache-aware reader over a preloaded
//! (warm) cache against open/read/close of the same files as plain files, in one run.
//!
//!     cargo bench --bench reader_vs_files -- [--files N] [--runs R] [--corpus DIR] [--threads T,..]
//!
//! Without --corpus a deterministic tree shaped like a training set is generated under
//! bench-out/ (half labels of 0.1-2 KiB, half images of 20-200 KiB, in 100 directories). It is
//! folded, preloaded into a cache directory, and every file is read once by each system to warm
//! the page cache; then each timed round reads every file in the same shuffled order with each
//! system, alternating. Every system's reads are checksummed and must agree. A third "system",
//! the floor, hashes each file's bytes already in hand (found before timing): the consumer's
//! own pass and nothing else, which bounds what any reader can gain over open/read/close.
//! Prints medians, files/s and the ratio; writes bench-out/reader_vs_files.csv.

mod common;

use common::{list_files, Rng};
use sheaf::cache::{preload, Cache, PreloadOptions};
use sheaf::fold::{fold, FoldOptions, Target};
use sheaf::progress::Silent;
use sheaf::{Dataset, ReadOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

struct Settings {
    files: usize,
    runs: usize,
    corpus: Option<PathBuf>,
    threads: Vec<usize>,
}

fn settings() -> Settings {
    let mut s = Settings {
        files: 20_000,
        runs: 5,
        corpus: None,
        threads: vec![1, 4],
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--files" => s.files = value.parse().expect("--files N"),
            "--runs" => s.runs = value.parse().expect("--runs R"),
            "--corpus" => s.corpus = Some(PathBuf::from(value)),
            "--threads" => {
                s.threads = value
                    .split(',')
                    .map(|t| t.parse().expect("--threads 1,4"))
                    .collect()
            }
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

fn generate(root: &Path, files: usize) {
    let done = root.join(".complete");
    if done.exists() {
        return;
    }
    let _ = std::fs::remove_dir_all(root);
    let mut rng = Rng(0x5eed);
    for i in 0..files {
        let dir = root.join(format!("class{:03}", i % 100));
        std::fs::create_dir_all(&dir).unwrap();
        let (name, len) = if i % 2 == 0 {
            (format!("{i:08}.json"), 100 + rng.below(1948))
        } else {
            (format!("{i:08}.jpg"), (20 << 10) + rng.below(180 << 10))
        };
        let bytes: Vec<u8> = (0..len.div_ceil(8))
            .flat_map(|_| rng.next().to_le_bytes())
            .take(len as usize)
            .collect();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::write(done, b"").unwrap();
}

/// One system's read of a file, returning a checksum of its bytes.
type ReadFn<'a> = &'a (dyn Fn(&str) -> u64 + Sync);

/// Reads every path with `threads` threads (each a contiguous share of the shuffled order);
/// returns (seconds, checksum over everything read).
fn timed(paths: &[String], threads: usize, read: ReadFn) -> (f64, u64) {
    let started = Instant::now();
    let chunk = paths.len().div_ceil(threads);
    let sum = std::thread::scope(|scope| {
        let handles: Vec<_> = paths
            .chunks(chunk)
            .map(|share| scope.spawn(move || share.iter().fold(0u64, |acc, p| acc ^ read(p))))
            .collect();
        handles
            .into_iter()
            .fold(0u64, |acc, h| acc ^ h.join().unwrap())
    });
    (started.elapsed().as_secs_f64(), sum)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn main() {
    let s = settings();
    let out = PathBuf::from("bench-out");
    let corpus = s
        .corpus
        .clone()
        .unwrap_or_else(|| out.join(format!("reader-corpus-n{}", s.files)));
    if s.corpus.is_none() {
        generate(&corpus, s.files);
    }
    let dataset = out.join("reader-dataset");
    let cache_dir = out.join("reader-cache");
    let _ = std::fs::remove_dir_all(&dataset);
    let _ = std::fs::remove_dir_all(&cache_dir);
    let target = Target::NewRoot {
        src: corpus.clone(),
        dst: dataset.clone(),
    };
    fold(&target, &FoldOptions::default(), &Silent).expect("fold");
    let cache = Arc::new(Cache::open(&cache_dir).expect("cache"));
    let uri = dataset.to_str().unwrap().to_owned();
    let options = PreloadOptions {
        jobs: 4,
        ..Default::default()
    };
    preload(&uri, &cache, &options, &Silent).expect("preload");
    let reader = Dataset::open_uri_with(
        &uri,
        ReadOptions {
            cache: Some(cache),
            ..Default::default()
        },
    )
    .expect("open");

    let mut paths = list_files(&corpus);
    let mut rng = Rng(42);
    for i in (1..paths.len()).rev() {
        paths.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let plain = |p: &str| xxh3_64(&std::fs::read(corpus.join(p)).unwrap());
    let sheaf = |p: &str| xxh3_64(&reader.read(p.as_bytes()).unwrap());
    // The ceiling: every file's bytes already in hand (slices of the mapped containers, found
    // before timing), so a round is the consumer's own pass over the bytes and nothing else.
    // No reader that delivers the bytes can beat it; plain / floor is the most any can gain.
    let in_hand: HashMap<&str, _> = paths
        .iter()
        .map(|p| (p.as_str(), reader.read(p.as_bytes()).unwrap()))
        .collect();
    let floor = |p: &str| xxh3_64(&in_hand[p]);
    let systems: [(&str, ReadFn); 3] = [
        ("plain open/read/close", &plain),
        ("sheaf reader (cache)", &sheaf),
        ("floor: bytes in hand", &floor),
    ];

    println!(
        "{} files, {} runs, random order, warm page cache",
        paths.len(),
        s.runs
    );
    let mut csv = String::from("threads,system,median_secs,files_per_sec,ratio_to_plain\n");
    for &threads in &s.threads {
        let mut times = vec![Vec::new(); systems.len()];
        let mut sums = vec![0u64; systems.len()];
        for (i, (_, read)) in systems.iter().enumerate() {
            sums[i] = timed(&paths, threads, *read).1;
        }
        assert!(
            sums.iter().all(|&x| x == sums[0]),
            "the systems returned different bytes"
        );
        for _ in 0..s.runs {
            for (i, (_, read)) in systems.iter().enumerate() {
                let (secs, sum) = timed(&paths, threads, *read);
                assert_eq!(sum, sums[0]);
                times[i].push(secs);
            }
        }
        let plain_median = median(times[0].clone());
        for (i, (name, _)) in systems.iter().enumerate() {
            let m = median(times[i].clone());
            let rate = paths.len() as f64 / m;
            let ratio = plain_median / m;
            println!(
                "threads {threads}  {name:<24} {m:>8.3} s  {rate:>10.0} files/s  {ratio:>5.2}x plain"
            );
            csv.push_str(&format!("{threads},{name},{m:.4},{rate:.0},{ratio:.3}\n"));
        }
    }
    std::fs::write(out.join("reader_vs_files.csv"), csv).unwrap();
    println!("checksums agree; written bench-out/reader_vs_files.csv");
}
