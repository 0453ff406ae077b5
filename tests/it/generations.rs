//! Generations end to end, through the CLI on every back-end and through the library:
//! append (with a prefix, and replacing paths), rm, time travel with `--generation`, `log`,
//! listings merged over generations, and writers racing for one generation number.

use crate::conformance::{backends, fresh_location};
use crate::util::*;
use sheaf::fold::{self, FoldOptions};
use sheaf::progress::Silent;
use sheaf::store;
use sheaf::Dataset;
use std::path::Path;

/// The bytes `cat` prints for `path` of `dataset`, at the newest generation or at `generation`.
fn cat(dataset: &str, path: &str, generation: Option<u64>) -> Run {
    let mut args = vec!["cat".to_owned(), dataset.to_owned(), path.to_owned()];
    if let Some(n) = generation {
        args.extend(["--generation".to_owned(), n.to_string()]);
    }
    sheaf(args)
}

fn ls_names(dataset: &str, dir: &str, generation: Option<u64>) -> Vec<String> {
    let mut args = vec!["ls".to_owned(), dataset.to_owned(), dir.to_owned()];
    if let Some(n) = generation {
        args.extend(["--generation".to_owned(), n.to_string()]);
    }
    let out = sheaf(args).success().stdout;
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn append(src: &Path, dataset: &str, prefix: Option<&str>) -> Run {
    let mut extra = vec!["--append"];
    if let Some(p) = prefix {
        extra.extend(["--prefix", p]);
    }
    sheaf(fold_args(src, Path::new(dataset), &extra))
}

#[test]
fn every_backend_appends_replaces_removes_and_reads_old_generations() {
    let tmp = tempdir();
    let first = Tree::new(tmp.path().join("first"));
    first.file("a.txt", b"a, first");
    first.file("d/b.txt", b"b, first");
    first.file("d/e/c.txt", b"c, first");
    first.file("big.bin", &vec![7u8; 5000]);
    let second = Tree::new(tmp.path().join("second"));
    second.file("a.txt", b"a, second");
    second.file("x/new.txt", b"new file");
    let third = Tree::new(tmp.path().join("third"));
    third.file("n.txt", b"under a prefix");
    for backend in backends() {
        let uri = fresh_location(&backend, tmp.path(), "generations");
        let name = backend.name;
        fold(&first.root, Path::new(&uri), &[]).success();
        let summary = append(&second.root, &uri, None).success().json();
        assert_eq!(num(&summary, "generation"), 1, "{name}");
        append(&third.root, &uri, Some("p/q")).success();
        assert_eq!(
            cat(&uri, "a.txt", None).success().stdout,
            b"a, second",
            "{name}"
        );
        assert_eq!(
            cat(&uri, "a.txt", Some(0)).success().stdout,
            b"a, first",
            "{name}"
        );
        assert_eq!(cat(&uri, "x/new.txt", None).success().stdout, b"new file");
        assert_eq!(
            cat(&uri, "p/q/n.txt", None).success().stdout,
            b"under a prefix"
        );
        cat(&uri, "x/new.txt", Some(0))
            .fails_with(1)
            .stderr_has("no such path");
        assert_eq!(
            ls_names(&uri, "", None),
            ["a.txt", "big.bin", "d", "p", "x"],
            "{name}"
        );
        let removed = run!("rm", uri, "d", "-r", "--json").success().json();
        assert_eq!(
            num(&removed, "removed"),
            4,
            "{name}: d, d/b.txt, d/e, d/e/c.txt"
        );
        assert_eq!(num(&removed, "generation"), 3, "{name}");
        assert_eq!(
            ls_names(&uri, "", None),
            ["a.txt", "big.bin", "p", "x"],
            "{name}"
        );
        cat(&uri, "d/e/c.txt", None)
            .fails_with(1)
            .stderr_has("no such path");
        assert_eq!(
            cat(&uri, "d/e/c.txt", Some(2)).success().stdout,
            b"c, first"
        );
        assert_eq!(ls_names(&uri, "d", Some(0)), ["b.txt", "e"], "{name}");
        let log = run!("log", uri, "--json").success().stdout;
        let operations: Vec<String> = String::from_utf8(log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["operation"].to_string())
            .collect();
        assert_eq!(
            operations,
            ["\"rm\"", "\"append\"", "\"append\"", "\"fold\""],
            "{name}: newest first"
        );
        run!("verify", uri).success().stdout_has("all good");
        // A reader pinned at generation 3 keeps reading across a compaction and a gc that
        // keeps the window.
        let pinned = Dataset::open_uri_with(
            &uri,
            sheaf::ReadOptions {
                generation: Some(3),
                ..Default::default()
            },
        )
        .unwrap();
        let compacted = run!("compact", uri, "--json").success().json();
        assert_eq!(num(&compacted, "generation"), 4, "{name}");
        assert_eq!(
            num(&compacted, "containers_after"),
            1,
            "{name}: {compacted:#}"
        );
        let newest = Dataset::open_uri(&uri).unwrap();
        assert!(newest.catalog().rows().iter().all(|r| r.generation == 4));
        assert_eq!(
            ls_names(&uri, "", None),
            ["a.txt", "big.bin", "p", "x"],
            "{name}"
        );
        run!("gc", uri, "--json").success();
        assert_eq!(
            pinned.read(b"a.txt").unwrap().as_slice(),
            b"a, second",
            "{name}"
        );
        assert_eq!(
            cat(&uri, "a.txt", Some(0)).success().stdout,
            b"a, first",
            "{name}"
        );
        let collected = run!("gc", uri, "--keep", "0", "--json").success().json();
        assert_eq!(
            num(&collected, "generations_deleted"),
            4,
            "{name}: {collected:#}"
        );
        assert!(
            num(&collected, "containers_deleted") >= 4,
            "{name}: {collected:#}"
        );
        cat(&uri, "a.txt", Some(0))
            .fails_with(1)
            .stderr_has("has no generation 0");
        run!("verify", uri).success().stdout_has("all good");
        let out = tmp.path().join(format!("unfolded-{name}"));
        run!("unfold", uri, out).success();
        let restored = snapshot(&out, false);
        let paths: Vec<String> = restored
            .keys()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        assert_eq!(
            paths,
            [
                "a.txt",
                "big.bin",
                "p",
                "p/q",
                "p/q/n.txt",
                "x",
                "x/new.txt"
            ],
            "{name}"
        );
    }
}

#[test]
fn rm_refuses_a_directory_without_r_a_missing_path_and_the_root_and_changes_nothing() {
    let tmp = tempdir();
    let src = Tree::new(tmp.path().join("src"));
    src.file("d/f", b"f");
    let ds = tmp.path().join("ds");
    fold(&src.root, &ds, &[]).success();
    run!("rm", ds, "d")
        .fails_with(1)
        .stderr_has("is a directory");
    run!("rm", ds, "d/f", "missing")
        .fails_with(1)
        .stderr_has("no such path");
    run!("rm", ds, "/", "-r").fails_with(1).stderr_has("root");
    let log = run!("log", ds, "--json").success().stdout;
    assert_eq!(
        log.iter().filter(|&&b| b == b'\n').count(),
        1,
        "still one generation"
    );
    run!("cat", ds, "d/f").success();
}

#[test]
fn an_append_may_not_put_a_file_where_the_dataset_has_a_directory() {
    let tmp = tempdir();
    let src = Tree::new(tmp.path().join("src"));
    src.file("d/f", b"f");
    let over = Tree::new(tmp.path().join("over"));
    over.file("d", b"now a file");
    let ds = tmp.path().join("ds");
    fold(&src.root, &ds, &[]).success();
    let ds_uri = ds.display().to_string();
    append(&over.root, &ds_uri, None)
        .fails_with(1)
        .stderr_has("is a directory in the dataset");
    assert_eq!(Dataset::open(&ds).unwrap().generation(), 0);
    let containers = std::fs::read_dir(ds.join(".sheaf/containers"))
        .unwrap()
        .count();
    assert_eq!(containers, 1, "the refused append's containers are gone");
}

#[test]
fn a_directory_merges_its_entries_from_every_generation() {
    let tmp = tempdir();
    let ds = tmp.path().join("ds");
    let mut expected = Vec::new();
    for generation in 0..5 {
        let src = Tree::new(tmp.path().join(format!("src{generation}")));
        for i in 0..40 {
            // Interleaved names, so every generation's paths overlap the others' ranges.
            let name = format!("shared/f{:03}", i * 5 + generation);
            src.file(&name, name.as_bytes());
            expected.push(name);
        }
        match generation {
            0 => fold(&src.root, &ds, &["--max-entries", "16"]).success(),
            _ => sheaf(fold_args(
                &src.root,
                &ds,
                &["--append", "--max-entries", "16"],
            ))
            .success(),
        };
    }
    expected.sort();
    let dataset = Dataset::open(&ds).unwrap();
    assert_eq!(dataset.generation(), 4);
    let listed: Vec<String> = dataset
        .list(b"shared")
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.path).unwrap())
        .collect();
    assert_eq!(listed, expected);
    let walked: Vec<String> = dataset
        .walk()
        .map(|item| String::from_utf8(item.unwrap().1.path).unwrap())
        .filter(|p| p != "shared")
        .collect();
    assert_eq!(walked, expected);
    for name in &expected {
        assert_eq!(
            dataset.read(name.as_bytes()).unwrap().as_slice(),
            name.as_bytes()
        );
    }
    // Filters keep lookups from opening every generation's containers: a path of the oldest
    // generation is found after probing the newer ones through their filters.
    let rows = dataset.catalog().rows();
    assert!(rows
        .iter()
        .filter(|r| r.generation > 0)
        .all(|r| !r.filter.is_empty()));
    assert!(rows
        .iter()
        .filter(|r| r.generation == 0)
        .all(|r| r.filter.is_empty()));
}

#[test]
fn concurrent_appenders_each_commit_a_generation_and_lose_nothing() {
    let tmp = tempdir();
    let base = Tree::new(tmp.path().join("base"));
    base.file("base.txt", b"base");
    let ds = tmp.path().join("ds");
    fold(&base.root, &ds, &[]).success();
    let writers = 6;
    let sources: Vec<_> = (0..writers)
        .map(|w| {
            let src = Tree::new(tmp.path().join(format!("w{w}")));
            for i in 0..20 {
                src.file(format!("w{w}/f{i}"), format!("{w}-{i}").as_bytes());
            }
            src.root
        })
        .collect();
    // Half the writers are threads of this process, half are processes.
    std::thread::scope(|scope| {
        for (w, src) in sources.iter().enumerate() {
            let ds = &ds;
            scope.spawn(move || match w % 2 {
                0 => {
                    fold::append(src, ds, b"", &FoldOptions::default(), &Silent).unwrap();
                }
                _ => {
                    sheaf(fold_args(src, ds, &["--append"])).success();
                }
            });
        }
    });
    let dataset = Dataset::open(&ds).unwrap();
    assert_eq!(dataset.generation(), writers as u64);
    for w in 0..writers {
        for i in 0..20 {
            let path = format!("w{w}/f{i}");
            assert_eq!(
                dataset.read(path.as_bytes()).unwrap().as_slice(),
                format!("{w}-{i}").as_bytes()
            );
        }
    }
}

#[test]
fn every_backend_creates_a_key_once_however_many_writers_race_for_it() {
    let tmp = tempdir();
    for backend in backends() {
        let uri = fresh_location(&backend, tmp.path(), "create-new");
        let store = store::open(&uri).unwrap();
        let winners: Vec<bool> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..4u8)
                .map(|w| {
                    let store = &store;
                    scope.spawn(move || store.create_new("race/key", &[w; 100]).unwrap())
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert_eq!(
            winners.iter().filter(|&&won| won).count(),
            1,
            "{}: {winners:?}",
            backend.name
        );
        let winner = winners.iter().position(|&won| won).unwrap() as u8;
        assert_eq!(
            store.read("race/key").unwrap(),
            vec![winner; 100],
            "{}",
            backend.name
        );
        let keys: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(
            keys,
            ["race/key"],
            "{}: no temporary file left",
            backend.name
        );
    }
}

#[test]
fn gc_removes_a_failed_writer_s_old_leftovers_but_not_a_running_writer_s_new_files() {
    let tmp = tempdir();
    let src = Tree::new(tmp.path().join("src"));
    src.file("f", b"f");
    let ds = tmp.path().join("ds");
    fold(&src.root, &ds, &[]).success();
    let containers = ds.join(".sheaf/containers");
    let stale = containers.join("tdeadbeef-c00000000.sheaf");
    let fresh = containers.join("tcafe-c00000000.sheaf");
    std::fs::write(&stale, b"left by a writer that died").unwrap();
    std::fs::write(&fresh, b"being written right now").unwrap();
    let long_ago = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_mtime(&stale, long_ago).unwrap();
    let summary = run!("gc", ds, "--keep", "1h", "--json").success().json();
    assert_eq!(num(&summary, "containers_deleted"), 1, "{summary:#}");
    assert!(!stale.exists());
    assert!(fresh.exists());
    run!("cat", ds, "f").success();
}

/// Progress that, the first time work advances, runs `then` (another writer acting while an
/// operation is under way).
struct Meanwhile<F: Fn() + Sync> {
    then: F,
    done: std::sync::atomic::AtomicBool,
}

impl<F: Fn() + Sync> sheaf::progress::Progress for Meanwhile<F> {
    fn advance(&self, _items: u64, _bytes: u64) {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            (self.then)();
        }
    }
}

#[test]
fn a_compaction_that_loses_its_race_commits_nothing_and_leaves_nothing_behind() {
    let tmp = tempdir();
    let src = Tree::new(tmp.path().join("src"));
    src.file("f", b"f");
    let more = Tree::new(tmp.path().join("more"));
    more.file("g", b"g");
    let ds = tmp.path().join("ds");
    fold(&src.root, &ds, &[]).success();
    let containers = || {
        std::fs::read_dir(ds.join(".sheaf/containers"))
            .unwrap()
            .count()
    };
    let racing = Meanwhile {
        then: || {
            fold::append(&more.root, &ds, b"", &FoldOptions::default(), &Silent).unwrap();
        },
        done: Default::default(),
    };
    let limits = fold::ContainerLimits {
        bytes: 1 << 30,
        entries: 1 << 20,
    };
    let after_append = || containers();
    let err = fold::compact(&ds, limits, &racing).unwrap_err().to_string();
    assert!(err.contains("while this compaction ran"), "{err}");
    let dataset = Dataset::open(&ds).unwrap();
    assert_eq!(dataset.generation(), 1, "the append's generation stands");
    assert_eq!(dataset.read(b"g").unwrap().as_slice(), b"g");
    assert_eq!(
        after_append(),
        2,
        "the first fold's and the append's containers only"
    );
}

/// Starts `sheaf ARGS`, kills it with SIGKILL after `delay`, and waits for it.
fn killed_after(args: &[std::ffi::OsString], delay: std::time::Duration) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    child.wait().unwrap();
}

#[test]
fn an_append_a_compaction_or_a_gc_killed_at_any_moment_leaves_a_readable_dataset() {
    let tmp = tempdir();
    let base = tmp.path().join("base");
    generate(&base, 300, 3);
    let ds = tmp.path().join("ds");
    fold(&base, &ds, &[]).success();
    let extra = tmp.path().join("extra");
    let expected_extra = generate(&extra, 600, 4);
    let mut rng = Rng::new(17);
    for round in 0..8 {
        let before = Dataset::open(&ds).unwrap().generation();
        let delay = std::time::Duration::from_millis(rng.below(150));
        let args: Vec<std::ffi::OsString> = match round % 3 {
            0 => fold_args(&extra, &ds, &["--append", "--prefix", &format!("r{round}")]),
            1 => vec!["compact".into(), ds.clone().into()],
            _ => vec!["gc".into(), ds.clone().into(), "--keep".into(), "0".into()],
        };
        killed_after(&args, delay);
        // Whatever the moment, the dataset reads: at the generation before, or the one the
        // killed command committed.
        let after = Dataset::open(&ds).unwrap();
        assert!(
            after.generation() == before || after.generation() == before + 1,
            "round {round}: generation {} after {before}",
            after.generation()
        );
        run!("verify", ds).success().stdout_has("all good");
    }
    // Running the append again completes it.
    sheaf(fold_args(&extra, &ds, &["--append", "--prefix", "again"])).success();
    let dataset = Dataset::open(&ds).unwrap();
    for path in &expected_extra {
        let mut full = b"again/".to_vec();
        full.extend_from_slice(path);
        let bytes = dataset.read(&full).unwrap();
        assert_eq!(
            bytes.as_slice(),
            std::fs::read(extra.join(bpath(path))).unwrap()
        );
    }
}

#[test]
fn every_backend_takes_appenders_racing_for_one_generation_without_losing_any() {
    let tmp = tempdir();
    let base = Tree::new(tmp.path().join("base"));
    base.file("base.txt", b"base");
    let sources: Vec<_> = (0..3)
        .map(|w| {
            let src = Tree::new(tmp.path().join(format!("w{w}")));
            src.file(format!("w{w}.txt"), format!("writer {w}").as_bytes());
            src.root
        })
        .collect();
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let uri = fresh_location(&backend, tmp.path(), "racing");
        fold(&base.root, Path::new(&uri), &[]).success();
        std::thread::scope(|scope| {
            for src in &sources {
                let uri = &uri;
                scope.spawn(move || {
                    fold::append(src, Path::new(uri), b"", &FoldOptions::default(), &Silent)
                        .unwrap_or_else(|e| panic!("{uri}: {e}"))
                });
            }
        });
        let dataset = Dataset::open_uri(&uri).unwrap();
        assert_eq!(dataset.generation(), 3, "{}", backend.name);
        for w in 0..3 {
            let path = format!("w{w}.txt");
            assert_eq!(
                dataset.read(path.as_bytes()).unwrap().as_slice(),
                format!("writer {w}").as_bytes(),
                "{}",
                backend.name
            );
        }
    }
}

#[test]
fn folding_a_published_directory_in_place_again_folds_only_what_changed() {
    let tmp = tempdir();
    let dir = tmp.path().join("dir");
    let t = Tree::new(&dir);
    t.file("a/one.txt", b"one");
    t.file("a/two.txt", b"two");
    t.file("b/three.txt", b"three");
    run!("fold", "--in-place", dir, "--json").success();
    // Later: one file changes, one is new; the others stay as they were.
    std::thread::sleep(std::time::Duration::from_millis(20));
    t.file("a/two.txt", b"two, changed");
    t.file("b/four.txt", b"four");
    let again = run!("fold", "--in-place", dir, "--json", "--remove-originals")
        .success()
        .json();
    assert_eq!(num(&again, "generation"), 1, "{again:#}");
    assert_eq!(
        num(&again, "files_folded"),
        2,
        "only the changed and the new file: {again:#}"
    );
    assert_eq!(num(&again, "originals_removed"), 4, "{again:#}");
    let dataset = Dataset::open(&dir).unwrap();
    assert_eq!(
        dataset.read(b"a/two.txt").unwrap().as_slice(),
        b"two, changed"
    );
    assert_eq!(dataset.read(b"b/four.txt").unwrap().as_slice(), b"four");
    assert_eq!(dataset.read(b"a/one.txt").unwrap().as_slice(), b"one");
    assert!(
        !dir.join("a/one.txt").exists(),
        "folded originals were removed"
    );
    // Nothing changed since: a third run commits nothing.
    let third = run!("fold", "--in-place", dir, "--json").success().json();
    assert_eq!(num(&third, "generation"), 1, "{third:#}");
    assert_eq!(num(&third, "files_folded"), 0, "{third:#}");
    assert_eq!(
        Dataset::open(&dir)
            .unwrap()
            .read(b"a/one.txt")
            .unwrap()
            .as_slice(),
        b"one"
    );
}

#[test]
fn a_preload_of_a_new_generation_copies_only_its_new_containers_and_readers_follow_it() {
    let tmp = tempdir();
    let first = tmp.path().join("first");
    generate(&first, 200, 8);
    let ds = tmp.path().join("ds");
    fold(&first, &ds, &["--container-size", "16KiB"]).success();
    let cache = tmp.path().join("cache");
    let initial = run!("preload", ds, "--cache", cache, "--json")
        .success()
        .json();
    let containers = num(&initial, "fetched");
    assert!(containers > 2, "{initial:#}");
    let more = Tree::new(tmp.path().join("more"));
    more.file("added.txt", b"added");
    sheaf(fold_args(&more.root, &ds, &["--append"])).success();
    // A reader through the cache sees the generation preloaded until the next preload.
    let through_cache = |path: &str| run!("cat", ds, path, "--cache", cache);
    through_cache("added.txt")
        .fails_with(1)
        .stderr_has("no such path");
    let again = run!("preload", ds, "--cache", cache, "--json")
        .success()
        .json();
    assert_eq!(num(&again, "generation"), 1, "{again:#}");
    assert_eq!(
        num(&again, "fetched"),
        1,
        "only the append's container: {again:#}"
    );
    assert_eq!(num(&again, "already_cached"), containers, "{again:#}");
    assert_eq!(through_cache("added.txt").success().stdout, b"added");
}

/// A real back-end whose conditional creates land but whose answers are lost on the way back.
#[derive(Debug)]
struct AnswerLost(std::sync::Arc<dyn sheaf::store::Store>);

impl sheaf::store::Store for AnswerLost {
    fn uri(&self, key: &str) -> String {
        self.0.uri(key)
    }
    fn read_range(&self, key: &str, range: std::ops::Range<u64>) -> sheaf::Result<Vec<u8>> {
        self.0.read_range(key, range)
    }
    fn read(&self, key: &str) -> sheaf::Result<Vec<u8>> {
        self.0.read(key)
    }
    fn len(&self, key: &str) -> sheaf::Result<Option<u64>> {
        self.0.len(key)
    }
    fn create(&self, key: &str) -> sheaf::Result<Box<dyn sheaf::store::ObjectWriter>> {
        self.0.create(key)
    }
    fn create_new(&self, key: &str, bytes: &[u8]) -> sheaf::Result<bool> {
        self.0.create_new(key, bytes)?;
        Err(sheaf::Error::Remote {
            uri: self.uri(key),
            cause: "connection reset before the answer arrived".into(),
        })
    }
    fn list(&self, prefix: &str) -> sheaf::Result<Vec<sheaf::store::ObjectInfo>> {
        self.0.list(prefix)
    }
    fn delete(&self, key: &str) -> sheaf::Result<()> {
        self.0.delete(key)
    }
}

#[test]
fn every_backend_counts_a_commit_whose_answer_was_lost_once() {
    use sheaf::format::generation::{self, Commit};
    let tmp = tempdir();
    let src = Tree::new(tmp.path().join("src"));
    src.file("f", b"f");
    for backend in backends() {
        let uri = fresh_location(&backend, tmp.path(), "lost-answer");
        fold(&src.root, Path::new(&uri), &[]).success();
        let store = store::open(&uri).unwrap();
        let base = generation::read(store.as_ref(), generation::Which::Newest).unwrap();
        let commit = |txn: &str| Commit {
            operation: "append",
            txn: txn.into(),
            added: 0,
            removed: 0,
            threshold: None,
            root: None,
        };
        let rows = base.catalog.rows().to_vec();
        let mine = commit("mine").encode(1, rows.clone()).unwrap();
        let lossy = AnswerLost(store.clone());
        assert!(
            generation::commit(&lossy, 1, &mine, "mine").unwrap(),
            "{}: the commit landed though its answer was lost",
            backend.name
        );
        // Retried after the lost answer: recognised as done, not applied again.
        assert!(generation::commit(store.as_ref(), 1, &mine, "mine").unwrap());
        let theirs = commit("theirs").encode(1, rows).unwrap();
        assert!(
            !generation::commit(store.as_ref(), 1, &theirs, "theirs").unwrap(),
            "{}: another writer's commit of the same number loses",
            backend.name
        );
        assert_eq!(
            generation::numbers(store.as_ref()).unwrap(),
            [0, 1],
            "{}",
            backend.name
        );
        assert!(generation::holds_txn(store.as_ref(), 1, "mine").unwrap());
    }
}
