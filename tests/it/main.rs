//! sheaf's integration tests, one binary: a user's day with the `sheaf` command and the library.
//!
//! - `roundtrip`: fold a real tree and get it back byte for byte (cat, unfold, ls, stat, library).
//! - `fold_behaviour`: new root and in place, determinism, compression, summaries, refusals.
//! - `resume`: interrupted folds are completed by running them again.
//! - `bad_input`: damaged containers and catalogs, hostile indexes, bad paths, changed files.
//! - `crash`: every writing command killed at random moments: all or nothing, re-runs complete.
//! - `hostile`: crafted, correctly sealed datasets against every reading command and the mount.
//! - `full_disk`: a fold into a full filesystem fails cleanly.
//! - `proptests`: random trees round-trip; damaged bytes never come back as data.
//! - `cache`: preload, the cache-aware reader, quota, pins, faults in the cache and at the origin.
//! - `mount`: `sheaf mount` really mounted: the original tree, read-only, faults, unmounts.
//! - `page_cache`: what reads leave in the page cache (datasets larger than memory).
//! - `conformance`: the same fold, read, publish and fault cases on local, S3 and HDFS stores.
//! - `hdfs_blocks`: writes across many HDFS blocks on a cluster that reports blocks late.
//! - `planned_fold`: a fold planned, folded by parts in any order and committed as one.
//! - `routes`: datasets on every store joined by a routes table: CLI, mount, changes, faults.
//! - `layers`: src/'s modules keep the layers ARCHITECTURE.md draws.

/// Runs the built binary with arguments of any path-like type: `run!("ls", dataset, "-l")`.
macro_rules! run {
    ($($arg:expr),* $(,)?) => {
        $crate::util::sheaf([$(std::ffi::OsStr::new(&$arg)),*])
    };
}

mod proxy;
mod util;

mod bad_input;
mod cache;
mod conformance;
mod crash;
mod fold_behaviour;
mod full_disk;
mod generations;
mod hdfs_blocks;
mod hostile;
mod layers;
mod mount;
mod page_cache;
mod planned_fold;
mod proptests;
mod resume;
mod roundtrip;
mod routes;
