//! A fold into a filesystem that fills up fails with a clear error, publishes nothing, leaves
//! the source alone, and completes once there is room.

use crate::resume::with_file_size_limit;
use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs, unmounted on drop (before the temp dir holding it goes).
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(at: &Path, size: &str) -> Result<Mount, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Mount(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount {} to {size}", self.0.display());
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn a_fold_into_a_full_disk_fails_cleanly_and_resumes_once_there_is_room() {
    let tmp = tempdir();
    // About 3 MiB in 500 files, all folded (below an 8 KiB threshold): more than the disk holds.
    let src = tmp.path().join("src");
    let t = Tree::new(&src);
    let mut rng = Rng::new(77);
    for i in 0..500 {
        t.file(format!("shard-{}/{i:03}.bin", i % 7), &rng.bytes(6000));
    }
    const SETTINGS: &[&str] = &["--threshold", "8KiB"];
    let before = snapshot(&src, false);
    let src_untouched = untouched_check(&src);
    let disk = tmp.path().join("small-disk");
    std::fs::create_dir(&disk).unwrap();

    let mount = match Mount::tmpfs(&disk, "2m") {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!(
                "NOTE: cannot mount a 2 MiB tmpfs here ({why}); testing a write that fails \
                 part-way with RLIMIT_FSIZE (EFBIG) instead of a real ENOSPC"
            );
            let dst = tmp.path().join("dst");
            let args = fold_args(&src, &dst, SETTINGS);
            sheaf_with(args, with_file_size_limit(16 << 10))
                .fails_with(1)
                .stderr_has("fold failed")
                .stderr_has("File too large");
            assert!(!catalog(&dst).exists());
            src_untouched();
            return;
        }
    };
    let dst = disk.join("dataset");
    let run = fold(&src, &dst, SETTINGS)
        .fails_with(1)
        .no_stdout()
        .stderr_has("fold failed")
        .stderr_has("No space left on device");
    assert!(
        run.stderr.contains(disk.to_str().unwrap()),
        "the error names the file it could not write: {}",
        run.stderr
    );
    assert!(!catalog(&dst).exists(), "nothing may be published");
    run!("ls", dst)
        .fails_with(1)
        .stderr_has("holds an unfinished fold");
    src_untouched();
    let finished = containers(&dst).len();
    assert!(
        finished > 0,
        "some containers were finished before the disk filled"
    );

    // The user frees space and runs the same command again.
    mount.resize("64m");
    let s = fold(&src, &dst, SETTINGS).success().json();
    assert!(num(&s, "containers_reused") > 0, "{s:#}");
    src_untouched();
    run!("verify", dst).success();
    let out = tmp.path().join("out");
    run!("unfold", dst, out).success();
    assert_same_tree(&before, &snapshot(&out, false));
    drop(mount);
}
