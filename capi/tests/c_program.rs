//! Compiles the C test program against include/sheaf.h and the built library, and runs it on
//! a freshly folded tree.

use sheaf::fold::{fold, FoldOptions, Target};
use sheaf::progress::Silent;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The tree the C program expects (see the comment atop tests/c/reader_test.c).
fn make_tree(src: &Path) {
    fs::create_dir_all(src.join("dir")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("hello.txt"), b"hello, sheaf\n").unwrap();
    let pattern: Vec<u8> = (0..1000).map(|i| (i % 251) as u8).collect();
    fs::write(src.join("dir/a.bin"), pattern).unwrap();
    symlink("a.bin", src.join("dir/link")).unwrap();
    fs::write(src.join("dir/zero"), b"").unwrap();
    fs::write(src.join("big.bin"), vec![b'x'; 300_000]).unwrap();
}

/// The directory holding libsheaf_capi.so: `cargo test` leaves it next to the test binary in
/// deps/; `cargo build` also copies it one level up.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap().to_path_buf();
    let candidates = [deps.clone(), deps.parent().unwrap().to_path_buf()];
    candidates
        .into_iter()
        .find(|dir| dir.join("libsheaf_capi.so").exists())
        .unwrap_or_else(|| {
            panic!(
                "libsheaf_capi.so is in neither {} nor its parent",
                deps.display()
            )
        })
}

#[test]
fn the_c_test_program_passes() {
    let work = tempfile::tempdir().unwrap();
    let (src, dst) = (work.path().join("src"), work.path().join("dst"));
    make_tree(&src);
    let options = FoldOptions {
        threshold: 4096,
        ..FoldOptions::default()
    };
    let target = Target::NewRoot {
        src: src.clone(),
        dst: dst.clone(),
    };
    fold(&target, &options, &Silent).expect("fold the test tree");

    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let libs = library_dir();
    let program = work.path().join("reader_test");
    let compiled = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(&program)
        .arg(crate_dir.join("tests/c/reader_test.c"))
        .arg(format!("-I{}", crate_dir.join("../include").display()))
        .arg(format!("-L{}", libs.display()))
        .arg(format!("-Wl,-rpath,{}", libs.display()))
        .arg("-lsheaf_capi")
        .status()
        .expect("run the C compiler");
    assert!(compiled.success(), "the C test program does not compile");

    // cargo's LD_LIBRARY_PATH would win over the rpath and may list a directory holding an
    // older build of the library first.
    let run = Command::new(&program)
        .arg(&dst)
        .env("LD_LIBRARY_PATH", &libs)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success() && stdout.contains("all C ABI checks passed"),
        "the C test program failed:\n{stdout}\n{stderr}"
    );
}
