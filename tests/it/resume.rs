//! Interrupted folds: running the same fold again completes it, reusing the containers that
//! were finished, and the result is the dataset an uninterrupted fold would have made.

use crate::util::*;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

/// Containers small enough that a few hundred files make many.
const SMALL: &[&str] = &["--container-size", "16KiB"];

/// A file larger than this cannot be written by a fold run under [`with_file_size_limit`].
const FILE_SIZE_LIMIT: u64 = 200 << 10;

/// Runs the command with RLIMIT_FSIZE set, SIGXFSZ ignored: any write past the limit fails
/// with EFBIG ("File too large") like a write to a full disk would fail with ENOSPC.
pub fn with_file_size_limit(limit: u64) -> impl FnOnce(&mut Command) {
    move |command| {
        // SAFETY: signal and setrlimit are async-signal-safe and touch only the child.
        unsafe {
            command.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let rlim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: limit,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &rlim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}

/// A tree whose last entry in path order is a large file the size-limited fold cannot copy,
/// so that fold fails after it has finished every container but the last.
fn tree_with_a_huge_last_file(root: &Path) {
    generate(root, 400, 17);
    Tree::new(root).file("zz-last/huge.bin", &Rng::new(1).bytes(300 << 10));
}

/// Folds with the file-size limit and checks the fold failed part-way: containers written, no
/// catalog. Returns the number of finished containers.
fn interrupted_fold(src: &Path, dst: &Path, extra: &[&str]) -> usize {
    let run = sheaf_with(
        fold_args(src, dst, extra),
        with_file_size_limit(FILE_SIZE_LIMIT),
    );
    let run = run.fails_with(1).stderr_has("File too large");
    assert!(run.stderr.contains("huge.bin"), "{}", run.stderr);
    assert!(!catalog(dst).exists(), "a failed fold must not publish");
    let finished = containers(dst).len();
    assert!(finished >= 3, "only {finished} containers were finished");
    assert!(dst.join(".sheaf/staging").is_dir());
    // Nothing is readable yet: the dataset is not published, and the message says how to
    // finish it.
    run!("ls", dst)
        .fails_with(1)
        .stderr_has("holds an unfinished fold: run the same `sheaf fold` again");
    finished
}

/// Every file under `.sheaf` of a dataset, by relative path; a generation file by its rows
/// (it also records when, and by which transaction, it was committed).
fn sheaf_files(root: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    snapshot(&root.join(".sheaf"), false)
        .into_iter()
        .filter_map(|(p, n)| match n.content {
            Content::File(bytes) if p.starts_with(b"generations/") => {
                let catalog = sheaf::format::Catalog::from_buffer(
                    arrow_buffer::Buffer::from_vec(bytes),
                    Path::new("generation"),
                )
                .unwrap();
                Some((p, format!("{:?}", catalog.rows()).into_bytes()))
            }
            Content::File(bytes) => Some((p, bytes)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_fold_that_failed_part_way_is_completed_by_running_it_again() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    tree_with_a_huge_last_file(&src);
    let before = snapshot(&src, false);
    let src_untouched = untouched_check(&src);
    let dst = tmp.path().join("dst");

    let finished = interrupted_fold(&src, &dst, SMALL);
    // A half-written container from a killed run waits in staging too.
    let staging = dst.join(".sheaf/staging");
    fs::write(
        staging.join("g000000-c00000002.partial"),
        b"half a container, cut off by a crash",
    )
    .unwrap();

    let s = fold(&src, &dst, SMALL).success().json();
    src_untouched();
    let total = num(&s, "containers") as usize;
    assert_eq!(
        num(&s, "containers_reused") as usize,
        finished,
        "every finished container is reused: {s:#}"
    );
    assert!(
        finished < total,
        "the last container was still to be written"
    );
    assert!(!staging.exists(), "staging is cleared once published");
    assert_eq!(containers(&dst).len(), total);

    run!("verify", dst).success();
    let out = tmp.path().join("out");
    run!("unfold", dst, out).success();
    assert_same_tree(&before, &snapshot(&out, false));

    // The resumed dataset is the one an uninterrupted fold makes, byte for byte.
    let fresh = tmp.path().join("fresh");
    fold(&src, &fresh, SMALL).success();
    assert!(sheaf_files(&dst) == sheaf_files(&fresh), "resumed != fresh");
}

#[test]
fn a_resumed_fold_after_the_source_changed_folds_the_new_source() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    tree_with_a_huge_last_file(&src);
    let dst = tmp.path().join("dst");
    let finished = interrupted_fold(&src, &dst, SMALL);

    // Between the runs the user edits one file and deletes a third of the tree.
    let t = Tree::new(&src);
    let snap = snapshot(&src, false);
    let first_file = snap
        .iter()
        .find(|(_, n)| matches!(&n.content, Content::File(b) if b.len() < 500))
        .map(|(p, _)| p.clone())
        .unwrap();
    t.file(&first_file, b"edited between the two runs");
    for (i, (path, node)) in snap.iter().enumerate() {
        if i % 3 == 1 && matches!(node.content, Content::File(_)) && path != &first_file {
            fs::remove_file(t.path(path)).unwrap();
        }
    }
    let before = snapshot(&src, false);

    let s = fold(&src, &dst, SMALL).success().json();
    assert!(
        (num(&s, "containers_reused") as usize) < finished,
        "containers holding changed entries are rewritten: {s:#}"
    );
    // No container of the first attempt is left behind unreferenced.
    assert_eq!(
        containers(&dst).len() as u64,
        num(&s, "containers"),
        "orphan containers left in .sheaf/containers"
    );
    run!("verify", dst).success();
    let edited = run!("cat", dst, bpath(&first_file)).success();
    assert_eq!(edited.stdout, b"edited between the two runs");
    let out = tmp.path().join("out");
    run!("unfold", dst, out).success();
    assert_same_tree(&before, &snapshot(&out, false));
}

#[test]
fn a_resumed_fold_with_other_settings_starts_over() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    tree_with_a_huge_last_file(&src);
    let before = snapshot(&src, false);
    let dst = tmp.path().join("dst");
    interrupted_fold(&src, &dst, SMALL);

    let s = fold(
        &src,
        &dst,
        &["--container-size", "16KiB", "--compress", "zstd"],
    )
    .success()
    .json();
    assert_eq!(num(&s, "containers_reused"), 0, "{s:#}");
    assert_eq!(containers(&dst).len() as u64, num(&s, "containers"));
    let stat = run!("stat", "--json", dst, "zz-last").success().json();
    assert_eq!(stat["kind"], "dir");
    run!("verify", dst).success();
    let out = tmp.path().join("out");
    run!("unfold", dst, out).success();
    assert_same_tree(&before, &snapshot(&out, false));
}

#[test]
fn a_dataset_whose_catalog_and_a_container_were_lost_is_rebuilt_identically() {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    generate(&src, 300, 4);
    let before = snapshot(&src, false);
    let dst = tmp.path().join("dst");
    fold(&src, &dst, SMALL).success();
    let original = sheaf_files(&dst);

    fs::remove_file(catalog(&dst)).unwrap();
    fs::remove_file(&containers(&dst)[1]).unwrap();
    run!("verify", dst)
        .fails_with(1)
        .stderr_has("is not a sheaf dataset");

    // Running the fold again is accepted (an unfinished fold) and completes it. The settings of
    // the first run are not recorded once it has published, so its containers are rewritten
    // rather than trusted; the result is the same bytes.
    let s = fold(&src, &dst, SMALL).success().json();
    assert_eq!(containers(&dst).len() as u64, num(&s, "containers"));
    assert!(sheaf_files(&dst) == original, "rebuilt dataset differs");
    run!("verify", dst).success();
    let out = tmp.path().join("out");
    run!("unfold", dst, out).success();
    assert_same_tree(&before, &snapshot(&out, false));
}
