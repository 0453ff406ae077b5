//! Helpers the benchmark programs share: a deterministic generator and the file list of a
//! corpus.

use std::path::{Path, PathBuf};

/// A small deterministic generator (xorshift64*).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every regular file under `root`, relative and sorted; names starting with `.` (a corpus's
/// completion stamp) are left out, as the benchmark scripts' `find` does.
pub fn list_files(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for child in std::fs::read_dir(root.join(&rel)).unwrap() {
            let child = child.unwrap();
            let path = rel.join(child.file_name());
            let kind = child.file_type().unwrap();
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && !child.file_name().to_string_lossy().starts_with('.') {
                out.push(path.to_str().unwrap().to_owned());
            }
        }
    }
    out.sort();
    out
}
