//! A fold split for a cluster, through the CLI: `fold --plan`, `--part K` in any order (retried,
//! duplicated), `--commit`; the same dataset as one machine's fold, on every back-end, from a
//! local tree and from a tree kept in a store; appends; refusals.

use crate::conformance::{backends, fresh_location, generated_files, upload};
use crate::util::*;
use std::collections::BTreeMap;
use std::path::Path;

/// A plan's location and how many parts it has.
struct Planned {
    location: String,
    parts: u32,
}

/// Plans `src` into `dst` in at most `partitions` parts.
fn plan(src: &str, dst: &str, partitions: u32, extra: &[&str]) -> Planned {
    let n = partitions.to_string();
    let mut args = fold_args(
        Path::new(src),
        Path::new(dst),
        &["--plan", "--partitions", &n],
    );
    args.extend(extra.iter().map(Into::into));
    let planned = sheaf(args).success().json();
    Planned {
        location: planned["location"].as_str().unwrap().to_owned(),
        parts: planned["parts"].as_array().unwrap().len() as u32,
    }
}

fn part(location: &str, k: u32) -> serde_json::Value {
    let k = k.to_string();
    sheaf(["fold", "--part", &k, location, "--json", "--quiet"])
        .success()
        .json()
}

fn commit(location: &str) -> Run {
    sheaf(["fold", "--commit", location, "--json", "--quiet"])
}

/// `ls -R -l` of a dataset: every entry's mode, size, time and path.
fn listing(dataset: &str) -> String {
    run!("ls", dataset, "-R", "-l").success().stdout_str()
}

/// Every container file of a local dataset with its bytes.
fn containers(root: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(root.join(".sheaf/containers"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_backend_folds_a_planned_tree_into_the_dataset_one_machine_folds() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    generate(&src, 600, 21);
    let t = Tree::new(&src);
    t.dir("empty/dir");
    t.symlink("link", "l0-00");
    let expected = snapshot(&src, false);
    let reference = tmp.path().join("reference");
    fold(&src, &reference, &[]).success();
    let src = src.display().to_string();
    for backend in backends() {
        let name = backend.name;
        let uri = fresh_location(&backend, tmp.path(), "planned");
        let planned = plan(&src, &uri, 5, &[]);
        assert_eq!(planned.parts, 5, "{name}: a tree this size is cut as asked");
        // Before the commit nothing is published.
        run!("ls", uri).fails_with(1);
        // Parts in any order; one run twice, as a retried or speculative task would.
        let mut files = 0;
        for k in (0..planned.parts).rev() {
            let done = part(&planned.location, k);
            assert_eq!(done["already_done"], false, "{name}: part {k}");
            files += num(&done, "files_folded") + num(&done, "files_kept");
        }
        assert_eq!(part(&planned.location, 2)["already_done"], true, "{name}");
        let summary = commit(&planned.location).success().json();
        assert_eq!(num(&summary, "generation"), 0, "{name}");
        assert_eq!(
            num(&summary, "files_folded") + num(&summary, "files_kept"),
            files,
            "{name}"
        );
        assert!(num(&summary, "containers") >= 5, "{name}: {summary}");
        assert_eq!(
            listing(&uri),
            listing(&reference.display().to_string()),
            "{name}"
        );
        let root = |dataset: &str| run!("stat", "--json", dataset, "").success().json();
        assert_eq!(
            root(&uri),
            root(&reference.display().to_string()),
            "{name}: the root"
        );
        run!("verify", uri).success().stdout_has("all good");
        let out = tmp.path().join(format!("unfolded-{name}"));
        run!("unfold", uri, out).success();
        assert_eq!(
            snapshot(&out, false),
            expected,
            "{name}: unfold gives the tree back"
        );
        // The plan's staging files went with the commit; a second commit says so.
        commit(&planned.location)
            .fails_with(1)
            .stderr_has("no plan is there");
        run!("log", uri).success().stdout_has("fold");
    }
}

#[test]
fn a_tree_kept_in_a_store_folds_by_parts_like_a_local_one() {
    let tmp = tempdir();
    let files = generated_files(&tmp.path().join("local-copy"), 400, 23);
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let name = backend.name;
        let raw = fresh_location(&backend, tmp.path(), "raw");
        upload(&raw, &files);
        let whole = tmp.path().join(format!("whole-{name}"));
        fold(Path::new(&raw), &whole, &[]).success();
        let dst = tmp.path().join(format!("parted-{name}"));
        let dst = dst.display().to_string();
        let planned = plan(&raw, &dst, 3, &[]);
        assert_eq!(planned.parts, 3, "{name}");
        for k in 0..planned.parts {
            part(&planned.location, k);
        }
        commit(&planned.location).success();
        assert_eq!(
            listing(&dst),
            listing(&whole.display().to_string()),
            "{name}"
        );
        run!("verify", dst).success().stdout_has("all good");
    }
}

#[test]
fn a_part_folded_again_writes_the_same_bytes_under_the_same_names() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    generate(&src, 600, 5);
    let dst = tmp.path().join("ds");
    let planned = plan(
        &src.display().to_string(),
        &dst.display().to_string(),
        3,
        &["--compress", "zstd"],
    );
    for k in 0..planned.parts {
        part(&planned.location, k);
    }
    let first = containers(&dst);
    // A task that wrote its containers and died before recording its result: the part runs
    // again, finds its containers and keeps them; one whose containers were lost rewrites them
    // byte for byte.
    let results: Vec<_> = std::fs::read_dir(Path::new(&planned.location).parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("part-"))
        .collect();
    assert_eq!(results.len(), planned.parts as usize);
    for result in &results {
        std::fs::remove_file(result).unwrap();
    }
    for name in first.keys().filter(|n| n.contains("-p000001-")) {
        std::fs::remove_file(dst.join(".sheaf/containers").join(name)).unwrap();
    }
    let again = part(&planned.location, 0);
    assert_eq!(again["already_done"], false);
    assert_eq!(num(&again, "containers_reused"), num(&again, "containers"));
    part(&planned.location, 1);
    part(&planned.location, 2);
    assert_eq!(containers(&dst), first);
    commit(&planned.location).success();
    run!("verify", dst).success().stdout_has("all good");
}

#[test]
fn a_commit_before_every_part_finished_publishes_nothing_and_names_the_missing_parts() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    generate(&src, 400, 9);
    let dst = tmp.path().join("ds");
    let planned = plan(
        &src.display().to_string(),
        &dst.display().to_string(),
        4,
        &[],
    );
    assert_eq!(planned.parts, 4);
    part(&planned.location, 2);
    commit(&planned.location)
        .fails_with(1)
        .stderr_has("3 of 4 parts have not finished (parts 0-1, 3)");
    run!("ls", dst).fails_with(1);
    sheaf(["fold", "--part", "9", &planned.location])
        .fails_with(1)
        .stderr_has("part 9 is not in the plan");
    for k in [0, 1, 3] {
        part(&planned.location, k);
    }
    commit(&planned.location).success();
    run!("verify", dst).success().stdout_has("all good");
}

#[test]
fn a_planned_append_commits_one_generation_under_its_prefix() {
    let tmp = tempdir();
    let first = Tree::new(tmp.path().join("first"));
    first.file("a.txt", b"first");
    let more = tmp.path().join("more");
    generate(&more, 300, 3);
    let dst = tmp.path().join("ds");
    fold(&first.root, &dst, &[]).success();
    let dst_s = dst.display().to_string();
    let planned = plan(
        &more.display().to_string(),
        &dst_s,
        3,
        &["--append", "--prefix", "new/batch"],
    );
    for k in 0..planned.parts {
        part(&planned.location, k);
    }
    let summary = commit(&planned.location).success().json();
    assert_eq!(num(&summary, "generation"), 1);
    let log = run!("log", dst, "--json").success().lines();
    assert_eq!(log.len(), 2, "one generation for the whole plan: {log:?}");
    run!("cat", dst, "a.txt").success().stdout_has("first");
    let out = tmp.path().join("out");
    run!("unfold", dst, out).success();
    assert_eq!(
        snapshot(&out.join("new/batch"), false),
        snapshot(&more, false)
    );
    // A plan into a dataset that is already published is refused, as a fold is.
    sheaf(fold_args(&more, &dst, &["--plan", "--partitions", "2"]))
        .fails_with(1)
        .stderr_has("already");
}

#[test]
fn planning_the_same_fold_again_continues_its_unfinished_plan() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    generate(&src, 300, 4);
    let (src, dst) = (src.display().to_string(), tmp.path().join("ds"));
    let dst = dst.display().to_string();
    let first = plan(&src, &dst, 3, &[]);
    part(&first.location, 1);
    let again = plan(&src, &dst, 3, &[]);
    assert_eq!(
        again.location, first.location,
        "the same fold continues its plan"
    );
    assert_eq!(part(&again.location, 1)["already_done"], true);
    let other = plan(&src, &dst, 2, &[]);
    assert_ne!(
        other.location, first.location,
        "other settings make a plan of their own"
    );
    for k in 0..again.parts {
        part(&again.location, k);
    }
    commit(&again.location).success();
    run!("verify", dst).success().stdout_has("all good");
    // Once committed, the plan is not continued: the dataset is published.
    sheaf(fold_args(
        Path::new(&src),
        Path::new(&dst),
        &["--plan", "--partitions", "3"],
    ))
    .fails_with(1);
}

/// Plans folding `dir` in place (`--in-place DIR --plan`), with `extra` flags.
fn plan_in_place(dir: &str, partitions: u32, extra: &[&str]) -> Planned {
    let n = partitions.to_string();
    let mut args = vec![
        "fold",
        "--in-place",
        dir,
        "--plan",
        "--partitions",
        &n,
        "--json",
        "--threshold",
        "1KiB",
        "--container-size",
        "64KiB",
    ];
    args.extend(extra);
    let planned = sheaf(args).success().json();
    Planned {
        location: planned["location"].as_str().unwrap().to_owned(),
        parts: planned["parts"].as_array().unwrap().len() as u32,
    }
}

#[test]
fn a_planned_in_place_fold_removes_originals_only_once_committed() {
    let tmp = tempdir();
    let dir = tmp.path().join("data");
    generate(&dir, 400, 8);
    let expected = snapshot(&dir, false);
    let dir_s = dir.display().to_string();
    let planned = plan_in_place(&dir_s, 3, &["--remove-originals"]);
    for k in 0..planned.parts {
        part(&planned.location, k);
    }
    // Folded but not committed: every original is still there.
    assert_eq!(snapshot(&dir, true), expected);
    let summary = commit(&planned.location).success().json();
    let (folded, kept) = (num(&summary, "files_folded"), num(&summary, "files_kept"));
    assert!(folded > 0 && kept > 0, "{summary}");
    assert_eq!(num(&summary, "originals_removed"), folded);
    assert_eq!(
        num(&summary, "objects_after"),
        num(&summary, "containers") + 1 + kept
    );
    let left_files = snapshot(&dir, true)
        .values()
        .filter(|n| matches!(n.content, Content::File(_)))
        .count() as u64;
    assert_eq!(
        left_files, kept,
        "only the large files stay beside the dataset"
    );
    let out = tmp.path().join("out");
    run!("unfold", dir, out).success();
    assert_eq!(snapshot(&out, false), expected);
}

#[test]
fn a_tree_in_a_store_is_folded_in_place_by_parts() {
    let tmp = tempdir();
    let files = generated_files(&tmp.path().join("local-copy"), 300, 29);
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let name = backend.name;
        let uri = fresh_location(&backend, tmp.path(), "in-place-parts");
        let store = upload(&uri, &files);
        let planned = plan_in_place(&uri, 3, &["--remove-originals"]);
        for k in 0..planned.parts {
            part(&planned.location, k);
        }
        let summary = commit(&planned.location).success().json();
        let kept = num(&summary, "files_kept");
        assert_eq!(
            num(&summary, "originals_removed"),
            num(&summary, "files_folded"),
            "{name}"
        );
        let objects = store.list("").unwrap().len() as u64;
        assert_eq!(objects, num(&summary, "containers") + 1 + kept, "{name}");
        let dataset = sheaf::Dataset::open_uri(&uri).unwrap();
        for (key, bytes) in &files {
            assert!(
                dataset.read(key.as_bytes()).unwrap().as_slice() == bytes.as_slice(),
                "{name}: {key}"
            );
        }
    }
}

#[test]
fn gc_removes_an_abandoned_plan_and_its_parts_and_a_committed_plan_left_behind() {
    let tmp = tempdir();
    let first = Tree::new(tmp.path().join("first"));
    first.file("a.txt", b"first");
    let dst = tmp.path().join("ds");
    fold(&first.root, &dst, &[]).success();
    let dst_s = dst.display().to_string();
    let plans = dst.join(".sheaf/staging/plans");

    // A planned append whose job was given up after one part.
    let more = tmp.path().join("more");
    generate(&more, 300, 5);
    let abandoned = plan(
        &more.display().to_string(),
        &dst_s,
        3,
        &["--append", "--prefix", "given-up"],
    );
    assert!(abandoned.parts > 1);
    part(&abandoned.location, 0);
    let before = containers(&dst).len();
    // Within the window, a plan is someone's job under way: kept, with its containers.
    let kept = run!("gc", dst, "--json").success().json();
    assert_eq!(num(&kept, "plans_deleted"), 0);
    assert!(plans.exists());
    assert_eq!(containers(&dst).len(), before);
    let gone = run!("gc", dst, "--keep", "0", "--json").success().json();
    assert_eq!(num(&gone, "plans_deleted"), 1, "{gone:#}");
    assert!(num(&gone, "containers_deleted") > 0, "{gone:#}");
    assert!(
        !plans.exists(),
        "the plans' directory is removed once empty"
    );
    assert!(!dst.join(".sheaf/staging").exists());
    run!("verify", dst).success();

    // A committed plan whose commit was stopped before it removed the plan.
    let again = plan(
        &more.display().to_string(),
        &dst_s,
        2,
        &["--append", "--prefix", "done"],
    );
    for k in 0..again.parts {
        part(&again.location, k);
    }
    let plan_dir = Path::new(&again.location).parent().unwrap().to_path_buf();
    let saved = tmp.path().join("saved-plan");
    copy_tree(&plan_dir, &saved);
    commit(&again.location).success();
    assert!(!plan_dir.exists());
    copy_tree(&saved, &plan_dir);
    let tidied = run!("gc", dst, "--json").success().json();
    assert_eq!(num(&tidied, "plans_deleted"), 1, "{tidied:#}");
    assert!(!plans.exists());
    run!("cat", dst, "a.txt").success().stdout_has("first");
    let listed = run!("ls", dst).success().lines();
    assert!(listed.contains(&"done".to_owned()), "{listed:?}");
    assert!(!listed.contains(&"given-up".to_owned()), "{listed:?}");
}
