//! The SSD cache tier: preload, reads that cost the origin nothing, quota and eviction, pins,
//! racing preloads, a cache damaged under a live reader, the origin going away, an interrupted
//! preload and read-through fill, on the local filesystem and the real S3 and HDFS servers.

use crate::conformance::{backends, fresh_location, through_proxy, Backend};
use crate::util::*;
use sheaf::cache::{Cache, Counter};
use sheaf::store::memory::Counting;
use sheaf::{Dataset, ReadOptions};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::{Duration, Instant};

/// A tree of small files in ten directories, folded into many small containers: (path, bytes).
fn small_tree(root: &Path, files: usize) -> BTreeMap<String, Vec<u8>> {
    let t = Tree::new(root);
    let mut rng = Rng::new(5);
    let mut out = BTreeMap::new();
    for i in 0..files {
        let path = format!("d{}/f{i:04}", i % 10);
        let len = 200 + rng.below(700) as usize;
        let bytes = content(&mut rng, len);
        t.file(&path, &bytes);
        out.insert(path, bytes);
    }
    out
}

/// Folds `src` to a fresh location on `backend` with 8 KiB containers.
fn fold_to(backend: &Backend, src: &Path, scratch: &Path, label: &str) -> String {
    let uri = fresh_location(backend, scratch, label);
    fold(src, Path::new(&uri), &["--container-size", "8KiB"]).success();
    uri
}

fn open_cached(uri: &str, cache: &Path) -> Dataset {
    Dataset::open_uri_with(uri, options(cache)).unwrap()
}

fn options(cache: &Path) -> ReadOptions {
    ReadOptions {
        cache: Some(Arc::new(Cache::open(cache).unwrap())),
        ..Default::default()
    }
}

/// Reads [`read_all`] makes of each file.
const READS_PER_FILE: u64 = 2;

/// Reads every file twice: into memory of our own first (from a cached copy, copied and
/// checked in one pass: the first read of a damaged copy goes this way), then as a buffer.
fn read_all(dataset: &Dataset, files: &BTreeMap<String, Vec<u8>>) {
    for (path, bytes) in files {
        let mut placed = Vec::new();
        let room = &mut placed;
        let len = dataset
            .read_placed(path.as_bytes(), move |n| {
                room.resize(n, 0);
                Some(room.as_mut_slice())
            })
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            len == bytes.len() && placed == *bytes,
            "{path}: wrong bytes placed"
        );
        let read = dataset
            .read(path.as_bytes())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(read.as_slice() == bytes.as_slice(), "{path}: wrong bytes");
    }
}

fn preload(uri: &str, cache: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["preload", uri, "--cache", cache.to_str().unwrap(), "--json"];
    args.extend(extra);
    sheaf(args).success().json()
}

fn cached_files(cache: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(cache.join("containers"))
        .unwrap()
        .map(|c| c.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn cold_reads_go_to_the_origin_and_preloaded_reads_cost_the_origin_nothing() {
    let tmp = tempdir();
    let files = small_tree(&tmp.path().join("src"), 300);
    for backend in backends() {
        let uri = fold_to(&backend, &tmp.path().join("src"), tmp.path(), "preload");
        let cache = tmp.path().join(format!("cache-{}", backend.name));

        let cold = open_cached(&uri, &cache);
        read_all(&cold, &files);
        let stats = cold.stats();
        assert_eq!(stats.get(Counter::Hits), 0, "{}", backend.name);
        let reads = READS_PER_FILE * files.len() as u64;
        assert_eq!(stats.get(Counter::Misses), reads);
        assert_eq!(stats.get(Counter::OriginReads), reads);

        let summary = preload(&uri, &cache, &[]);
        let containers = num(&summary, "containers");
        assert!(containers > 5, "{}: {summary:#}", backend.name);
        assert_eq!(num(&summary, "fetched"), containers);
        let again = preload(&uri, &cache, &[]);
        assert_eq!(num(&again, "fetched"), 0, "a second preload copies nothing");
        assert_eq!(num(&again, "already_cached"), containers);

        let store = sheaf::store::open(&uri).unwrap();
        let counting = Arc::new(Counting::new(store));
        let warm = Dataset::open_in_with(counting.clone(), options(&cache)).unwrap();
        read_all(&warm, &files);
        let stats = warm.stats();
        assert_eq!(stats.get(Counter::Hits), reads, "{}", backend.name);
        // A caller that has no room for a file gets an error naming it, from the cache or not.
        let name = files.keys().next().unwrap();
        for dataset in [&warm, &cold] {
            let refused = dataset.read_placed(name.as_bytes(), |_| None);
            assert!(
                matches!(&refused, Err(sheaf::Error::NoRoom { path, .. }) if path == name),
                "{}: {refused:?}",
                backend.name
            );
        }
        assert_eq!(stats.get(Counter::OriginReads), 0);
        if backend.base.is_some() {
            assert_eq!(
                counting.requests(),
                0,
                "{}: a preloaded dataset is opened and read without one origin request",
                backend.name
            );
        }
        // Paths not in index form miss the cached fast path's exact lookup and are normalized
        // (or refused) the general way, still from the cache.
        let (name, bytes) = files.iter().find(|(name, _)| name.contains('/')).unwrap();
        let (dir, leaf) = name.rsplit_once('/').unwrap();
        for spelling in [
            format!("/{name}"),
            format!("./{name}"),
            format!("{dir}//{leaf}"),
        ] {
            let read = warm
                .read(spelling.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {spelling}: {e}", backend.name));
            assert!(read.as_slice() == bytes.as_slice(), "{spelling}");
        }
        let climbing = format!("{dir}/../{name}");
        assert!(
            matches!(
                warm.read(climbing.as_bytes()),
                Err(sheaf::Error::InvalidPath { .. })
            ),
            "{climbing}"
        );
        assert_eq!(warm.stats().get(Counter::OriginReads), 0);
        let shared = run!("cache", "stats", "--cache", cache, "--json")
            .success()
            .json();
        assert!(num(&shared, "hits") >= files.len() as u64);
        assert_eq!(num(&shared, "containers"), containers);
    }
}

#[test]
fn a_prefix_preloads_only_the_containers_that_hold_it() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let t = Tree::new(&src);
    let mut rng = Rng::new(9);
    for dir in ["a", "b", "c"] {
        for i in 0..40 {
            t.file(format!("{dir}/f{i:02}"), &content(&mut rng, 700));
        }
    }
    let dataset = tmp.path().join("ds");
    fold(&src, &dataset, &["--container-size", "8KiB"]).success();
    let cache = tmp.path().join("cache");
    let whole = preload(dataset.to_str().unwrap(), &tmp.path().join("whole"), &[]);
    let some = preload(dataset.to_str().unwrap(), &cache, &["--prefix", "b/"]);
    assert!(num(&some, "containers") < num(&whole, "containers") / 2 + 2);
    let reader = open_cached(dataset.to_str().unwrap(), &cache);
    for i in 0..40 {
        reader.read(format!("b/f{i:02}").as_bytes()).unwrap();
    }
    assert_eq!(
        reader.stats().get(Counter::Misses),
        0,
        "every b/ file is cached"
    );
}

#[test]
fn the_quota_evicts_least_recently_used_containers_and_refuses_what_cannot_fit() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let t = Tree::new(&src);
    let mut rng = Rng::new(3);
    for dir in ["a", "b", "c"] {
        for i in 0..30 {
            t.file(format!("{dir}/f{i:02}"), &content(&mut rng, 900));
        }
    }
    let ds = tmp.path().join("ds");
    fold(&src, &ds, &["--container-size", "8KiB"]).success();
    let ds = ds.to_str().unwrap();
    let cache = tmp.path().join("cache");
    let a = preload(ds, &cache, &["--prefix", "a"]);
    let a_bytes = num(&a, "bytes");
    // Room for one prefix's containers and a little more, not two.
    let quota = format!("{}", a_bytes + a_bytes / 2);
    let b = preload(ds, &cache, &["--prefix", "b", "--quota", &quota]);
    let stats = run!("cache", "stats", "--cache", cache, "--json")
        .success()
        .json();
    assert!(num(&stats, "evictions") > 0, "{stats:#}");
    assert!(num(&stats, "bytes_cached") <= a_bytes + a_bytes / 2);
    // b's containers, used last, stayed.
    let reader = open_cached(ds, &cache);
    for i in 0..30 {
        reader.read(format!("b/f{i:02}").as_bytes()).unwrap();
    }
    assert_eq!(reader.stats().get(Counter::Misses), 0, "{b:#}");
    // The whole dataset cannot fit: a clear error, and nothing is evicted for it.
    let before = cached_files(&cache);
    run!("preload", ds, "--cache", cache)
        .fails_with(1)
        .stderr_has("cannot fit");
    assert_eq!(cached_files(&cache), before);
}

#[test]
fn a_pinned_dataset_is_never_evicted_until_it_is_unpinned() {
    let tmp = tempdir();
    let first = small_tree(&tmp.path().join("one"), 120);
    small_tree(&tmp.path().join("two"), 120);
    let one = tmp.path().join("one.ds");
    let two = tmp.path().join("two.ds");
    fold(&tmp.path().join("one"), &one, &["--container-size", "8KiB"]).success();
    fold(&tmp.path().join("two"), &two, &["--container-size", "8KiB"]).success();
    let cache = tmp.path().join("cache");
    let pinned = preload(one.to_str().unwrap(), &cache, &["--pin"]);
    assert_eq!(pinned["pinned"], true);
    let quota = format!("{}", num(&pinned, "bytes") + num(&pinned, "bytes") / 2);
    run!("preload", two, "--cache", cache, "--quota", quota)
        .fails_with(1)
        .stderr_has("pinned");
    let reader = open_cached(one.to_str().unwrap(), &cache);
    read_all(&reader, &first);
    assert_eq!(
        reader.stats().get(Counter::Misses),
        0,
        "the pinned dataset is whole"
    );
    run!("cache", "ls", "--cache", cache)
        .success()
        .stdout_has("pinned");
    run!("cache", "unpin", one, "--cache", cache).success();
    preload(two.to_str().unwrap(), &cache, &[]);
    let reader = open_cached(one.to_str().unwrap(), &cache);
    read_all(&reader, &first);
    assert!(
        reader.stats().get(Counter::Misses) > 0,
        "unpinned, it made room"
    );
}

#[test]
fn two_preloads_racing_into_one_cache_copy_each_container_once() {
    let tmp = tempdir();
    let files = small_tree(&tmp.path().join("src"), 400);
    for backend in backends() {
        let uri = fold_to(&backend, &tmp.path().join("src"), tmp.path(), "race");
        let cache = tmp.path().join(format!("race-cache-{}", backend.name));
        let spawn = || {
            std::process::Command::new(env!("CARGO_BIN_EXE_sheaf"))
                .args(["preload", &uri, "--cache"])
                .arg(&cache)
                .args(["--json", "--jobs", "3"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let outputs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
        let mut fetched = 0;
        let mut containers = 0;
        for out in &outputs {
            assert!(out.status.success(), "{}", backend.name);
            let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            fetched += num(&summary, "fetched");
            containers = num(&summary, "containers");
        }
        assert_eq!(
            fetched, containers,
            "{}: each container was copied by one preload only",
            backend.name
        );
        run!("cache", "verify", "--cache", cache).success();
        let reader = open_cached(&uri, &cache);
        read_all(&reader, &files);
        assert_eq!(reader.stats().get(Counter::Misses), 0, "{}", backend.name);
    }
}

#[test]
fn a_cache_deleted_truncated_or_bit_flipped_under_a_live_reader_still_reads_right() {
    let tmp = tempdir();
    let files = small_tree(&tmp.path().join("src"), 300);
    for backend in backends() {
        let uri = fold_to(&backend, &tmp.path().join("src"), tmp.path(), "damaged");
        let cache = tmp.path().join(format!("damaged-cache-{}", backend.name));
        preload(&uri, &cache, &[]);
        let reader = open_cached(&uri, &cache);
        read_all(&reader, &files);
        let held = cached_files(&cache);
        assert!(held.len() >= 3);
        // Deleted: the live mapping keeps serving; truncated and bit-flipped: the origin does.
        fs::remove_file(&held[0]).unwrap();
        let cut = fs::OpenOptions::new().write(true).open(&held[1]).unwrap();
        cut.set_len(fs::metadata(&held[1]).unwrap().len() / 2)
            .unwrap();
        drop(cut);
        flip_bit(&held[2], 10, 3);
        // A reader trusts a length it found whole for a moment before it checks it again.
        std::thread::sleep(sheaf::cache::LENGTH_TRUSTED_FOR + std::time::Duration::from_millis(50));
        read_all(&reader, &files);
        let stats = reader.stats();
        assert!(
            stats.get(Counter::Fallbacks) >= 2,
            "{}: {stats:?}",
            backend.name
        );
        assert_eq!(stats.get(Counter::ChecksumFailures), 1, "{}", backend.name);
        let quarantined = fs::read_dir(cache.join("quarantine")).unwrap().count();
        assert_eq!(
            quarantined, 2,
            "{}: the damaged files were moved aside",
            backend.name
        );
        // Nothing damaged is left for the next reader, and it reads right too.
        run!("cache", "verify", "--cache", cache).success();
        read_all(&open_cached(&uri, &cache), &files);
    }
}

#[test]
fn a_cached_copy_cut_short_between_its_length_checks_reads_right_and_does_not_kill() {
    let tmp = tempdir();
    let files = small_tree(&tmp.path().join("src"), 300);
    let local = Backend {
        name: "local",
        base: None,
    };
    let uri = fold_to(&local, &tmp.path().join("src"), tmp.path(), "cut-between");
    let caught = sheaf::store::faults_caught();
    // A length found whole is trusted for a moment (LENGTH_TRUSTED_FOR): a file read again at
    // once after the cut reads past the new end of its container's mapping (the index is at
    // the end). That killed the reader with SIGBUS; now the fault guard gives zeros, the read
    // notices, and the origin serves. The length is checked on the read just before the cut,
    // so the cut and the next read come within that moment unless the test is descheduled in
    // between: a few tries.
    let (path, bytes) = files.iter().next_back().unwrap();
    for attempt in 0..20 {
        let cache = tmp.path().join(format!("cut-between-cache-{attempt}"));
        preload(&uri, &cache, &[]);
        let held = cached_files(&cache);
        let cuts: Vec<(fs::File, u64)> = held
            .iter()
            .map(|file| {
                let len = fs::metadata(file).unwrap().len();
                (
                    fs::OpenOptions::new().write(true).open(file).unwrap(),
                    len / 2,
                )
            })
            .collect();
        let reader = open_cached(&uri, &cache);
        // The first read maps the copy, the second checks its length.
        for _ in 0..2 {
            let read = reader.read(path.as_bytes()).unwrap();
            assert!(read.as_slice() == bytes.as_slice(), "{path}: wrong bytes");
        }
        for (file, half) in &cuts {
            file.set_len(*half).unwrap();
        }
        let again = reader
            .read(path.as_bytes())
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(again.as_slice() == bytes.as_slice(), "{path}: wrong bytes");
        if sheaf::store::faults_caught() > caught {
            assert!(reader.stats().get(Counter::Fallbacks) > 0);
            read_all(&reader, &files);
            return;
        }
    }
    panic!("no read went past a cut end in 20 tries");
}

#[test]
fn a_cache_tier_that_keeps_failing_is_skipped_for_a_while_then_probed_and_restored() {
    let tmp = tempdir();
    let files = small_tree(&tmp.path().join("src"), 600);
    let local = Backend {
        name: "local",
        base: None,
    };
    let uri = fold_to(&local, &tmp.path().join("src"), tmp.path(), "failing");
    let cache = tmp.path().join("failing-cache");
    preload(&uri, &cache, &[]);
    let held = cached_files(&cache);
    assert!(held.len() > 20, "{} containers", held.len());
    // Every cached copy cut short: each lookup is a fault.
    for file in &held {
        let cut = fs::OpenOptions::new().write(true).open(file).unwrap();
        cut.set_len(fs::metadata(file).unwrap().len() / 2).unwrap();
    }
    let quarantined = || fs::read_dir(cache.join("quarantine")).map_or(0, |d| d.count());

    // Eight faults in a row, then the origin alone: the rest of the cache is not even looked at.
    let reader = open_cached(&uri, &cache);
    read_all(&reader, &files);
    let stats = reader.stats();
    assert_eq!(stats.get(Counter::TierTrips), 1, "{stats:?}");
    assert!(stats.get(Counter::TierBypassed) > 0, "{stats:?}");
    assert_eq!(
        quarantined(),
        8,
        "only the faults before the trip were looked at"
    );

    // After the pause, lookups go through as probes; the first fault stops them again, for longer.
    std::thread::sleep(Duration::from_millis(1100));
    read_all(&reader, &files);
    assert_eq!(reader.stats().get(Counter::TierTrips), 2);

    // The cache repaired: after the second pause, a sound lookup restores the tier.
    run!("cache", "verify", "--cache", cache).fails_with(3);
    preload(&uri, &cache, &[]);
    std::thread::sleep(Duration::from_millis(2100));
    let hits = reader.stats().get(Counter::Hits);
    read_all(&reader, &files);
    let stats = reader.stats();
    assert!(stats.get(Counter::Hits) > hits, "{stats:?}");
    assert_eq!(stats.get(Counter::TierTrips), 2, "{stats:?}");
}

#[test]
fn with_a_cached_copy_reads_survive_the_origin_going_away_and_without_one_they_fail_clearly() {
    let tmp = tempdir();
    let files = small_tree(&tmp.path().join("src"), 120);
    let first = files.keys().next().unwrap().clone();
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let uri = fold_to(&backend, &tmp.path().join("src"), tmp.path(), "away");
        let proxied = through_proxy(&backend, &uri);
        let cache = tmp.path().join(format!("away-cache-{}", backend.name));
        let cache_arg = cache.to_str().unwrap();
        proxied.sheaf(&["preload", "--cache", cache_arg]).success();
        proxied.proxy.go_down();
        let started = Instant::now();
        let run = proxied
            .sheaf(&["cat", &first, "--cache", cache_arg])
            .success();
        assert!(run.stdout == files[&first], "{}", backend.name);
        run!("cache", "evict", "--all", "--cache", cache).success();
        let run = proxied
            .sheaf(&["cat", &first, "--cache", cache_arg])
            .fails_with(1);
        assert!(
            run.stderr.contains(&proxied.uri),
            "{}: {}",
            backend.name,
            run.stderr
        );
        assert!(started.elapsed() < Duration::from_secs(60));
    }
}

#[test]
fn an_interrupted_preload_leaves_nothing_a_reader_would_use_and_a_rerun_completes_it() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let t = Tree::new(&src);
    let mut rng = Rng::new(1);
    for i in 0..64 {
        t.file(format!("big/f{i:02}"), &content(&mut rng, 1 << 20));
    }
    let ds = tmp.path().join("ds");
    fold(
        &src,
        &ds,
        &["--threshold", "2MiB", "--container-size", "4MiB"],
    )
    .success();
    let cache = tmp.path().join("cache");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args([
            "preload",
            ds.to_str().unwrap(),
            "--jobs",
            "1",
            "--quiet",
            "--cache",
        ])
        .arg(&cache)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let partial_seen = loop {
        let partial = fs::read_dir(cache.join("tmp"))
            .ok()
            .is_some_and(|children| {
                children
                    .flatten()
                    .any(|c| c.file_name().to_string_lossy().ends_with(".partial"))
            });
        if partial && !cached_files(&cache).is_empty() {
            break true;
        }
        if child.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(60) {
            break false;
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(partial_seen, "the preload was caught part-way (mid-copy)");
    let visible = cached_files(&cache).len();
    run!("cache", "verify", "--cache", cache).success();
    let again = preload(ds.to_str().unwrap(), &cache, &[]);
    assert_eq!(num(&again, "already_cached"), visible as u64);
    assert_eq!(
        num(&again, "fetched") + visible as u64,
        num(&again, "containers")
    );
    let leftovers = fs::read_dir(cache.join("tmp"))
        .unwrap()
        .flatten()
        .filter(|c| c.file_name().to_string_lossy().ends_with(".partial"))
        .count();
    assert_eq!(
        leftovers, 0,
        "the rerun cleared the dead fetch's partial file"
    );
    run!("cache", "verify", "--cache", cache).success();
}

#[test]
fn read_through_fill_warms_a_cache_that_was_never_preloaded() {
    let tmp = tempdir();
    let files = small_tree(&tmp.path().join("src"), 100);
    let ds = tmp.path().join("ds");
    fold(&tmp.path().join("src"), &ds, &["--container-size", "8KiB"]).success();
    let cache = tmp.path().join("cache");
    let reader = Dataset::open_uri_with(
        ds.to_str().unwrap(),
        ReadOptions {
            fill: true,
            ..options(&cache)
        },
    )
    .unwrap();
    let started = Instant::now();
    while reader.stats().get(Counter::Hits) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "fill never brought a container in"
        );
        read_all(&reader, &files);
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!cached_files(&cache).is_empty());
    run!("cache", "verify", "--cache", cache).success();
}

#[test]
fn datasets_and_caches_at_paths_that_are_not_utf8_work_with_every_command() {
    let tmp = tempdir();
    let files = small_tree(&tmp.path().join("src"), 40);
    // Two roots whose names differ only in bytes that are not UTF-8: a lossy spelling of
    // either would be the same, and the cache would take one for the other.
    let one = tmp.path().join(bpath(b"ds-\xff"));
    let two = tmp.path().join(bpath(b"ds-\xfe"));
    let cache = tmp.path().join(bpath(b"cache-\xff"));
    fold(&tmp.path().join("src"), &one, &["--container-size", "8KiB"]).success();
    // Other bytes (the cache keeps containers by content: the same tree would share them).
    let other_src = tmp.path().join("other");
    Tree::new(&other_src).file("d0/f0000", b"other bytes");
    fold(&other_src, &two, &[]).success();
    run!("ls", one, "d0").success().stdout_has("f0000");
    let mut file_uri = b"file://".to_vec();
    file_uri.extend_from_slice(one.as_os_str().as_encoded_bytes());
    let cat = run!("cat", bpath(&file_uri), "d0/f0000").success();
    assert_eq!(cat.stdout, files["d0/f0000"], "read through a file:// URI");

    let summary = run!("preload", one, "--cache", cache, "--json")
        .success()
        .json();
    assert_eq!(num(&summary, "fetched"), num(&summary, "containers"));
    let reader = Dataset::open_uri_with(&one, options(&cache)).unwrap();
    read_all(&reader, &files);
    assert_eq!(
        reader.stats().get(Counter::Misses),
        0,
        "all of `one` was preloaded"
    );
    let other = Dataset::open_uri_with(&two, options(&cache)).unwrap();
    assert_eq!(other.read(b"d0/f0000").unwrap().as_slice(), b"other bytes");
    assert!(
        other.stats().get(Counter::Misses) > 0,
        "`two` is another dataset to the cache, though its name reads the same lossily"
    );
    run!("cache", "ls", "--cache", cache)
        .success()
        .stdout_has("non-utf8:");
    run!("cache", "evict", one, "--cache", cache).success();
    let reader = Dataset::open_uri_with(&one, options(&cache)).unwrap();
    reader.read(b"d0/f0000").unwrap();
    assert!(reader.stats().get(Counter::Misses) > 0, "evicted");
}
