//! Crash consistency: every writing command killed (SIGKILL) at seeded random moments, then
//! checked, on the local store and on the S3 and HDFS servers. Whatever the moment, the newest
//! published generation reads byte-identical to the tree before the command or the tree after
//! it (nothing half-published is visible), `verify` passes, running the command again
//! completes it, a cache never serves a container that fails its content id, and after
//! `gc --keep 0` nothing is left that the newest generation does not use.
//!
//! Each command gets `SHEAF_CRASH_TRIALS` trials per store (default 4; RELIABILITY.md has the
//! long run); `SHEAF_CRASH_STORES` (a comma-separated list such as `s3,hdfs`) limits the
//! stores, so a long run can spend its time where the earlier ones did not.

use crate::conformance::{backends, fresh_location, Backend};
use crate::util::*;
use sheaf::cache::Cache;
use sheaf::{Dataset, EntryKind, ReadOptions};
use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn trials() -> u64 {
    std::env::var("SHEAF_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// The back-ends the harness runs on: local, S3 and HDFS (Azure shares S3's object-store
/// code path and is covered by the conformance tests).
fn stores() -> Vec<Backend> {
    let chosen = std::env::var("SHEAF_CRASH_STORES").ok();
    let wanted = |name: &str| {
        chosen
            .as_deref()
            .is_none_or(|list| list.split(',').any(|s| s.trim() == name))
    };
    backends()
        .into_iter()
        .filter(|b| b.name != "azure" && wanted(b.name))
        .collect()
}

/// One writing command to kill: how to set up the dataset it runs on, and its arguments. Both
/// get the scratch directory (where the source trees are) and the dataset's location.
struct Scenario<'a> {
    name: &'a str,
    setup: &'a dyn Fn(&Path, &str),
    args: &'a dyn Fn(&Path, &str) -> Vec<OsString>,
    /// A second run after a completed first one would be refused (`rm` of a removed path).
    rerun_only_if_unfinished: bool,
}

/// Every object of a location: key and modification time.
fn objects(ds: &str) -> Vec<String> {
    let store = sheaf::store::open(ds).unwrap();
    match store.list("") {
        Ok(objects) => objects.into_iter().map(|o| o.key).collect(),
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => panic!("list {ds}: {e}"),
    }
}

/// What a command that commits changes: the newest generation's number and how many
/// committed generation files there are (`gc` deletes some and commits none).
fn progress_marker(ds: &str) -> (Option<u64>, usize) {
    let newest = Dataset::open_uri(ds).ok().map(|d| d.generation());
    let committed = objects(ds)
        .iter()
        .filter_map(|key| key.strip_prefix(".sheaf/generations/"))
        // A killed commit leaves a hidden temporary file.
        .filter(|name| !name.starts_with('.'))
        .count();
    (newest, committed)
}

/// The tree a dataset's newest generation holds, or `None` when nothing is published.
fn published_tree(ds: &str, scratch: &Path) -> Option<Snapshot> {
    Dataset::open_uri(ds).ok()?;
    let out = scratch.join("unfolded");
    let _ = fs::remove_dir_all(&out);
    run!("unfold", ds, out, "-q").success();
    let tree = snapshot(&out, false);
    fs::remove_dir_all(&out).unwrap();
    Some(tree)
}

/// Runs the command to the end on a fresh setup: the trees before and after it, and how long
/// it takes (the window the kills are spread over).
fn uninterrupted(
    scenario: &Scenario,
    backend: &Backend,
    work: &Path,
) -> (Option<Snapshot>, Option<Snapshot>, Duration) {
    let ds = fresh_location(backend, work, "reference");
    (scenario.setup)(work, &ds);
    let before = published_tree(&ds, work);
    let started = Instant::now();
    sheaf((scenario.args)(work, &ds)).success();
    let took = started.elapsed();
    let after = published_tree(&ds, work);
    assert!(after.is_some(), "{}: nothing published", scenario.name);
    (before, after, took)
}

/// Starts the command and kills it after `delay` (unless it finished first); true when it
/// was killed.
fn run_and_kill(args: &[OsString], delay: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + delay;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

/// After `gc --keep 0`: the newest generation file is the only one, the containers are exactly
/// the ones it lists, nothing else is under `.sheaf/` (but the fold lock of a local dataset),
/// every file outside `.sheaf/` is one that may be there (`allowed`: the large files of the
/// trees before and after, and those there before the command: `rm` leaves older generations'
/// large files in place), never a temporary one, and every large file of the dataset is there.
fn assert_no_orphans(ds: &str, allowed: &BTreeSet<String>, label: &str) {
    run!("gc", "--keep", "0", "-q", ds).success();
    let dataset = Dataset::open_uri(ds).unwrap();
    let listed: BTreeSet<String> = dataset
        .catalog()
        .rows()
        .iter()
        .map(|row| format!(".sheaf/containers/{}", row.name))
        .chain([sheaf::layout::generation_key(dataset.generation())])
        .collect();
    let keys = objects(ds);
    let found: BTreeSet<String> = keys
        .iter()
        .filter(|key| key.starts_with(".sheaf/") && *key != sheaf::layout::FOLD_LOCK_KEY)
        .cloned()
        .collect();
    assert_eq!(found, listed, "{label}: files under .sheaf/ after gc");
    for key in keys.iter().filter(|key| !key.starts_with(".sheaf/")) {
        assert!(
            allowed.contains(key),
            "{label}: {key} lies in the dataset's directory but is none of its large files"
        );
    }
    let keys: BTreeSet<&String> = keys.iter().collect();
    for entry in dataset.walk() {
        let (_, entry) = entry.unwrap();
        if entry.kind == EntryKind::External {
            let key = String::from_utf8(entry.path.clone()).unwrap();
            assert!(keys.contains(&key), "{label}: large file {key} is missing");
        }
    }
}

fn crash_trials(scenario: &Scenario, backend: &Backend) {
    let tmp = tempdir();
    let work = tmp.path();
    let (before, after, took) = uninterrupted(scenario, backend, work);
    // Half as long again as the reference run: a command slowed by load on the servers still
    // gets killed after its commit in some trials, not only before it.
    let window = took.mul_f64(1.5).max(Duration::from_millis(20));
    let tree_files: BTreeSet<String> = [&before, &after]
        .into_iter()
        .flatten()
        .flat_map(|tree| tree.keys().map(|k| String::from_utf8(k.clone()).unwrap()))
        .collect();
    let mut rng = Rng::new(0x5eed ^ scenario.name.len() as u64);
    let mut seen = [0u32; 2];
    for trial in 0..trials() {
        let label = format!("{} on {} trial {trial}", scenario.name, backend.name);
        let ds = fresh_location(backend, work, scenario.name);
        (scenario.setup)(work, &ds);
        let mut allowed = tree_files.clone();
        allowed.extend(
            objects(&ds)
                .into_iter()
                .filter(|k| !k.starts_with(".sheaf/")),
        );
        let args = (scenario.args)(work, &ds);
        let initial = progress_marker(&ds);
        let delay = window.mul_f64(rng.below(10_000) as f64 / 10_000.0);
        run_and_kill(&args, delay);

        let now = published_tree(&ds, work);
        assert!(
            now == before || now == after,
            "{label}: killed after {delay:?}, the dataset is neither the tree before nor the one after"
        );
        let finished = progress_marker(&ds) != initial;
        assert!(
            finished || now == before,
            "{label}: the tree changed, the generations did not"
        );
        seen[finished as usize] += 1;
        if now.is_some() {
            run!("verify", "-q", ds).success();
        }
        if !finished || !scenario.rerun_only_if_unfinished {
            sheaf((scenario.args)(work, &ds)).success();
            assert!(
                published_tree(&ds, work) == after,
                "{label}: the re-run left another tree"
            );
        }
        assert_no_orphans(&ds, &allowed, &label);
        if backend.base.is_none() {
            fs::remove_dir_all(&ds).unwrap();
        }
    }
    eprintln!(
        "{} on {}: {} trials, {} killed before committing, {} after",
        scenario.name,
        backend.name,
        trials(),
        seen[0],
        seen[1]
    );
}

fn run_everywhere(scenario: Scenario) {
    for backend in stores() {
        crash_trials(&scenario, &backend);
    }
}

/// The source tree of every scenario: small files, files at the threshold, large kept files.
fn source(work: &Path) -> std::path::PathBuf {
    let src = work.join("src");
    if !src.exists() {
        generate(&src, 300, 41);
        let tree = Tree::new(&src);
        for i in 0..4 {
            tree.file(format!("large/{i}.bin"), &Rng::new(i).bytes(200_000));
        }
    }
    src
}

fn addition(work: &Path) -> std::path::PathBuf {
    let more = work.join("more");
    if !more.exists() {
        generate(&more, 120, 42);
    }
    more
}

fn fold_into(work: &Path, ds: &str) -> Vec<OsString> {
    fold_args(&source(work), Path::new(ds), &["-q"])
}

fn folded(work: &Path, ds: &str) {
    sheaf(fold_into(work, ds)).success();
}

fn append_into(work: &Path, ds: &str) -> Vec<OsString> {
    let more = addition(work);
    os(&[
        &"fold",
        &"--append",
        &more,
        &ds,
        &"--prefix",
        &"more",
        &"-q",
        &"--threshold",
        &THRESHOLD,
    ])
}

/// Three generations: the fold, an append, an rm.
fn three_generations(work: &Path, ds: &str) {
    folded(work, ds);
    sheaf(append_into(work, ds)).success();
    run!("rm", "-r", "-q", ds, "l0-01").success();
}

fn os(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    args.iter().map(|a| a.as_ref().to_os_string()).collect()
}

#[test]
fn a_fold_killed_at_any_moment_publishes_all_or_nothing_and_completes_when_run_again() {
    run_everywhere(Scenario {
        name: "fold",
        setup: &|_, _| {},
        args: &fold_into,
        rerun_only_if_unfinished: true,
    });
}

#[test]
fn an_append_killed_at_any_moment_publishes_all_or_nothing() {
    run_everywhere(Scenario {
        name: "append",
        setup: &folded,
        args: &append_into,
        rerun_only_if_unfinished: true,
    });
}

#[test]
fn an_rm_killed_at_any_moment_publishes_all_or_nothing() {
    run_everywhere(Scenario {
        name: "rm",
        setup: &folded,
        args: &|_, ds| os(&[&"rm", &"-r", &"-q", &ds, &"l0-02", &"large"]),
        rerun_only_if_unfinished: true,
    });
}

#[test]
fn a_compaction_or_gc_killed_at_any_moment_leaves_the_same_tree() {
    run_everywhere(Scenario {
        name: "compact",
        setup: &three_generations,
        args: &|_, ds| os(&[&"compact", &"-q", &ds]),
        rerun_only_if_unfinished: false,
    });
    run_everywhere(Scenario {
        name: "gc",
        setup: &|work, ds| {
            three_generations(work, ds);
            run!("compact", "-q", ds).success();
        },
        args: &|_, ds| os(&[&"gc", &"--keep", &"0", &"-q", &ds]),
        rerun_only_if_unfinished: false,
    });
}

/// Every file of the newest generation of `ds`, with its bytes.
fn published_files(ds: &str, scratch: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    published_tree(ds, scratch)
        .unwrap()
        .into_iter()
        .filter_map(|(path, node)| match node.content {
            Content::File(bytes) => Some((path, bytes)),
            _ => None,
        })
        .collect()
}

/// The cache verifies clean (nothing quarantined) and every file of `ds` reads right through
/// it.
fn assert_cache_serves(cache: &Path, ds: &str, files: &[(Vec<u8>, Vec<u8>)], label: &str) {
    let verify = run!("cache", "verify", "--json", "--cache", cache)
        .success()
        .json();
    assert_eq!(
        verify["quarantined"].as_array().map(Vec::len),
        Some(0),
        "{label}"
    );
    let options = ReadOptions {
        cache: Some(Arc::new(Cache::open(cache).unwrap())),
        ..Default::default()
    };
    let dataset = Dataset::open_uri_with(ds, options).unwrap();
    for (path, bytes) in files {
        assert!(
            dataset.read(path).unwrap().as_slice() == &bytes[..],
            "{label}: {}",
            String::from_utf8_lossy(path)
        );
    }
}

#[test]
fn a_preload_killed_at_any_moment_never_leaves_a_cached_container_that_is_served_wrong() {
    for backend in stores() {
        let tmp = tempdir();
        let ds = fresh_location(&backend, tmp.path(), "preload");
        folded(tmp.path(), &ds);
        let files = published_files(&ds, tmp.path());
        let cache = tmp.path().join("cache");
        let args = os(&[&"preload", &"-q", &"--cache", &cache, &ds]);
        let started = Instant::now();
        sheaf(args.clone()).success();
        let window = started.elapsed();
        let mut rng = Rng::new(7);
        for trial in 0..trials() {
            let label = format!("preload on {} trial {trial}", backend.name);
            let _ = fs::remove_dir_all(&cache);
            run_and_kill(&args, window.mul_f64(rng.below(10_000) as f64 / 10_000.0));
            assert_cache_serves(&cache, &ds, &files, &label);
            sheaf(args.clone()).success();
        }
    }
}

#[test]
fn a_cache_eviction_killed_at_any_moment_leaves_a_cache_that_serves_right_bytes() {
    for backend in stores() {
        let tmp = tempdir();
        let ds = fresh_location(&backend, tmp.path(), "evict");
        // Many small containers, so an eviction has many files to unlink.
        let fold = fold_args(
            &source(tmp.path()),
            Path::new(&ds),
            &["-q", "--container-size", "64KiB"],
        );
        sheaf(fold).success();
        let files = published_files(&ds, tmp.path());
        let cache = tmp.path().join("cache");
        let preload = os(&[&"preload", &"-q", &"--cache", &cache, &ds]);
        // One dataset by name, or every unpinned one: both unlink container after container.
        let evictions = [
            os(&[&"cache", &"evict", &"--cache", &cache, &ds]),
            os(&[&"cache", &"evict", &"--all", &"--cache", &cache]),
        ];
        sheaf(preload.clone()).success();
        let started = Instant::now();
        sheaf(evictions[0].clone()).success();
        let window = started.elapsed();
        let mut rng = Rng::new(11);
        let cached = || Cache::open(&cache).unwrap().containers().unwrap().len();
        let (mut killed, mut halfway) = (0, 0);
        for trial in 0..trials() {
            let label = format!("cache evict on {} trial {trial}", backend.name);
            sheaf(preload.clone()).success();
            let whole = cached();
            let evict = &evictions[trial as usize % 2];
            // Most of the window is the process starting: kill late in it more often.
            let delay = window.mul_f64((rng.below(10_000) as f64 / 10_000.0).cbrt());
            killed += usize::from(run_and_kill(evict, delay));
            halfway += usize::from((1..whole).contains(&cached()));
            assert_cache_serves(&cache, &ds, &files, &label);
            // Run again, it completes: nothing of the dataset is left cached, no fetch either.
            sheaf(evict.clone()).success();
            assert_eq!(cached(), 0, "{label}: containers left");
            let partials = fs::read_dir(cache.join("tmp"))
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                .count();
            assert_eq!(partials, 0, "{label}");
        }
        eprintln!(
            "cache evict on {}: {killed} of {} trials killed before the end, {halfway} with \
             some containers evicted and some not",
            backend.name,
            trials()
        );
    }
}
