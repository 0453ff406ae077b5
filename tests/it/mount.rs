//! `sheaf mount`: really mounted through FUSE (fuse3 from the test set-up, /dev/fuse, root):
//! the original tree byte for byte, read-only, concurrent readers, a cache damaged under a live
//! mount, clean unmounts, refusals, metrics, and datasets on the S3 and HDFS servers.

use crate::conformance::{backends, fresh_location};
use crate::util::*;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn require_fuse() {
    if std::env::var_os("SHEAF_TEST_NO_FUSE").is_some() {
        return;
    }
    assert!(
        Path::new("/dev/fuse").exists() && running_as_root(),
        "the mount tests need /dev/fuse and root (set SHEAF_TEST_NO_FUSE=1 to skip them, and \
         say so): run `bash .ci/run`, which installs fuse3"
    );
}

pub(crate) fn fuse_skipped() -> bool {
    require_fuse();
    if std::env::var_os("SHEAF_TEST_NO_FUSE").is_some() {
        eprintln!("NOTE: SHEAF_TEST_NO_FUSE is set: this mount test did not run");
        return true;
    }
    false
}

pub(crate) fn is_mounted(mountpoint: &Path) -> bool {
    let wanted = mountpoint
        .canonicalize()
        .unwrap_or(mountpoint.to_path_buf());
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(wanted.to_str().unwrap()))
}

pub(crate) fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A foreground mount in a child process; unmounted with SIGTERM when dropped.
pub(crate) struct Mount {
    child: Option<Child>,
    point: PathBuf,
}

impl Mount {
    fn start(dataset: &str, point: &Path, extra: &[&str]) -> Mount {
        let mut args = vec![dataset, point.to_str().unwrap(), "-f"];
        args.extend(extra);
        Mount::start_with(&args, point, &[])
    }

    /// `sheaf mount ARGS` in the foreground with `env` set; returns once `point` is mounted.
    pub(crate) fn start_with(args: &[&str], point: &Path, env: &[(&str, String)]) -> Mount {
        fs::create_dir_all(point).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sheaf"))
            .arg("mount")
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut mount = Mount {
            child: Some(child),
            point: point.to_path_buf(),
        };
        let started = Instant::now();
        while !is_mounted(point) {
            if let Some(status) = mount.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sheaf mount exited with {status} before mounting");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "mount never came up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        mount
    }

    /// Sends SIGHUP: the mount looks for a new generation (or routes table) now.
    pub(crate) fn hang_up(&self) {
        let child = self.child.as_ref().unwrap();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    }

    /// Sends SIGTERM and checks the mount went away cleanly.
    pub(crate) fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "sheaf mount ended with {status}");
        assert!(!is_mounted(&self.point), "still mounted after SIGTERM");
        assert_eq!(fs::read_dir(&self.point).unwrap().count(), 0);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.point)
                .status();
        }
    }
}

/// A real tree: folded files, large kept files, symlinks, an empty directory, odd modes.
fn tree(root: &Path, files: usize) -> Snapshot {
    generate(root, files, 21);
    let t = Tree::new(root);
    t.dir("empty/dir");
    t.symlink("link-to-first", "l0-00");
    t.symlink("dangling", "no/such/file");
    t.file("exec.sh", b"#!/bin/sh\necho hi\n");
    t.chmod("exec.sh", 0o755);
    snapshot(root, false)
}

#[test]
fn a_mount_keeps_no_second_copy_of_what_it_serves_in_the_page_cache() {
    use crate::page_cache::*;
    if fuse_skipped() {
        return;
    }
    let dir = disk_tempdir();
    let (ds, container, data_len, contents) = folded_tree(dir.path());
    evict(&container);
    // A dataset this small fits in memory, where the mount would keep both copies: `exact`
    // reads it as one larger than memory.
    let mount = Mount::start(
        ds.to_str().unwrap(),
        &dir.path().join("mnt"),
        &["--access", "exact"],
    );
    let mut order: Vec<usize> = (0..FILES).collect();
    let mut rng = Rng::new(5);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    for i in order {
        let served = fs::read(mount.point.join(file_name(i))).unwrap();
        assert_eq!(served, contents[i], "{}", file_name(i));
    }
    // The kernel holds the served files' pages; the container's pages those reads brought in
    // are gone again (a mount that kept them would hold all of them: the dataset twice).
    let resident = resident_pages(&container, 0..data_len);
    assert!(
        resident <= FILES,
        "{resident} of the container's {} data pages are still in memory",
        data_len / 4096
    );
    mount.stop();
}

#[test]
fn a_mount_is_the_original_tree_read_only_and_goes_away_on_sigterm() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let expected = tree(&src, 3000);
    let ds = tmp.path().join("ds");
    fold(&src, &ds, &[]).success();
    let point = tmp.path().join("mnt");
    let mount = Mount::start(ds.to_str().unwrap(), &point, &[]);
    assert_same_tree(&expected, &snapshot(&point, false));
    // The root too: its mode and time are the folded root's, not a placeholder's.
    let (src_root, mounted_root) = (fs::metadata(&src).unwrap(), fs::metadata(&point).unwrap());
    assert_eq!(src_root.mode(), mounted_root.mode());
    assert_eq!(
        (src_root.mtime(), src_root.mtime_nsec()),
        (mounted_root.mtime(), mounted_root.mtime_nsec())
    );
    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&src)
        .arg(&point)
        .output()
        .unwrap();
    assert!(
        diff.status.success(),
        "diff -r found differences:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    let erofs = |what: &str, result: std::io::Result<()>| {
        let e = result.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{what}: {e}");
    };
    erofs("create", fs::write(point.join("new-file"), b"x"));
    erofs("mkdir", fs::create_dir(point.join("new-dir")));
    erofs("unlink", fs::remove_file(point.join("exec.sh")));
    erofs("rmdir", fs::remove_dir(point.join("empty/dir")));
    erofs(
        "rename",
        fs::rename(point.join("exec.sh"), point.join("x.sh")),
    );
    erofs(
        "chmod",
        fs::set_permissions(
            point.join("exec.sh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        ),
    );
    erofs(
        "open for writing",
        fs::OpenOptions::new()
            .append(true)
            .open(point.join("exec.sh"))
            .map(|_| ()),
    );
    assert_eq!(
        fs::metadata(point.join("no-such-file")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    // Run as root, the mount asks the kernel to read a file of up to 4 MiB in one go.
    let read_ahead = sheaf::fs::read_ahead_setting(&point).unwrap();
    wait_until("the mount raises its read-ahead", || {
        fs::read_to_string(&read_ahead).is_ok_and(|kib| kib.trim() == "4096")
    });
    mount.stop();
    assert_same_tree(&expected, &snapshot(&src, false));
}

#[test]
fn many_threads_and_processes_reading_random_files_all_get_the_right_bytes() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let expected = tree(&src, 2000);
    let ds = tmp.path().join("ds");
    fold(&src, &ds, &[]).success();
    let point = tmp.path().join("mnt");
    let mount = Mount::start(ds.to_str().unwrap(), &point, &["--threads", "4"]);
    let files: Vec<(Vec<u8>, Vec<u8>)> = expected
        .iter()
        .filter_map(|(path, node)| match &node.content {
            Content::File(bytes) => Some((path.clone(), bytes.clone())),
            _ => None,
        })
        .collect();
    let processes: Vec<Child> = ["l0-00", "l0-01", "l0-02"]
        .iter()
        .filter(|dir| src.join(dir).is_dir())
        .map(|dir| {
            Command::new("diff")
                .arg("-r")
                .arg(src.join(dir))
                .arg(point.join(dir))
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::scope(|scope| {
        for seed in 0..8u64 {
            let (files, point) = (&files, &point);
            scope.spawn(move || {
                let mut rng = Rng::new(seed + 100);
                for _ in 0..400 {
                    let (path, bytes) = &files[rng.below(files.len() as u64) as usize];
                    let read = fs::read(point.join(bpath(path))).unwrap();
                    assert!(read == *bytes, "{}", String::from_utf8_lossy(path));
                }
            });
        }
    });
    for mut process in processes {
        assert!(
            process.wait().unwrap().success(),
            "a diff process saw a difference"
        );
    }
    mount.stop();
}

#[test]
fn an_external_file_read_in_any_order_through_the_mount_is_checked() {
    use std::os::unix::fs::FileExt;
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let content = Rng::new(23).bytes(3_000_017);
    Tree::new(&src).file("clip.bin", &content);
    let ds = tmp.path().join("ds");
    fold(&src, &ds, &["--threshold", "64KiB"]).success();

    // Four threads at random offsets and lengths, all at once: every byte right.
    let point = tmp.path().join("mnt");
    let mount = Mount::start(ds.to_str().unwrap(), &point, &["--threads", "4"]);
    std::thread::scope(|scope| {
        for seed in 0..4u64 {
            let (content, point) = (&content, &point);
            scope.spawn(move || {
                let file = fs::File::open(point.join("clip.bin")).unwrap();
                let mut rng = Rng::new(seed);
                for _ in 0..100 {
                    let start = rng.below(content.len() as u64) as usize;
                    let len = (rng.below(300_000) as usize).min(content.len() - start);
                    let mut got = vec![0; len];
                    file.read_exact_at(&mut got, start as u64).unwrap();
                    assert!(got == content[start..start + len], "at {start}+{len}");
                }
            });
        }
    });
    mount.stop();

    // One byte changed in the block at 1,966,080: a read there fails, reads elsewhere serve.
    let mut edited = content.clone();
    edited[2_000_000] ^= 0x40;
    fs::write(ds.join("clip.bin"), &edited).unwrap();
    let point = tmp.path().join("mnt-damaged");
    let mount = Mount::start(ds.to_str().unwrap(), &point, &[]);
    let file = fs::File::open(point.join("clip.bin")).unwrap();
    let mut got = vec![0; 4096];
    file.read_exact_at(&mut got, 2_000_000).unwrap_err();
    file.read_exact_at(&mut got, 0).unwrap();
    assert!(got == content[..4096]);
    file.read_exact_at(&mut got, 2_900_000).unwrap();
    assert!(got == content[2_900_000..2_904_096]);
    let whole = fs::read(point.join("clip.bin")).unwrap_err();
    assert_eq!(whole.raw_os_error(), Some(libc::EIO), "{whole}");
    drop(file);
    mount.stop();
}

#[test]
fn a_cached_container_damaged_under_a_live_mount_is_read_from_the_origin() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let expected = tree(&src, 600);
    let ds = tmp.path().join("ds");
    fold(&src, &ds, &["--container-size", "16KiB"]).success();
    let cache = tmp.path().join("cache");
    run!("preload", ds, "--cache", cache).success();
    let point = tmp.path().join("mnt");
    let metrics_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let metrics = format!("127.0.0.1:{metrics_port}");
    let mount = Mount::start(
        ds.to_str().unwrap(),
        &point,
        &["--cache", cache.to_str().unwrap(), "--metrics", &metrics],
    );
    // Damage every cached container before the mount reads anything from it.
    let cached: Vec<PathBuf> = fs::read_dir(cache.join("containers"))
        .unwrap()
        .map(|c| c.unwrap().path())
        .collect();
    assert!(cached.len() > 2);
    for (i, file) in cached.iter().enumerate() {
        if i % 2 == 0 {
            let len = fs::metadata(file).unwrap().len();
            fs::OpenOptions::new()
                .write(true)
                .open(file)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
        } else {
            flip_bit(file, 100, 1);
        }
    }
    assert_same_tree(&expected, &snapshot(&point, false));
    let mut stream = std::net::TcpStream::connect(&metrics).unwrap();
    stream.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    assert!(page.contains("sheaf_fallbacks_total"), "{page}");
    let fallbacks: u64 = page
        .lines()
        .find_map(|l| l.strip_prefix("sheaf_fallbacks_total "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(fallbacks > 0, "{page}");
    assert!(fs::read_dir(cache.join("quarantine")).unwrap().count() > 0);
    mount.stop();
}

#[test]
fn a_detached_mount_returns_once_ready_and_bad_requests_are_refused_clearly() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let expected = tree(&src, 200);
    let ds = tmp.path().join("ds");
    fold(&src, &ds, &[]).success();
    let point = tmp.path().join("mnt");
    fs::create_dir(&point).unwrap();
    run!("mount", ds, point).success();
    assert!(is_mounted(&point), "mounted when the command returned");
    assert_same_tree(&expected, &snapshot(&point, false));
    run!("mount", ds, point).fails_with(1).stderr_has("busy");
    let status = Command::new("fusermount3")
        .arg("-u")
        .arg(&point)
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("the mount is gone", || !is_mounted(&point));

    run!("mount", ds, tmp.path().join("missing"))
        .fails_with(1)
        .stderr_has("missing");
    let full = tmp.path().join("full");
    Tree::new(&full).file("x", b"x");
    run!("mount", ds, full)
        .fails_with(1)
        .stderr_has("not empty");
    run!("mount", tmp.path().join("no-dataset"), point)
        .fails_with(1)
        .stderr_has("not a sheaf dataset");
    assert!(!is_mounted(&point));
}

#[test]
fn datasets_on_the_s3_and_hdfs_servers_mount_with_and_without_a_cache() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let src = tmp.path().join("src");
    let expected = tree(&src, 300);
    for backend in backends().into_iter().filter(|b| b.base.is_some()) {
        let uri = fresh_location(&backend, tmp.path(), "mounted");
        fold(&src, Path::new(&uri), &[]).success();
        let point = tmp.path().join(format!("mnt-{}", backend.name));
        let mount = Mount::start(&uri, &point, &[]);
        assert_same_tree(&expected, &snapshot(&point, false));
        mount.stop();
        let cache = tmp.path().join(format!("cache-{}", backend.name));
        run!("preload", uri, "--cache", cache).success();
        let mount = Mount::start(&uri, &point, &["--cache", cache.to_str().unwrap()]);
        assert_same_tree(&expected, &snapshot(&point, false));
        mount.stop();
        let stats = run!("cache", "stats", "--cache", cache, "--json")
            .success()
            .json();
        assert!(num(&stats, "hits") > 0, "{}: {stats:#}", backend.name);
        assert_eq!(
            num(&stats, "origin_reads"),
            0,
            "{}: {stats:#}",
            backend.name
        );
    }
}

#[test]
fn a_mount_follows_new_generations_on_sighup_and_open_files_keep_their_bytes() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let first = Tree::new(tmp.path().join("first"));
    first.file("keep.txt", b"kept");
    first.file("gone/old.txt", b"to be removed");
    first.file("changed.txt", b"version one");
    let ds = tmp.path().join("ds");
    fold(&first.root, &ds, &[]).success();
    let point = tmp.path().join("mnt");
    let mount = Mount::start(ds.to_str().unwrap(), &point, &[]);
    // The kernel holds these names, attributes and pages before the dataset changes.
    assert_eq!(fs::read(point.join("changed.txt")).unwrap(), b"version one");
    assert!(point.join("gone/old.txt").exists());
    let mut held = fs::File::open(point.join("changed.txt")).unwrap();

    let second = Tree::new(tmp.path().join("second"));
    second.file("changed.txt", b"version two, longer");
    second.file("new/added.txt", b"appended");
    sheaf(fold_args(&second.root, &ds, &["--append"])).success();
    run!("rm", ds, "-r", "gone").success();
    // Not followed until asked: the mount still serves generation 0.
    assert!(!point.join("new/added.txt").exists());
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(mount.child.as_ref().unwrap().id() as i32, libc::SIGHUP) };
    wait_until("the appended file appears", || {
        point.join("new/added.txt").exists()
    });
    wait_until("the removed directory disappears", || {
        !point.join("gone").exists()
    });
    assert_eq!(fs::read(point.join("new/added.txt")).unwrap(), b"appended");
    assert_eq!(
        fs::read(point.join("changed.txt")).unwrap(),
        b"version two, longer"
    );
    assert_eq!(fs::read(point.join("keep.txt")).unwrap(), b"kept");
    let names: Vec<String> = fs::read_dir(&point)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(names, ["changed.txt", "keep.txt", "new"]);
    let mut old = Vec::new();
    held.read_to_end(&mut old).unwrap();
    assert_eq!(
        old, b"version one",
        "a file open before the refresh keeps its bytes"
    );
    drop(held);

    // A compaction rewrites every container; the tree served stays the same.
    run!("compact", ds).success();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(mount.child.as_ref().unwrap().id() as i32, libc::SIGHUP) };
    let compacted = || {
        sheaf::Dataset::open(&ds).unwrap().generation() == 3
            && fs::read(point.join("changed.txt")).is_ok_and(|b| b == b"version two, longer")
    };
    wait_until("the compacted generation is served", compacted);
    assert_eq!(fs::read(point.join("keep.txt")).unwrap(), b"kept");
    mount.stop();
}

#[test]
fn a_mount_with_refresh_picks_up_a_new_generation_by_itself() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let first = Tree::new(tmp.path().join("first"));
    first.file("a.txt", b"a");
    let ds = tmp.path().join("ds");
    fold(&first.root, &ds, &[]).success();
    let point = tmp.path().join("mnt");
    let mount = Mount::start(ds.to_str().unwrap(), &point, &["--refresh", "1s"]);
    assert!(point.join("a.txt").exists());
    let second = Tree::new(tmp.path().join("second"));
    second.file("b.txt", b"b");
    sheaf(fold_args(&second.root, &ds, &["--append"])).success();
    wait_until("b.txt appears without a signal", || {
        point.join("b.txt").exists()
    });
    assert_eq!(fs::read(point.join("b.txt")).unwrap(), b"b");
    mount.stop();
}
