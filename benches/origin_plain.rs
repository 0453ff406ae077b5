//! The plain files of a corpus in a store, read with the store's own client: the peer of a
//! mount that reads a folded dataset straight from its origin (benches/mount_from_origin.py).
//!
//!     cargo bench --bench origin_plain -- upload --uri URI --source DIR
//!     cargo bench --bench origin_plain -- read --uri URI --source DIR [--threads T] [--seed S]
//!
//! `upload` writes every file of DIR as an object under URI (the store's settings come from the
//! environment, as for the CLI). `read` fetches every one of them once, whole, in a seeded
//! random order split over T threads (default 1), with the same client sheaf uses (object_store
//! for S3, hdfs-native for HDFS): one request a file, the least any client can make. Every file
//! is compared with its source (untimed). Prints one JSON line: files, seconds, files_per_s.

mod common;

use common::{list_files, Rng};
use sheaf::store::{self, Store};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Settings {
    mode: String,
    uri: String,
    source: PathBuf,
    threads: usize,
    seed: u64,
}

fn settings() -> Option<Settings> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args
        .iter()
        .find(|a| *a == "upload" || *a == "read")?
        .clone();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Some(Settings {
        mode,
        uri: value("--uri")?,
        source: PathBuf::from(value("--source")?),
        threads: value("--threads").map_or(1, |t| t.parse().expect("--threads T")),
        seed: value("--seed").map_or(1, |s| s.parse().expect("--seed S")),
    })
}

/// Uploads every file, 16 at a time (closing an HDFS file waits on the DataNode's report, so
/// one after another takes half a second a file).
fn upload(store: &dyn Store, s: &Settings, files: &[String]) {
    std::thread::scope(|scope| {
        for part in files.chunks(files.len().div_ceil(16).max(1)) {
            scope.spawn(move || {
                for path in part {
                    let bytes = std::fs::read(s.source.join(path)).unwrap();
                    let mut out = store.create(path).expect("create");
                    out.write_all(&bytes).unwrap();
                    out.finish().expect("finish");
                }
            });
        }
    });
    println!("{{\"uploaded\": {}}}", files.len());
}

/// Reads `paths` in order through `store`; returns the time spent in the reads alone.
fn read_slice(store: &dyn Store, s: &Settings, paths: &[String]) -> Duration {
    let mut busy = Duration::ZERO;
    for path in paths {
        let started = Instant::now();
        let got = store.read(path).expect("read");
        busy += started.elapsed();
        let want = std::fs::read(s.source.join(path)).unwrap();
        assert!(got == want, "{path}: other bytes through the store");
    }
    busy
}

fn read(store: Arc<dyn Store>, s: &Settings, mut files: Vec<String>) {
    let mut rng = Rng(s.seed.max(1));
    for i in (1..files.len()).rev() {
        files.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let started = Instant::now();
    let slowest = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..s.threads)
            .map(|t| {
                let slice: Vec<String> = files.iter().skip(t).step_by(s.threads).cloned().collect();
                let store = store.clone();
                scope.spawn(move || read_slice(store.as_ref(), s, &slice))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap())
            .max()
            .unwrap_or_default()
    });
    let wall = started.elapsed().as_secs_f64();
    let secs = slowest.as_secs_f64();
    println!(
        "{{\"files\": {}, \"seconds\": {secs:.6}, \"wall_seconds\": {wall:.6}, \"files_per_s\": {:.3}}}",
        files.len(),
        files.len() as f64 / secs
    );
}

fn main() {
    let Some(s) = settings() else {
        // A bare `cargo bench` runs every bench: this one needs a store and a mode.
        println!("origin_plain: skipped; run by benches/mount_from_origin.py (see its --help)");
        return;
    };
    let store = store::open(&s.uri).expect("open the store");
    let files = list_files(&s.source);
    match s.mode.as_str() {
        "upload" => upload(store.as_ref(), &s, &files),
        _ => read(store, &s, files),
    }
}
