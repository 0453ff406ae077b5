//! Fuzzes the cache directory's own files: its version, configuration, dataset records and
//! catalogs, container names and the shared counters, read as readers and `sheaf cache` do.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

/// One scratch cache directory per fuzzing process, laid out afresh for every input.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        std::env::temp_dir().join(format!("sheaf-fuzz-cache-{}", std::process::id()))
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    sheaf::cache::open_untrusted(scratch(), data);
});
