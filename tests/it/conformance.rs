//! One conformance suite that every storage back-end runs: the local filesystem, an
//! S3-compatible server (moto), Azure Blob Storage (Azurite) and HDFS (a MiniDFSCluster), the
//! servers on loopback. `.ci/run` starts them with `scripts/servers.sh` and exports their
//! addresses; without them these tests fail and say how to start them (set
//! SHEAF_TEST_LOCAL_ONLY=1 to run the local back-end only).
//!
//! Google Cloud Storage (`gs://`) is not in the suite: object_store writes through GCS's XML
//! API (a PUT of the object, XML multipart uploads), which fake-gcs-server, the one GCS
//! emulator the package registries serve, does not implement (it answers 400 "invalid
//! uploadType"), so nothing could be written to it.

use crate::proxy::{Fault, Proxy};
use crate::util::*;
use sheaf::store::memory::Counting;
use sheaf::store::{self, Store};
use sheaf::Dataset;
use std::io::Write;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A back-end under test and where its datasets go.
pub(crate) struct Backend {
    pub(crate) name: &'static str,
    /// URI prefix for remote back-ends; `None` for local (a temporary directory).
    pub(crate) base: Option<String>,
}

impl Backend {
    /// For a back-end spoken to over HTTP, the variable that holds its endpoint URL.
    pub(crate) fn http_endpoint_var(&self) -> Option<&'static str> {
        match self.name {
            "s3" => Some("AWS_ENDPOINT_URL"),
            "azure" => Some("AZURITE_BLOB_STORAGE_URL"),
            _ => None,
        }
    }
}

pub(crate) fn backends() -> Vec<Backend> {
    let mut out = vec![Backend {
        name: "local",
        base: None,
    }];
    if std::env::var_os("SHEAF_TEST_LOCAL_ONLY").is_some() {
        eprintln!(
            "NOTE: SHEAF_TEST_LOCAL_ONLY is set: the S3, Azure and HDFS back-ends are not tested"
        );
        return out;
    }
    let require = |var: &str| {
        std::env::var(var).unwrap_or_else(|_| {
            panic!(
                "{var} is not set: start the test servers with `bash scripts/servers.sh start` and \
                 `set -a; . target/test-servers.env; set +a` (or run `bash .ci/run`), or set \
                 SHEAF_TEST_LOCAL_ONLY=1 to test the local back-end only"
            )
        })
    };
    require("AWS_ENDPOINT_URL");
    out.push(Backend {
        name: "s3",
        base: Some(format!("s3://{}", require("SHEAF_TEST_S3_BUCKET"))),
    });
    require("AZURITE_BLOB_STORAGE_URL");
    out.push(Backend {
        name: "azure",
        base: Some(format!("az://{}", require("SHEAF_TEST_AZURE_CONTAINER"))),
    });
    out.push(Backend {
        name: "hdfs",
        base: Some(require("SHEAF_TEST_HDFS")),
    });
    out
}

/// A fresh dataset location on a back-end, unique to this test run.
pub(crate) fn fresh_location(backend: &Backend, scratch: &Path, label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let leaf = format!("{label}-{}-{n}", std::process::id());
    match &backend.base {
        None => scratch.join(leaf).display().to_string(),
        Some(base) => format!("{}/conformance/{leaf}", base.trim_end_matches('/')),
    }
}

/// A small tree with folded files, large files kept as they are, a symlink and an empty dir.
fn source_tree(root: &Path, files: usize) -> Snapshot {
    generate(root, files, 7);
    let t = Tree::new(root);
    t.dir("empty/dir");
    t.symlink("link-to-first", "l0-00");
    snapshot(root, false)
}

#[test]
fn every_backend_folds_lists_reads_verifies_and_unfolds_a_real_tree() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let expected = source_tree(&src, 2000);
    let reference = tmp.path().join("reference");
    fold(&src, &reference, &[]).success();
    let reference_listing = run!("ls", reference, "-R", "-l").success().stdout;
    for backend in backends() {
        let uri = fresh_location(&backend, tmp.path(), "roundtrip");
        let summary = sheaf(fold_args(&src, Path::new(&uri), &[]))
            .success()
            .json();
        assert!(
            num(&summary, "containers") > 1,
            "{}: {summary:#}",
            backend.name
        );
        let listing = run!("ls", uri, "-R", "-l").success().stdout;
        assert!(
            listing == reference_listing,
            "{}: listing differs from the local fold",
            backend.name
        );
        let dataset = Dataset::open_uri(&uri).unwrap();
        for (path, node) in &expected {
            if let Content::File(bytes) = &node.content {
                let read = dataset
                    .read(path)
                    .unwrap_or_else(|e| panic!("{}: {e}", backend.name));
                assert!(
                    read.as_slice() == bytes.as_slice(),
                    "{}: {}",
                    backend.name,
                    String::from_utf8_lossy(path)
                );
            }
        }
        run!("verify", uri).success().stdout_has("all good");
        let out = tmp.path().join(format!("unfolded-{}", backend.name));
        run!("unfold", uri, out).success();
        assert_same_tree(&expected, &snapshot(&out, false));
    }
}

#[test]
fn a_remote_entry_costs_one_ranged_read_once_its_index_is_loaded() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let t = Tree::new(&src);
    for i in 0..50 {
        t.file(
            format!("d/f{i:02}"),
            format!("entry {i}").repeat(i + 1).as_bytes(),
        );
    }
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let uri = fresh_location(&backend, tmp.path(), "requests");
        fold(&src, Path::new(&uri), &[]).success();
        let counting = Arc::new(Counting::new(store::open(&uri).unwrap()));
        let dataset = Dataset::open_in(counting.clone()).unwrap();
        // One listing of the generations, one probe for the one after the newest listed,
        // one read of the newest.
        assert_eq!(
            counting.requests(),
            3,
            "{}: opening reads the newest generation only",
            backend.name
        );
        assert_eq!(dataset.catalog().rows().len(), 1);
        dataset.read(b"d/f00").unwrap();
        let after_first = counting.requests();
        assert_eq!(
            after_first - 3,
            2,
            "{}: the first read fetches the container tail, then the entry",
            backend.name
        );
        for i in 1..50 {
            let bytes = dataset.read(format!("d/f{i:02}").as_bytes()).unwrap();
            assert_eq!(
                bytes.as_slice(),
                format!("entry {i}").repeat(i + 1).as_bytes()
            );
        }
        assert_eq!(
            counting.requests(),
            after_first + 49,
            "{}: one request per entry",
            backend.name
        );
    }
}

#[test]
fn writes_are_invisible_until_finished_and_abandoned_writes_leave_nothing() {
    let tmp = tempdir();
    for backend in backends() {
        let uri = fresh_location(&backend, tmp.path(), "publish");
        let store = store::open(&uri).unwrap();
        let payload: Vec<u8> = (0..20_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut out = store.create("dir/object").unwrap();
        out.write_all(&payload)
            .unwrap_or_else(|e| panic!("{}: writing 20 MB: {e:?}", backend.name));
        assert_eq!(
            store.len("dir/object").unwrap(),
            None,
            "{}: visible before finish",
            backend.name
        );
        out.finish().unwrap();
        assert_eq!(
            store.len("dir/object").unwrap(),
            Some(payload.len() as u64),
            "{}",
            backend.name
        );
        let range = store
            .read_range("dir/object", 12_345_678..12_345_978)
            .unwrap();
        assert_eq!(
            range,
            &payload[12_345_678..12_345_978],
            "{}: ranged read",
            backend.name
        );

        let mut abandoned = store.create("dir/abandoned").unwrap();
        abandoned.write_all(&payload[..1000]).unwrap();
        drop(abandoned);
        assert_eq!(
            store.len("dir/abandoned").unwrap(),
            None,
            "{}",
            backend.name
        );
        let keys: Vec<String> = store.list("").unwrap().into_iter().map(|o| o.key).collect();
        assert_eq!(
            keys,
            vec!["dir/object".to_string()],
            "{}: nothing else left behind",
            backend.name
        );
        assert!(
            matches!(store.read("missing"), Err(sheaf::Error::NotFound { .. })),
            "{}",
            backend.name
        );
    }
}

#[test]
fn every_backend_lists_one_directory_level_at_a_time() {
    let tmp = tempdir();
    let keys = ["a/x", "a/y/w", "a/y/z", "a-b", "top"];
    let files: Vec<(String, Vec<u8>)> = keys
        .iter()
        .map(|k| (k.to_string(), k.as_bytes().to_vec()))
        .collect();
    for backend in backends() {
        let uri = fresh_location(&backend, tmp.path(), "levels");
        let store = upload(&uri, &files);
        let level = |dir: &str| {
            let listed = store
                .list_dir(dir)
                .unwrap_or_else(|e| panic!("{}: {dir}: {e}", backend.name));
            let mut objects: Vec<(String, u64)> =
                listed.objects.into_iter().map(|o| (o.key, o.len)).collect();
            let mut dirs = listed.dirs;
            objects.sort();
            dirs.sort();
            (objects, dirs)
        };
        let owned = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
            v.iter().map(|(k, n)| (k.to_string(), *n)).collect()
        };
        assert_eq!(
            level(""),
            (owned(&[("a-b", 3), ("top", 3)]), vec!["a".to_string()]),
            "{}: the root",
            backend.name
        );
        assert_eq!(
            level("a"),
            (owned(&[("a/x", 3)]), vec!["a/y".to_string()]),
            "{}: a",
            backend.name
        );
        assert_eq!(
            level("a/y"),
            (owned(&[("a/y/w", 5), ("a/y/z", 5)]), vec![]),
            "{}: a/y",
            backend.name
        );
        assert_eq!(level("missing"), (vec![], vec![]), "{}", backend.name);
    }
}

/// Folds a small tree to a fresh location and returns (uri, store, a folded path, its container key).
fn folded(backend: &Backend, tmp: &Path, label: &str) -> (String, Arc<dyn Store>, String, String) {
    let src = tmp.join(format!("src-{label}"));
    if !src.exists() {
        let t = Tree::new(&src);
        for i in 0..40 {
            t.file(format!("a/f{i:02}"), &vec![i as u8; 900]);
        }
    }
    let uri = fresh_location(backend, tmp, label);
    fold(&src, Path::new(&uri), &["--container-size", "8KiB"]).success();
    let store = store::open(&uri).unwrap();
    let dataset = Dataset::open_in(store.clone()).unwrap();
    let (at, _) = dataset.lookup(b"a/f20").unwrap().unwrap();
    let key = format!(
        ".sheaf/containers/{}",
        dataset.catalog().rows()[at.container].name
    );
    (uri, store, "a/f20".into(), key)
}

#[test]
fn a_missing_container_is_a_clear_error_and_verify_reports_it() {
    let tmp = tempdir();
    for backend in backends() {
        let (uri, store, path, key) = folded(&backend, tmp.path(), "missing");
        store.delete(&key).unwrap();
        let run = run!("cat", uri, path).fails_with(1).no_stdout();
        assert!(
            run.stderr.contains(&store.uri(&key)),
            "{}: {}",
            backend.name,
            run.stderr
        );
        run!("cat", uri, "a/f00").success();
        run!("verify", uri).fails_with(3).stdout_has("FAULT");
    }
}

#[test]
fn a_truncated_container_is_refused_and_verify_reports_it() {
    let tmp = tempdir();
    for backend in backends() {
        let (uri, store, path, key) = folded(&backend, tmp.path(), "truncated");
        let whole = store.read(&key).unwrap();
        let mut out = store.create(&key).unwrap();
        out.write_all(&whole[..whole.len() / 2]).unwrap();
        out.finish().unwrap();
        let run = run!("cat", uri, path).fails_with(1).no_stdout();
        assert!(
            run.stderr.contains("truncated") || run.stderr.contains("corrupt"),
            "{}: {}",
            backend.name,
            run.stderr
        );
        run!("verify", uri).fails_with(3).stdout_has("FAULT");
    }
}

#[test]
fn a_destination_that_already_holds_a_dataset_is_refused() {
    let tmp = tempdir();
    for backend in backends() {
        let (uri, store, _, _) = folded(&backend, tmp.path(), "twice");
        let before = store.list("").unwrap();
        let src = tmp.path().join("src-twice");
        sheaf(fold_args(
            &src,
            Path::new(&uri),
            &["--container-size", "8KiB"],
        ))
        .fails_with(1)
        .stderr_has("already holds a published sheaf dataset");
        assert_eq!(
            store.list("").unwrap(),
            before,
            "{}: nothing changed",
            backend.name
        );
    }
}

#[test]
fn an_unreachable_server_fails_fast_with_an_error_naming_the_uri() {
    let remote: Vec<Backend> = backends()
        .into_iter()
        .filter(|b| b.base.is_some())
        .collect();
    for backend in remote {
        let (uri, extra_env): (String, Vec<(&str, &str)>) = match backend.name {
            "s3" => (
                "s3://sheaf-test/nowhere".into(),
                vec![("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
            ),
            "azure" => (
                "az://sheaf-test/nowhere".into(),
                vec![("AZURITE_BLOB_STORAGE_URL", "http://127.0.0.1:9")],
            ),
            "hdfs" => ("hdfs://127.0.0.1:9/nowhere".into(), vec![]),
            other => panic!("no unreachable server for the back-end {other}"),
        };
        let started = Instant::now();
        let run = sheaf_with(["ls".into(), PathBuf::from(&uri).into_os_string()], |cmd| {
            cmd.envs(extra_env.iter().copied());
        })
        .fails_with(1);
        assert!(
            run.stderr.contains("nowhere"),
            "{}: {}",
            backend.name,
            run.stderr
        );
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "{}: took {:?} to give up",
            backend.name,
            started.elapsed()
        );
    }
}

/// The regular files of a generated tree, as (key, bytes).
pub(crate) fn generated_files(root: &Path, count: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    generate(root, count, seed);
    snapshot(root, false)
        .into_iter()
        .filter_map(|(path, node)| match node.content {
            Content::File(bytes) => Some((String::from_utf8(path).unwrap(), bytes)),
            _ => None,
        })
        .collect()
}

/// Writes every file as an object under `uri` and returns the store. Many writers at once:
/// closing an HDFS file can wait half a second for the DataNode's block report.
pub(crate) fn upload(uri: &str, files: &[(String, Vec<u8>)]) -> Arc<dyn Store> {
    use rayon::prelude::*;
    let store = store::open(uri).unwrap();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(16)
        .build()
        .unwrap();
    pool.install(|| {
        files.par_iter().for_each(|(key, bytes)| {
            let mut out = store.create(key).unwrap();
            out.write_all(bytes).unwrap();
            out.finish().unwrap();
        })
    });
    store
}

#[test]
fn a_tree_kept_in_a_store_folds_into_a_dataset_in_a_store() {
    let tmp = tempdir();
    let files = generated_files(&tmp.path().join("local-copy"), 150, 11);
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let raw = fresh_location(&backend, tmp.path(), "raw");
        let raw_store = upload(&raw, &files);
        let uri = fresh_location(&backend, tmp.path(), "from-store");
        let summary = sheaf(fold_args(Path::new(&raw), Path::new(&uri), &[]))
            .success()
            .json();
        assert_eq!(
            num(&summary, "files_folded") + num(&summary, "files_kept"),
            files.len() as u64
        );
        assert!(
            num(&summary, "files_kept") > 0,
            "{}: some files are above the threshold",
            backend.name
        );
        let dataset = Dataset::open_uri(&uri).unwrap();
        for (key, bytes) in &files {
            let read = dataset
                .read(key.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {key}: {e}", backend.name));
            assert!(
                read.as_slice() == bytes.as_slice(),
                "{}: {key}",
                backend.name
            );
        }
        let top: Vec<Vec<u8>> = dataset
            .list(b"")
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        let expected: std::collections::BTreeSet<Vec<u8>> = files
            .iter()
            .map(|(key, _)| key.split('/').next().unwrap().as_bytes().to_vec())
            .collect();
        assert_eq!(
            top,
            expected.into_iter().collect::<Vec<_>>(),
            "{}",
            backend.name
        );
        run!("verify", uri).success().stdout_has("all good");
        // The source store is only read.
        assert_eq!(
            raw_store.list("").unwrap().len(),
            files.len(),
            "{}",
            backend.name
        );
    }
}

#[test]
fn an_in_place_fold_of_a_store_leaves_containers_and_large_files_instead_of_small_files() {
    let tmp = tempdir();
    let files = generated_files(&tmp.path().join("local-copy"), 600, 13);
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let uri = fresh_location(&backend, tmp.path(), "in-place");
        let store = upload(&uri, &files);
        let objects_before = store.list("").unwrap().len() as u64;
        assert_eq!(objects_before, files.len() as u64);
        let summary = run!(
            "fold",
            "--in-place",
            uri,
            "--remove-originals",
            "--threshold",
            THRESHOLD,
            "--container-size",
            CONTAINER_SIZE,
            "--json"
        )
        .success()
        .json();
        let objects_after = store.list("").unwrap();
        eprintln!(
            "{}: in-place fold with --remove-originals: {objects_before} files before, {} after",
            backend.name,
            objects_after.len()
        );
        assert_eq!(num(&summary, "objects_before"), objects_before);
        assert_eq!(num(&summary, "objects_after"), objects_after.len() as u64);
        let kept = num(&summary, "files_kept");
        let containers = num(&summary, "containers");
        assert!(kept > 0 && containers > 1, "{}: {summary:#}", backend.name);
        assert_eq!(
            objects_after.len() as u64,
            kept + containers + 1,
            "{}: only large files, containers and the catalog remain",
            backend.name
        );
        assert_eq!(
            num(&summary, "originals_removed"),
            num(&summary, "files_folded")
        );
        let dataset = Dataset::open_uri(&uri).unwrap();
        for (key, bytes) in &files {
            let read = dataset
                .read(key.as_bytes())
                .unwrap_or_else(|e| panic!("{}: {key}: {e}", backend.name));
            assert!(
                read.as_slice() == bytes.as_slice(),
                "{}: {key}",
                backend.name
            );
        }
        run!("verify", uri).success().stdout_has("all good");
    }
}

/// A dataset on a remote back-end reached through a fault-injecting proxy: the URI to use
/// and the environment the `sheaf` command needs to go through the proxy.
pub(crate) struct Proxied {
    pub(crate) proxy: Proxy,
    pub(crate) uri: String,
    env: Vec<(&'static str, String)>,
}

/// HTTP back-ends go through the proxy by pointing their endpoint variable at it; HDFS by
/// naming the proxy in the URI.
pub(crate) fn through_proxy(backend: &Backend, uri: &str) -> Proxied {
    let base = backend.base.as_deref().expect("a remote back-end");
    match backend.http_endpoint_var() {
        Some(var) => {
            let endpoint = std::env::var(var).unwrap();
            let proxy = Proxy::to(endpoint.trim_start_matches("http://").trim_end_matches('/'));
            let env = vec![(var, format!("http://{}", proxy.addr()))];
            Proxied {
                proxy,
                uri: uri.to_owned(),
                env,
            }
        }
        None => {
            let authority = base.trim_start_matches("hdfs://").trim_end_matches('/');
            let proxy = Proxy::to(authority);
            let uri = uri.replacen(authority, &proxy.addr().to_string(), 1);
            Proxied {
                proxy,
                uri,
                env: Vec::new(),
            }
        }
    }
}

impl Proxied {
    pub(crate) fn sheaf(&self, args: &[&str]) -> Run {
        let mut all = vec![args[0], self.uri.as_str()];
        all.extend(&args[1..]);
        sheaf_with(all, |cmd| {
            cmd.envs(self.env.iter().map(|(k, v)| (*k, v.as_str())));
        })
    }
}

#[test]
fn transient_faults_are_retried_and_the_read_still_returns_the_right_bytes() {
    let tmp = tempdir();
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let (uri, store, path, _) = folded(&backend, tmp.path(), "transient");
        let expected = Dataset::open_in(store)
            .unwrap()
            .read(path.as_bytes())
            .unwrap();
        let proxied = through_proxy(&backend, &uri);
        let faults: &[Fault] = match backend.http_endpoint_var() {
            Some(_) => &[Fault::Reset, Fault::Http503, Fault::Reset],
            // HDFS speaks RPC, not HTTP: a dropped NameNode connection is its transient fault.
            None => &[Fault::Reset, Fault::Reset],
        };
        proxied.proxy.inject(faults);
        let run = proxied.sheaf(&["cat", &path]).success();
        assert!(
            run.stdout == expected.as_slice(),
            "{}: cat after transient faults returned other bytes",
            backend.name
        );
        assert_eq!(
            proxied.proxy.injected(),
            faults.len(),
            "{}: every fault was met and ridden out",
            backend.name
        );
    }
}

#[test]
fn a_server_that_goes_away_mid_read_fails_fast_naming_the_uri_and_never_returns_wrong_bytes() {
    let tmp = tempdir();
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let (uri, store, _, _) = folded(&backend, tmp.path(), "goes-away");
        let dataset = Dataset::open_in(store).unwrap();
        let paths: Vec<String> = (0..40).map(|i| format!("a/f{i:02}")).collect();
        let mut whole = Vec::new();
        for path in &paths {
            whole.extend_from_slice(dataset.read(path.as_bytes()).unwrap().as_slice());
        }
        let proxied = through_proxy(&backend, &uri);
        proxied.proxy.go_down_after(12);
        let mut args = vec!["cat"];
        args.extend(paths.iter().map(String::as_str));
        if backend.name == "hdfs" {
            // Only the NameNode is behind the proxy: once the container is open its blocks are
            // read from the DataNodes, as HDFS's own client does, so a NameNode that goes away
            // mid-read stops nothing (a reader that opens something new fails: see
            // a_long_lived_reader_... below).
            let run = proxied.sheaf(&args).success();
            assert!(run.stdout == whole, "hdfs: every byte right");
            continue;
        }
        let started = Instant::now();
        let run = proxied.sheaf(&args).fails_with(1);
        let elapsed = started.elapsed();
        assert!(
            run.stderr.contains(&proxied.uri) || run.stderr.contains(&uri),
            "{}: the error names the dataset: {}",
            backend.name,
            run.stderr
        );
        assert!(
            !run.stdout.is_empty() && run.stdout.len() < whole.len(),
            "{}: the server went away part-way through ({} of {} bytes)",
            backend.name,
            run.stdout.len(),
            whole.len()
        );
        assert!(
            whole.starts_with(&run.stdout),
            "{}: every byte written before the failure is right",
            backend.name
        );
        assert!(
            elapsed < Duration::from_secs(60),
            "{}: took {elapsed:?} to give up",
            backend.name
        );
        proxied.proxy.come_back();
        let run = proxied.sheaf(&args).success();
        assert!(run.stdout == whole, "{}: reads work again", backend.name);
    }
}

#[test]
fn a_long_lived_reader_keeps_reading_while_the_namenode_is_away_and_a_new_one_recovers() {
    let tmp = tempdir();
    for backend in backends().into_iter().filter(|b| b.name == "hdfs") {
        let (uri, _, _, _) = folded(&backend, tmp.path(), "recovers");
        let proxied = through_proxy(&backend, &uri);
        let dataset = Dataset::open_uri(&proxied.uri).unwrap();
        let first = dataset.read(b"a/f01").unwrap();
        assert_eq!(first.as_slice(), &[1u8; 900][..]);
        proxied.proxy.go_down();
        // The container open already knows where its blocks are: the DataNodes serve it while
        // the NameNode is away.
        let during = dataset.read(b"a/f02").unwrap();
        assert_eq!(during.as_slice(), &[2u8; 900][..]);
        // Anything that needs the NameNode fails, naming the dataset, and recovers.
        let started = Instant::now();
        let error = Dataset::open_uri(&proxied.uri).unwrap_err().to_string();
        assert!(error.contains(&proxied.uri), "{error}");
        assert!(started.elapsed() < Duration::from_secs(60));
        proxied.proxy.come_back();
        let reopened = Dataset::open_uri(&proxied.uri).unwrap();
        assert_eq!(reopened.read(b"a/f02").unwrap().as_slice(), &[2u8; 900][..]);
    }
}
