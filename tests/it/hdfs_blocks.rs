//! Writes onto HDFS that cross many block boundaries, on a MiniDFSCluster of its own whose
//! DataNode reports finished blocks late: the NameNode then refuses the next block of a file
//! until the report arrives (`NotReplicatedYetException`), the race a busy cluster loses now
//! and then. Every write must still succeed, and read back exactly.

use crate::util::*;
use sheaf::Dataset;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A MiniDFSCluster started for one test, stopped (and its data removed) when dropped.
struct Cluster {
    child: Child,
    url: String,
}

impl Cluster {
    /// A one-DataNode cluster with 1 MiB blocks whose DataNode holds back its reports of
    /// finished blocks for `delay_ms`.
    fn with_late_block_reports(dir: &Path, delay_ms: u64) -> Cluster {
        let args = std::env::var("SHEAF_TEST_MINIDFS_ARGS").unwrap_or_else(|_| {
            panic!(
                "SHEAF_TEST_MINIDFS_ARGS is not set: start the test servers with \
                 `bash scripts/servers.sh start` and `set -a; . target/test-servers.env; set +a` \
                 (or run `bash .ci/run`)"
            )
        });
        let ready = dir.join("ready");
        let child = Command::new("java")
            .arg("-Xmx384m")
            .arg("-XX:+UseSerialGC")
            .arg("-XX:TieredStopAtLevel=1")
            .arg("-Djava.net.preferIPv4Stack=true")
            .arg(format!("@{args}"))
            .arg("sheaf.testservers.MiniDfs")
            .args(["--port", "0", "--block-size", "1048576"])
            .arg("--block-report-delay-ms")
            .arg(delay_ms.to_string())
            .arg("--base-dir")
            .arg(dir.join("base"))
            .arg("--ready-file")
            .arg(&ready)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("minidfs.log")).unwrap())
            .spawn()
            .expect("start java");
        let mut cluster = Cluster {
            child,
            url: String::new(),
        };
        let started = Instant::now();
        loop {
            if let Ok(url) = std::fs::read_to_string(&ready) {
                if !url.trim().is_empty() {
                    cluster.url = url.trim().to_owned();
                    return cluster;
                }
            }
            if let Some(status) = cluster.child.try_wait().unwrap() {
                panic!(
                    "the MiniDFSCluster exited with {status}: {}",
                    std::fs::read_to_string(dir.join("minidfs.log")).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the MiniDFSCluster was not ready after 120 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

#[test]
fn writes_across_many_blocks_succeed_when_the_datanode_reports_blocks_late() {
    let tmp = tempdir();
    let cluster = Cluster::with_late_block_reports(tmp.path(), 300);

    // One object of 5.5 blocks, written in pieces that do not line up with blocks.
    let store = sheaf::store::open(format!("{}/objects", cluster.url)).unwrap();
    let bytes = Rng::new(3).bytes(5 * (1 << 20) + (1 << 19));
    let mut out = store.create("five-and-a-half-blocks").unwrap();
    for piece in bytes.chunks(700_001) {
        out.write_all(piece).unwrap();
    }
    out.finish().unwrap();
    assert!(store.read("five-and-a-half-blocks").unwrap() == bytes);
    // Exactly two blocks: the end of the file falls on a block boundary.
    let mut out = store.create("two-blocks").unwrap();
    out.write_all(&bytes[..2 << 20]).unwrap();
    out.finish().unwrap();
    assert!(store.read("two-blocks").unwrap() == bytes[..2 << 20]);

    // A fold whose containers and kept large files each span several blocks.
    let src = tmp.path().join("src");
    generate(&src, 200, 9);
    let tree = Tree::new(&src);
    let mut rng = Rng::new(4);
    for i in 0..60 {
        tree.file(format!("images/{i:03}.jpg"), &rng.bytes(100_000));
    }
    tree.file("large/a.bin", &rng.bytes(3 << 20));
    let expected = snapshot(&src, false);
    let ds = format!("{}/dataset", cluster.url);
    run!(
        "fold",
        src,
        ds,
        "--container-size",
        "3MiB",
        "--threshold",
        "1MiB"
    )
    .success();
    let dataset = Dataset::open_uri(&ds).unwrap();
    assert!(dataset
        .catalog()
        .rows()
        .iter()
        .any(|r| r.file_len > 2 << 20));
    let out = tmp.path().join("out");
    run!("unfold", ds, out).success();
    assert_same_tree(&expected, &snapshot(&out, false));

    // The NameNode did refuse blocks, and the writer took its files over again: each time, it
    // had the NameNode recover the file's lease.
    let log = std::fs::read_to_string(tmp.path().join("minidfs.log")).unwrap();
    assert!(
        log.contains("internalReleaseLease"),
        "no block was refused: the test did not test the race"
    );
}
