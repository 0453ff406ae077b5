//! Routes: many datasets on the local disk, the S3 server and the MiniDFSCluster joined into one
//! tree by a routes table; read with `ls`/`stat`/`cat --routes` and really mounted; the table
//! changed while mounted, a store going away and coming back, concurrent changes, bad tables.

use crate::conformance::{backends, fresh_location, through_proxy, Backend, Proxied};
use crate::mount::{fuse_skipped, wait_until, Mount};
use crate::util::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One dataset folded from its own tree.
struct Routed {
    prefix: String,
    uri: String,
    expected: Snapshot,
}

/// Folds a fresh tree onto `backend` for `prefix`.
fn routed(backend: &Backend, scratch: &Path, prefix: &str, seed: u64) -> Routed {
    let src = scratch.join(format!("src-{seed}"));
    generate(&src, 80, seed);
    Tree::new(&src).symlink("link-to-top", "l0-00");
    let expected = snapshot(&src, false);
    let uri = fresh_location(backend, scratch, "routed");
    fold(&src, Path::new(&uri), &[]).success();
    Routed {
        prefix: prefix.to_owned(),
        uri,
        expected,
    }
}

/// One dataset per back-end: local under `/local/...`, each remote one under `/remote/NAME`.
fn datasets(scratch: &Path) -> Vec<Routed> {
    backends()
        .iter()
        .enumerate()
        .map(|(i, backend)| {
            let prefix = match backend.base {
                None => "/local/data".to_owned(),
                Some(_) => format!("/remote/{}", backend.name),
            };
            routed(backend, scratch, &prefix, 40 + i as u64)
        })
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn under(point: &Path, prefix: &str) -> PathBuf {
    point.join(prefix.trim_start_matches('/'))
}

fn add_routes(table: &Path, all: &[Routed]) {
    for d in all {
        run!("route", "add", table, d.prefix, d.uri)
            .success()
            .stdout_has("routed");
    }
}

/// A routed mount of one dataset per back-end, the S3 one read through a proxy that can
/// fail, and what the tests need of it.
struct ProxiedMount {
    _tmp: Scratch,
    all: Vec<Routed>,
    proxied: Proxied,
    point: PathBuf,
    mount: Mount,
}

/// Mounts [`datasets`] with the mount's S3 endpoint behind a proxy, with `extra` flags;
/// `None` (saying what was not tested) without FUSE or an S3 server.
fn mount_with_s3_behind_a_proxy(extra: &[&str], untested: &str) -> Option<ProxiedMount> {
    if fuse_skipped() {
        return None;
    }
    let Some(s3) = backends().into_iter().find(|b| b.name == "s3") else {
        eprintln!("NOTE: no S3 server: {untested} was not tested");
        return None;
    };
    let tmp = tempdir();
    let all = datasets(tmp.path());
    let on_s3 = all.iter().find(|d| d.prefix == "/remote/s3").unwrap();
    let proxied = through_proxy(&s3, &on_s3.uri);
    let endpoint = (
        "AWS_ENDPOINT_URL",
        format!("http://{}", proxied.proxy.addr()),
    );
    let table = tmp.path().join("routes");
    add_routes(&table, &all);
    let point = tmp.path().join("mnt");
    let mut args = vec![
        "--routes",
        table.to_str().unwrap(),
        point.to_str().unwrap(),
        "-f",
    ];
    args.extend(extra);
    let mount = Mount::start_with(&args, &point, &[endpoint]);
    Some(ProxiedMount {
        _tmp: tmp,
        all,
        proxied,
        point,
        mount,
    })
}

/// Every file of `d` under the mount at `point`, with its bytes.
fn files_of(point: &Path, d: &Routed) -> Vec<(PathBuf, Vec<u8>)> {
    d.expected
        .iter()
        .filter_map(|(rel, node)| match &node.content {
            Content::File(bytes) => Some((under(point, &d.prefix).join(bpath(rel)), bytes.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn the_cli_reads_the_joined_tree_and_the_table_lives_on_any_store() {
    let tmp = tempdir();
    let all = datasets(tmp.path());
    for backend in backends() {
        let table = fresh_location(&backend, tmp.path(), "routes");
        add_routes(Path::new(&table), &all);
        let listed = run!("route", "ls", table, "--json").success().json();
        let prefixes: Vec<&str> = listed["routes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["prefix"].as_str().unwrap())
            .collect();
        let mut wanted: Vec<&str> = all.iter().map(|d| d.prefix.as_str()).collect();
        wanted.sort();
        assert_eq!(prefixes, wanted, "{}", backend.name);
        assert_eq!(listed["version"], (all.len() - 1) as u64);

        let top = run!("ls", "--routes", table).success().lines();
        let mut top_wanted = vec!["local".to_owned()];
        if all.len() > 1 {
            top_wanted.push("remote".to_owned());
        }
        assert_eq!(top, top_wanted, "{}", backend.name);
        for d in &all {
            // Every file of every dataset comes back byte for byte through the table.
            for (rel, node) in &d.expected {
                let Content::File(bytes) = &node.content else {
                    continue;
                };
                let path = format!("{}/{}", d.prefix, String::from_utf8_lossy(rel));
                let run = run!("cat", "--routes", table, path).success();
                assert!(run.stdout == *bytes, "{}: {path} differs", backend.name);
            }
            let recursive = run!("ls", "-R", "--routes", table, d.prefix)
                .success()
                .lines();
            assert_eq!(recursive.len(), d.expected.len(), "{}", d.prefix);
            let link = format!("{}/link-to-top", d.prefix);
            let stat = run!("stat", "--routes", table, link, "--json")
                .success()
                .json();
            assert_eq!(stat["kind"], "symlink");
            assert_eq!(stat["dataset"], d.uri.as_str());
        }
        run!("cat", "--routes", table, "/nowhere/file")
            .fails_with(1)
            .stderr_has("no such path");
        run!("cat", "--routes", table, "/local")
            .fails_with(1)
            .stderr_has("directory");
    }
}

#[test]
fn a_routed_mount_is_the_union_of_its_datasets_and_follows_the_table() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let all = datasets(tmp.path());
    let table = tmp.path().join("routes");
    add_routes(&table, &all);
    let point = tmp.path().join("mnt");
    let args = ["--routes", table.to_str().unwrap(), point.to_str().unwrap()];
    let mount = Mount::start_with(
        &[&args[..], &["-f", "--refresh", "1s"]].concat(),
        &point,
        &[],
    );
    for d in &all {
        assert_same_tree(&d.expected, &snapshot(&under(&point, &d.prefix), false));
    }
    assert_eq!(names(&point.join("local")), ["data"]);
    let meta = fs::metadata(&point).unwrap();
    assert!(meta.is_dir());
    assert!(
        fs::write(point.join("local/new"), b"x").is_err(),
        "the routed tree is read-only"
    );

    // A route added while mounted appears; one removed goes away; no remount.
    let late = routed(&backends()[0], tmp.path(), "/local/late", 77);
    run!("route", "add", table, late.prefix, late.uri).success();
    wait_until("the new route appears", || {
        point.join("local/late").exists()
    });
    assert_same_tree(&late.expected, &snapshot(&point.join("local/late"), false));
    assert_eq!(names(&point.join("local")), ["data", "late"]);
    run!("route", "rm", table, "/local/data").success();
    wait_until("the removed route goes", || {
        !point.join("local/data").exists()
    });
    assert_eq!(names(&point.join("local")), ["late"]);

    // A routed dataset's own new generation is followed as well.
    let more = tmp.path().join("more");
    Tree::new(&more).file("added/later.txt", b"appended after the mount");
    for d in all.iter().skip(1).chain([&late]) {
        run!("fold", more, d.uri, "--append", "-q").success();
        let added = under(&point, &d.prefix).join("added/later.txt");
        wait_until("the appended file appears", || added.exists());
        assert_eq!(fs::read(&added).unwrap(), b"appended after the mount");
    }
    mount.stop();
}

#[test]
fn a_store_that_goes_away_fails_only_its_prefix_fast_and_comes_back_by_itself() {
    let Some(routed) = mount_with_s3_behind_a_proxy(&[], "the fault isolation of routes") else {
        return;
    };
    let ProxiedMount {
        _tmp,
        all,
        proxied,
        point,
        mount,
    } = routed;
    let on_s3 = all.iter().find(|d| d.prefix == "/remote/s3").unwrap();
    let files = |d: &Routed| files_of(&point, d);
    let s3_files = files(on_s3);
    // Something read while it is up, so the dataset is open when it goes away.
    assert_eq!(fs::read(&s3_files[0].0).unwrap(), s3_files[0].1);

    proxied.proxy.go_down();
    let first = Instant::now();
    assert!(
        fs::read(&s3_files[1].0).is_err(),
        "read from a store that is down"
    );
    let first = first.elapsed();
    assert!(
        first < Duration::from_secs(30),
        "the first failure took {first:?}"
    );
    // Once found down, its prefix fails at once...
    for (path, _) in &s3_files[2..6] {
        let started = Instant::now();
        assert!(fs::read(path).is_err());
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "a read under a prefix known down took {:?}",
            started.elapsed()
        );
    }
    // ...while every other prefix serves every byte.
    for d in all.iter().filter(|d| d.prefix != on_s3.prefix) {
        for (path, bytes) in files(d) {
            assert_eq!(fs::read(&path).unwrap(), bytes, "{}", path.display());
        }
    }
    proxied.proxy.come_back();
    let (path, bytes) = &s3_files[2];
    wait_until("the prefix recovers", || fs::read(path).is_ok());
    assert_eq!(&fs::read(path).unwrap(), bytes);
    for (path, bytes) in &s3_files[6..] {
        assert_eq!(&fs::read(path).unwrap(), bytes, "{}", path.display());
    }
    mount.stop();
}

#[test]
fn route_changes_made_at_the_same_time_all_land() {
    let tmp = tempdir();
    let dataset = tmp.path().join("ds");
    let src = tmp.path().join("src");
    Tree::new(&src).file("a.txt", b"a");
    fold(&src, &dataset, &[]).success();
    for backend in backends() {
        let table = fresh_location(&backend, tmp.path(), "racing");
        let writers: Vec<_> = (0..6)
            .map(|i| {
                let (table, dataset) = (table.clone(), dataset.clone());
                std::thread::spawn(move || {
                    run!("route", "add", table, format!("/team{i}"), dataset).success();
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let listed = run!("route", "ls", table, "--json").success().json();
        assert_eq!(
            listed["routes"].as_array().unwrap().len(),
            6,
            "{}: {listed:#}",
            backend.name
        );
        assert_eq!(listed["version"], 5, "{}", backend.name);
    }
}

#[test]
fn bad_tables_and_bad_rules_get_clear_errors_and_a_bad_reload_keeps_the_last_table() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    Tree::new(&src).file("a.txt", b"alpha");
    let dataset = tmp.path().join("ds");
    fold(&src, &dataset, &[]).success();
    let table = tmp.path().join("routes");
    run!("route", "add", table, "/a/../b", dataset)
        .fails_with(1)
        .stderr_has("`..`");
    run!("route", "add", table, "relative", dataset)
        .fails_with(1)
        .stderr_has("absolute");
    run!(
        "route",
        "add",
        table,
        "/missing",
        tmp.path().join("nothing")
    )
    .fails_with(1)
    .stderr_has("not a sheaf dataset");
    run!("ls", "--routes", table)
        .fails_with(1)
        .stderr_has("holds no routes table");
    run!("route", "add", table, "/a", dataset).success();
    run!("route", "add", table, "/a/", dataset)
        .success()
        .stdout_has("nothing changed");
    run!("route", "add", table, "/a", src, "--no-check")
        .fails_with(1)
        .stderr_has("already routed");
    run!("route", "rm", table, "/zzz")
        .fails_with(1)
        .stderr_has("no rule has this prefix");
    // A rule whose dataset is gone fails its own prefix, clearly, and nothing else.
    run!(
        "route",
        "add",
        table,
        "/gone",
        tmp.path().join("gone"),
        "--no-check"
    )
    .success();
    run!("cat", "--routes", table, "/gone/x")
        .fails_with(1)
        .stderr_has("not a sheaf dataset");
    run!("cat", "--routes", table, "/a/a.txt")
        .success()
        .stdout_has("alpha");

    let mounted = !fuse_skipped();
    let point = tmp.path().join("mnt");
    let mount = mounted.then(|| {
        let args = ["--routes", table.to_str().unwrap(), point.to_str().unwrap()];
        Mount::start_with(
            &[&args[..], &["-f", "--refresh", "1s"]].concat(),
            &point,
            &[],
        )
    });
    if mounted {
        assert_eq!(fs::read(point.join("a/a.txt")).unwrap(), b"alpha");
        assert!(fs::read(point.join("gone/x")).is_err());
    }
    // A damaged newest version: readers refuse it by name, a mount keeps the last good one.
    fs::write(table.join("00000000000000000002.json"), b"{ not a table").unwrap();
    run!("route", "ls", table)
        .fails_with(1)
        .stderr_has("00000000000000000002.json");
    if let Some(mount) = mount {
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(fs::read(point.join("a/a.txt")).unwrap(), b"alpha");
        mount.stop();
    }
    // Two rules with one prefix are refused too.
    let twice = r#"{"format":"sheaf-routes","version":1,"number":2,"parent":1,"txn":"x","time_ns":0,"operation":"x","routes":[{"prefix":"/a","dataset":"/x"},{"prefix":"/a","dataset":"/y"}]}"#;
    fs::write(table.join("00000000000000000002.json"), twice).unwrap();
    run!("route", "ls", table)
        .fails_with(1)
        .stderr_has("routed twice");
}

#[test]
fn a_store_that_hangs_holds_few_of_the_mount_s_threads_and_the_others_keep_serving() {
    let Some(routed) =
        mount_with_s3_behind_a_proxy(&["--threads", "4"], "a hanging store under a routed mount")
    else {
        return;
    };
    let ProxiedMount {
        _tmp,
        all,
        proxied,
        point,
        mount,
    } = routed;
    let on_s3 = all.iter().find(|d| d.prefix == "/remote/s3").unwrap();
    let s3_files = files_of(&point, on_s3);
    assert_eq!(fs::read(&s3_files[0].0).unwrap(), s3_files[0].1);

    proxied.proxy.hang();
    // More readers of the hung prefix than the mount has threads, all at once.
    let stuck: Vec<_> = s3_files[1..9]
        .iter()
        .map(|(path, _)| {
            let path = path.clone();
            std::thread::spawn(move || fs::read(path).is_ok())
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    for d in all.iter().filter(|d| d.prefix != on_s3.prefix) {
        for (path, bytes) in files_of(&point, d).into_iter().take(25) {
            let started = Instant::now();
            assert_eq!(fs::read(&path).unwrap(), bytes, "{}", path.display());
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{} took {:?} while another prefix hung",
                path.display(),
                started.elapsed()
            );
        }
    }
    let started = Instant::now();
    assert!(fs::read(&s3_files[10].0).is_err(), "read from a hung store");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a read under a hung prefix took {:?}",
        started.elapsed()
    );
    proxied.proxy.come_back();
    for reader in stuck {
        reader.join().unwrap();
    }
    let (path, bytes) = &s3_files[11];
    wait_until("the hung prefix serves again", || fs::read(path).is_ok());
    assert_eq!(&fs::read(path).unwrap(), bytes);
    mount.stop();
}

#[test]
fn a_rule_for_the_root_replaced_under_a_mount_is_forgotten_by_the_kernel_on_sighup() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let local = &backends()[0];
    let first = routed(local, tmp.path(), "/", 91);
    let deeper = routed(local, tmp.path(), "/x/y", 92);
    // The same paths with other bytes: every name the kernel caches from the first is stale.
    let second_src = tmp.path().join("src-second");
    copy_tree(&tmp.path().join("src-91"), &second_src);
    for (rel, node) in &first.expected {
        if let Content::File(bytes) = &node.content {
            let mut other = bytes.clone();
            other.reverse();
            other.extend_from_slice(b"-second");
            fs::write(second_src.join(bpath(rel)), other).unwrap();
        }
    }
    let second = Routed {
        prefix: "/".into(),
        uri: tmp.path().join("second-ds").display().to_string(),
        expected: snapshot(&second_src, false),
    };
    fold(&second_src, Path::new(&second.uri), &[]).success();
    let first_expected = first.expected.clone();
    let table = tmp.path().join("routes");
    add_routes(&table, &[first, deeper]);
    let point = tmp.path().join("mnt");
    let args = [
        "--routes",
        table.to_str().unwrap(),
        point.to_str().unwrap(),
        "-f",
    ];
    // No --refresh: the kernel may keep names for a day, so only the mount's notifications
    // can make it forget them.
    let mount = Mount::start_with(&args, &point, &[]);
    let names_first = names(&point);
    assert!(names_first.contains(&"x".to_owned()), "{names_first:?}");
    // Every name and page of the first root dataset in the kernel's caches.
    let mut shared_names = 0;
    for (rel, node) in &first_expected {
        if let Content::File(bytes) = &node.content {
            assert_eq!(&fs::read(point.join(bpath(rel))).unwrap(), bytes);
            shared_names += usize::from(second.expected.contains_key(rel));
        }
    }
    assert!(
        shared_names > 5,
        "the two root datasets share few paths: {shared_names}"
    );
    run!("route", "rm", table, "/").success();
    run!("route", "add", table, "/", second.uri).success();
    mount.hang_up();
    // The two datasets hold the same paths: the switch shows in the bytes. Every file must
    // come to read the new dataset's bytes (the kernel told to forget every stale name).
    let second_files: Vec<(PathBuf, Vec<u8>)> = second
        .expected
        .iter()
        .filter_map(|(rel, node)| match &node.content {
            Content::File(bytes) => Some((point.join(bpath(rel)), bytes.clone())),
            _ => None,
        })
        .collect();
    wait_until("every file reads the new root dataset's bytes", || {
        second_files
            .iter()
            .all(|(path, bytes)| fs::read(path).is_ok_and(|served| served == *bytes))
    });
    assert_eq!(names(&point), names_first);
    assert_same_tree(
        &deeper_expected(&tmp, 92),
        &snapshot(&point.join("x/y"), false),
    );
    mount.stop();
}

/// The tree `routed` generated for `seed`, snapshotted again.
fn deeper_expected(tmp: &Scratch, seed: u64) -> Snapshot {
    snapshot(&tmp.path().join(format!("src-{seed}")), false)
}
