//! Round trips: a realistic tree goes in, and `cat`, `unfold`, `ls`, `stat` and the library
//! give back exactly what went in.

use crate::util::*;
use sheaf::{Dataset, EntryKind};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// A file whose mtime is set to 2001-09-09 01:46:40.123456789 UTC.
const Y2001: (i64, u32) = (1_000_000_000, 123_456_789);

/// Adds the awkward cases to a tree: empty directories, every kind of symlink, zero-byte
/// files, files at and just below the threshold, names that are not UTF-8, odd modes and old
/// mtimes (including one before 1970).
pub fn add_edge_cases(t: &Tree) {
    t.dir("empty");
    t.dir("deep/er/still-empty");
    t.file("targets/hello.txt", b"hello, world\n");
    t.symlink("links/to-hello", "../targets/hello.txt");
    t.symlink("links/chain", "to-hello");
    t.symlink("links/to-dir", "../targets");
    t.symlink("links/dangling", "../nowhere/missing.txt");
    t.symlink("links/absolute", "/etc/hostname");
    t.file("zero/empty.txt", b"");
    t.file("zero-top", b"");
    t.file("edge/at-threshold.bin", &vec![b'x'; THRESHOLD_BYTES]);
    t.file("edge/below-threshold.bin", &vec![b'y'; THRESHOLD_BYTES - 1]);
    t.file(b"names/caf\xe9.txt", b"latin-1 name\n");
    t.file(
        b"names/\xff\xfe-dir/inner.txt",
        b"inside a non-UTF-8 directory\n",
    );
    t.file(b"names/big-\xff.bin", &vec![7u8; 3000]);
    t.file("names/unicode-\u{1F4F7}.txt", b"camera\n");
    t.file("names/with space and 'quotes'", b"spaces\n");
    t.file("modes/secret", b"600\n");
    t.chmod("modes/secret", 0o600);
    t.file("modes/script.sh", b"#!/bin/sh\necho hi\n");
    t.chmod("modes/script.sh", 0o755);
    t.file("modes/readonly", b"444\n");
    t.chmod("modes/readonly", 0o444);
    t.file("modes/readonly-big.bin", &vec![4u8; 2048]);
    t.chmod("modes/readonly-big.bin", 0o444);
    t.file("modes/setuid", b"suid\n");
    t.chmod("modes/setuid", 0o4755);
    t.file("modes/private/inside", b"700 dir\n");
    t.chmod("modes/private", 0o700);
    t.file(
        "modes/locked/inside",
        b"555 dir: unfold must write this before locking it\n",
    );
    t.dir("modes/sticky");
    t.chmod("modes/sticky", 0o1777);
    t.file("old/epoch-plus-one", b"1970\n");
    t.mtime("old/epoch-plus-one", 1, 0);
    t.file("old/y2001", b"2001\n");
    t.mtime("old/y2001", Y2001.0, Y2001.1);
    t.file("old/before-1970", b"1938\n");
    t.mtime("old/before-1970", -1_000_000_000, 500_000_000);
    t.file("old/big-old.bin", &vec![9u8; 5000]);
    t.chmod("old/big-old.bin", 0o600);
    t.mtime("old/big-old.bin", 1_234_567_890, 987_654_321);
    t.symlink("old/old-link", "y2001");
    t.mtime("old/old-link", 946_684_800, 1);
    // Directory modes and mtimes last: creating children changes them.
    t.chmod("modes/locked", 0o555);
    t.mtime("old", 631_152_000, 42);
    t.mtime("empty", 915_148_800, 999_999_999);
}

/// Regular files of a snapshot with their bytes, in snapshot order.
fn regular_files(tree: &Snapshot) -> Vec<(&Vec<u8>, &Vec<u8>)> {
    tree.iter()
        .filter_map(|(path, node)| match &node.content {
            Content::File(bytes) => Some((path, bytes)),
            _ => None,
        })
        .collect()
}

/// `cat`s every regular file (in batches, many paths per run) and compares the output, file by
/// file, with the expected bytes.
fn cat_everything(dataset: &Path, files: &[(&Vec<u8>, &Vec<u8>)]) {
    for batch in files.chunks(700) {
        let mut args: Vec<OsString> = vec!["cat".into(), dataset.into()];
        args.extend(batch.iter().map(|(p, _)| bpath(p).into_os_string()));
        let run = sheaf(args).success();
        let expected_len: usize = batch.iter().map(|(_, b)| b.len()).sum();
        assert_eq!(
            run.stdout.len(),
            expected_len,
            "cat printed the wrong length"
        );
        let mut at = 0;
        for (path, bytes) in batch {
            let got = &run.stdout[at..at + bytes.len()];
            assert!(
                got == bytes.as_slice(),
                "cat {:?} returned different bytes",
                String::from_utf8_lossy(path)
            );
            at += bytes.len();
        }
    }
}

#[test]
fn three_thousand_files_fold_and_come_back_byte_for_byte() {
    let tmp = tempdir();
    let src = tmp.path().join("photos");
    generate(&src, 3000, 7);
    add_edge_cases(&Tree::new(&src));
    let before = snapshot(&src, false);
    let source_untouched = untouched_check(&src);
    let dst = tmp.path().join("photos.sheaf");

    let summary = fold(&src, &dst, &[]).success().json();
    source_untouched();

    let files = regular_files(&before);
    let kept = files
        .iter()
        .filter(|(_, b)| b.len() >= THRESHOLD_BYTES)
        .count() as u64;
    let links = before
        .values()
        .filter(|n| matches!(n.content, Content::Symlink(_)))
        .count() as u64;
    assert!(files.len() > 3000);
    assert!(kept > 100, "the generator should make many external files");
    assert_eq!(num(&summary, "files_kept"), kept);
    assert_eq!(num(&summary, "files_folded"), files.len() as u64 - kept);
    assert_eq!(num(&summary, "symlinks"), links);
    let containers_on_disk = containers(&dst).len() as u64;
    assert!(
        containers_on_disk >= 10,
        "only {containers_on_disk} containers"
    );
    assert_eq!(num(&summary, "containers"), containers_on_disk);

    // External files sit at their original paths in the new root, byte-identical.
    let big = std::fs::read(dst.join(bpath(b"names/big-\xff.bin"))).unwrap();
    assert_eq!(big, vec![7u8; 3000]);
    assert!(!dst.join("edge/below-threshold.bin").exists());
    assert!(dst.join("edge/at-threshold.bin").is_file());

    cat_everything(&dst, &files);

    let verify = run!("verify", dst).success();
    assert!(
        verify.stdout_str().contains("all good"),
        "{}",
        verify.stdout_str()
    );

    // Not into the dataset's own directory, nor into one that holds it.
    let inside = dst.join("restored");
    run!("unfold", dst, inside)
        .fails_with(1)
        .stderr_has("overlaps the dataset");
    assert!(!inside.exists(), "nothing written");
    run!("unfold", dst, tmp.path())
        .fails_with(1)
        .stderr_has("overlaps the dataset");

    let out = tmp.path().join("restored");
    let unfolded = run!("unfold", dst, out, "--json").success().json();
    assert_eq!(num(&unfolded, "files"), files.len() as u64);
    assert_eq!(num(&unfolded, "symlinks"), links);
    assert_same_tree(&before, &snapshot(&out, false));
}

#[test]
fn the_library_reads_lists_and_walks_what_the_cli_folded() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    generate(&src, 600, 11);
    add_edge_cases(&Tree::new(&src));
    let before = snapshot(&src, false);
    let dst = tmp.path().join("dst");
    fold(&src, &dst, &["--container-size", "16KiB"]).success();

    let dataset = Dataset::open(&dst).expect("open dataset");
    assert_eq!(dataset.entry_count(), before.len() as u64);

    // walk: every entry once, strictly in path order, with the source's metadata.
    let mut walked = Vec::new();
    for item in dataset.walk() {
        let (_, entry) = item.expect("walk");
        let meta = std::fs::symlink_metadata(src.join(bpath(&entry.path))).unwrap();
        assert_eq!(entry.mode, meta.mode(), "mode of {:?}", entry.path);
        assert_eq!(entry.mtime_ns, mtime_ns(&meta), "mtime of {:?}", entry.path);
        let kind_ok = match entry.kind {
            EntryKind::Dir => meta.is_dir(),
            EntryKind::Symlink => meta.file_type().is_symlink(),
            EntryKind::File => meta.is_file() && meta.len() < THRESHOLD_BYTES as u64,
            EntryKind::External => meta.is_file() && meta.len() >= THRESHOLD_BYTES as u64,
            EntryKind::Tombstone => false,
        };
        assert!(kind_ok, "{:?} is {:?}", entry.path, entry.kind);
        walked.push(entry.path);
    }
    for pair in walked.windows(2) {
        assert!(
            sheaf::format::path::cmp_paths(&pair[0], &pair[1]).is_lt(),
            "walk out of order: {:?} then {:?}",
            String::from_utf8_lossy(&pair[0]),
            String::from_utf8_lossy(&pair[1])
        );
    }
    let walked: BTreeSet<Vec<u8>> = walked.into_iter().collect();
    let expected: BTreeSet<Vec<u8>> = before.keys().cloned().collect();
    assert_eq!(walked, expected);

    // read: every regular file, byte for byte; stat agrees on size.
    for (path, bytes) in regular_files(&before) {
        let got = dataset.read(path).expect("read");
        assert!(
            &got[..] == bytes.as_slice(),
            "read {:?}",
            String::from_utf8_lossy(path)
        );
        assert_eq!(dataset.stat(path).unwrap().len, bytes.len() as u64);
    }

    // list: every directory's direct children, in the order a reader expects.
    let mut children: BTreeMap<Vec<u8>, BTreeSet<Vec<u8>>> = BTreeMap::new();
    children.insert(Vec::new(), BTreeSet::new());
    for (path, node) in &before {
        if node.content == Content::Dir {
            children.entry(path.clone()).or_default();
        }
        let parent = sheaf::format::path::parent(path).to_vec();
        children.entry(parent).or_default().insert(path.clone());
    }
    for (dir, expected) in &children {
        let listed: Vec<Vec<u8>> = dataset
            .list(dir)
            .expect("list")
            .into_iter()
            .map(|e| e.path)
            .collect();
        let mut sorted = listed.clone();
        sorted.sort_by(|a, b| sheaf::format::path::cmp_paths(a, b));
        assert_eq!(listed, sorted, "list is not in path order");
        let listed: BTreeSet<Vec<u8>> = listed.into_iter().collect();
        assert_eq!(
            &listed,
            expected,
            "children of {:?}",
            String::from_utf8_lossy(dir)
        );
    }

    // Symlinks: followed inside the dataset, never outside it.
    assert_eq!(
        &dataset.read(b"links/chain").unwrap()[..],
        b"hello, world\n"
    );
    assert_eq!(
        &dataset.read(b"links/to-dir/hello.txt").unwrap()[..],
        b"hello, world\n"
    );
    assert_eq!(
        dataset.stat(b"links/chain").unwrap().kind,
        EntryKind::Symlink
    );
    assert!(matches!(
        dataset.read(b"links/dangling"),
        Err(sheaf::Error::NotFound { .. })
    ));
    assert!(matches!(
        dataset.read(b"links/absolute"),
        Err(sheaf::Error::WrongKind { .. })
    ));
    assert!(matches!(
        dataset.read(b"targets"),
        Err(sheaf::Error::WrongKind { .. })
    ));
    // User paths are normalised; `..` is refused rather than resolved.
    assert_eq!(
        &dataset.read(b"/targets//hello.txt").unwrap()[..],
        b"hello, world\n"
    );
    assert_eq!(
        &dataset.read(b"./targets/hello.txt/").unwrap()[..],
        b"hello, world\n"
    );
    assert!(matches!(
        dataset.read(b"targets/../targets/hello.txt"),
        Err(sheaf::Error::InvalidPath { .. })
    ));
    assert!(matches!(
        dataset.stat(b"no/such/thing"),
        Err(sheaf::Error::NotFound { .. })
    ));
    assert_eq!(dataset.stat(b"/").unwrap().kind, EntryKind::Dir);

    // walk_under: exactly the subtree.
    let under: Vec<Vec<u8>> = dataset
        .walk_under(b"modes")
        .unwrap()
        .map(|i| i.unwrap().1.path)
        .collect();
    let expected: Vec<Vec<u8>> = before
        .keys()
        .filter(|p| p.starts_with(b"modes/"))
        .cloned()
        .collect();
    assert_eq!(under.len(), expected.len());
    assert_eq!(
        under.into_iter().collect::<BTreeSet<_>>(),
        expected.into_iter().collect::<BTreeSet<_>>()
    );
}

/// A small tree whose listing is known line by line.
fn listing_fixture(root: &Path) {
    let t = Tree::new(root);
    t.file("docs/readme.txt", b"read me\n");
    t.mtime("docs/readme.txt", Y2001.0, Y2001.1);
    t.file("docs/big.pdf", &vec![1u8; 4000]);
    t.mtime("docs/big.pdf", Y2001.0, 0);
    t.symlink("docs/latest", "readme.txt");
    t.mtime("docs/latest", Y2001.0, 0);
    t.file(b"docs/caf\xe9", b"x");
    t.mtime(b"docs/caf\xe9", Y2001.0, 0);
    t.dir("docs/empty");
    t.mtime("docs/empty", Y2001.0, 0);
    t.file("secret", b"600\n");
    t.chmod("secret", 0o600);
    t.mtime("secret", Y2001.0, 0);
    t.mtime("docs", Y2001.0, 0);
    t.symlink("alias", "docs");
}

#[test]
fn ls_and_stat_show_names_modes_sizes_times_and_targets() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    listing_fixture(&src);
    let dst = tmp.path().join("dst");
    fold(&src, &dst, &[]).success();
    let ds = dst.as_os_str();

    // Plain: names only, in path order, raw bytes for names that are not UTF-8.
    let root = run!("ls", ds).success();
    assert_eq!(root.stdout, b"alias\ndocs\nsecret\n");
    let docs = run!("ls", ds, "docs").success();
    assert_eq!(
        docs.stdout,
        b"big.pdf\ncaf\xe9\nempty\nlatest\nreadme.txt\n".to_vec()
    );

    // Long: mode string, size, UTC mtime, and the target of a link.
    let long = run!("ls", "-l", ds, "docs").success();
    let lines: Vec<&[u8]> = long.stdout.split(|&b| b == b'\n').collect();
    let when = "2001-09-09 01:46:40";
    assert_eq!(
        lines[0],
        format!("-rw-r--r-- {:>12} {when}  big.pdf", 4000).as_bytes()
    );
    assert_eq!(
        lines[2],
        format!("drwxr-xr-x {:>12} {when}  empty", 0).as_bytes()
    );
    assert_eq!(
        lines[3],
        format!("lrwxrwxrwx {:>12} {when}  latest -> readme.txt", 10).as_bytes()
    );
    let secret = run!("ls", "-l", ds, "secret").success();
    assert_eq!(
        secret.stdout_str(),
        format!("-rw------- {:>12} {when}  secret\n", 4)
    );

    // Recursive: full paths of everything below.
    let all = run!("ls", "-R", ds).success();
    assert_eq!(
        all.stdout,
        b"alias\ndocs\ndocs/big.pdf\ndocs/caf\xe9\ndocs/empty\ndocs/latest\ndocs/readme.txt\nsecret\n"
            .to_vec()
    );
    let sub = run!("ls", "-R", ds, "docs/empty").success();
    assert!(sub.stdout.is_empty(), "an empty directory lists nothing");

    // JSON: one object per line, with raw path bytes when the name is not UTF-8.
    let json = run!("ls", "--json", ds, "docs").success();
    let rows: Vec<serde_json::Value> = json
        .stdout_str()
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[0]["path"], "docs/big.pdf");
    assert_eq!(rows[0]["kind"], "external");
    assert_eq!(rows[0]["size"], 4000);
    assert_eq!(rows[0]["mode"], 0o100644);
    assert_eq!(rows[0]["mtime_ns"], Y2001.0 * 1_000_000_000);
    assert_eq!(rows[1]["kind"], "file");
    assert_eq!(
        rows[1]["path_bytes"],
        serde_json::json!(b"docs/caf\xe9".to_vec())
    );
    assert_eq!(rows[2]["kind"], "dir");
    assert_eq!(rows[3]["kind"], "symlink");
    assert_eq!(rows[3]["target"], "readme.txt");
    assert_eq!(rows[4]["path"], "docs/readme.txt");
    assert_eq!(
        rows[4]["mtime_ns"],
        Y2001.0 * 1_000_000_000 + i64::from(Y2001.1)
    );

    // stat --json: where the bytes are and their checksum.
    let stat = run!("stat", "--json", ds, "docs/readme.txt")
        .success()
        .json();
    assert_eq!(stat["kind"], "file");
    assert_eq!(stat["size"], 8);
    assert_eq!(stat["stored_len"], 8);
    assert_eq!(stat["codec"], "none");
    assert_eq!(
        stat["xxh3"],
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(b"read me\n"))
    );
    let container = stat["container"].as_str().expect("container name");
    let bytes = std::fs::read(dst.join(".sheaf/containers").join(container)).unwrap();
    let offset = num(&stat, "offset") as usize;
    assert_eq!(&bytes[offset..offset + 8], b"read me\n");

    let link = run!("stat", "--json", ds, "docs/latest").success().json();
    assert_eq!(link["kind"], "symlink");
    assert_eq!(link["target"], "readme.txt");
    let ext = run!("stat", "--json", ds, "docs/big.pdf").success().json();
    assert_eq!(ext["kind"], "external");
    // An external file's bytes are where it lives: no container, offset or stored length;
    // its checksum is shown. A directory has none of them.
    for field in ["container", "offset", "stored_len", "codec"] {
        assert!(
            ext.get(field).is_none(),
            "external file shows {field}: {ext}"
        );
    }
    assert!(ext["xxh3"].is_string(), "{ext}");
    let dir = run!("stat", "--json", ds, "docs").success().json();
    for field in ["container", "offset", "stored_len", "codec", "xxh3"] {
        assert!(dir.get(field).is_none(), "a directory shows {field}: {dir}");
    }
    let secret = run!("stat", "--json", ds, "secret").success().json();
    assert_eq!(secret["mode"], 0o100600);

    // cat follows links inside the dataset, in the last component and on the way to it.
    let through = run!("cat", ds, "docs/latest", "alias/readme.txt", "alias/latest").success();
    assert_eq!(through.stdout, b"read me\nread me\nread me\n");
    let dir = run!("cat", ds, "alias").fails_with(1).no_stdout();
    assert!(dir.stderr.contains("is a directory"), "{}", dir.stderr);

    // The human form names the kind.
    let human = run!("stat", ds, "docs/big.pdf").success();
    assert!(human.stdout_str().contains("kept as an ordinary file"));
}

#[test]
fn stat_and_list_follow_a_symlinked_directory_in_the_middle_of_a_path() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let t = Tree::new(&src);
    t.file("real/dir/file.txt", b"through the link");
    t.symlink("alias", "real/dir");
    let ds = tmp.path().join("ds");
    fold(&src, &ds, &[]).success();
    let dataset = sheaf::Dataset::open(&ds).unwrap();
    let entry = dataset.stat(b"alias/file.txt").unwrap();
    assert_eq!(entry.path, b"real/dir/file.txt");
    assert_eq!(entry.len, 16);
    let names: Vec<Vec<u8>> = dataset
        .list(b"alias")
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(names, vec![b"real/dir/file.txt".to_vec()]);
    assert_eq!(
        dataset.stat(b"alias").unwrap().kind,
        sheaf::EntryKind::Symlink
    );
    run!("stat", ds, "alias/file.txt")
        .success()
        .stdout_has("real/dir/file.txt");
    assert!(dataset.stat(b"alias/missing").is_err());
}

/// `..` after a symlink climbs from where the link led, as the kernel resolves it, not from
/// the text before it (reading a different file than the source tree holds would be wrong
/// bytes from an honest dataset).
#[test]
fn dot_dot_after_a_symlink_climbs_from_where_the_link_led() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let t = Tree::new(&src);
    t.file("ok", b"root\n");
    t.file("d1/d2/ok", b"inner\n");
    t.symlink("d1/d2/s", "..");
    t.symlink("t", "d1/d2/s/../ok");
    t.symlink("u", "d1/d2/s/d2/s/../ok");
    t.symlink("v", "ok/../ok");
    t.symlink("w", "d1/d2/s/../..");
    let ds = tmp.path().join("ds");
    fold(&src, &ds, &[]).success();
    let dataset = sheaf::Dataset::open(&ds).unwrap();
    for (link, expected) in [("t", "root\n"), ("u", "root\n")] {
        let kernel = std::fs::read(src.join(link)).unwrap();
        assert_eq!(
            kernel,
            expected.as_bytes(),
            "the kernel's reading of {link}"
        );
        assert_eq!(
            dataset.read(link.as_bytes()).unwrap().as_slice(),
            &kernel[..],
            "{link}"
        );
        assert_eq!(run!("cat", ds, link).success().stdout, kernel, "cat {link}");
    }
    // A file is not a directory to climb out of, and nothing climbs above the root.
    assert!(std::fs::read(src.join("v")).is_err());
    assert!(dataset.read(b"v").is_err());
    assert!(dataset.read(b"w").is_err());
    run!("cat", ds, "w")
        .fails_with(1)
        .stderr_has("points outside the dataset");
}

#[test]
fn the_demo_refuses_a_missing_directory_before_touching_its_last_output() {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let listing = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map(|entries| entries.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    let before = listing(&repo.join("demo-out"));
    let tmp = tempdir();
    let out = std::process::Command::new("bash")
        .arg(repo.join("scripts/demo.sh"))
        .arg(tmp.path().join("no-such-dir"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
    assert_eq!(
        listing(&repo.join("demo-out")),
        before,
        "the last demo's output is untouched"
    );
}

#[test]
fn the_dataset_root_keeps_the_folded_root_s_mode_and_mtime_through_generations() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let t = Tree::new(&src);
    t.file("a.txt", b"a");
    t.chmod("", 0o750);
    t.mtime("", Y2001.0, Y2001.1);
    let ds = tmp.path().join("ds");
    fold(&src, &ds, &[]).success();
    let y2001_ns = Y2001.0 * 1_000_000_000 + i64::from(Y2001.1);
    let root = Dataset::open(&ds).unwrap().stat(b"").unwrap();
    assert_eq!((root.mode, root.mtime_ns), (0o040750, y2001_ns));
    let shown = run!("stat", "--json", ds, "").success().json();
    assert_eq!(shown["mtime_ns"], root.mtime_ns, "{shown}");
    // Later generations keep it: an append and a removal change what is under the root.
    let more = Tree::new(tmp.path().join("more"));
    more.file("b.txt", b"b");
    fold(&more.root, &ds, &["--append"]).success();
    run!("rm", ds, "a.txt").success();
    let root = Dataset::open(&ds).unwrap().stat(b"").unwrap();
    assert_eq!((root.mode, root.mtime_ns), (0o040750, y2001_ns));
    // A dataset whose catalog records no root (folded before it did, or from a store) shows a
    // directory of mode 0755 and time 0, as before.
    let v2 = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2");
    let old = Dataset::open(v2).unwrap().stat(b"").unwrap();
    assert_eq!((old.mode, old.mtime_ns), (0o040755, 0));
}
