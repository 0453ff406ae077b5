//! Shared helpers: a tree builder, a deterministic tree generator, a runner for the built
//! `sheaf` binary, tree snapshots with a comparison that names every difference, and byte
//! surgery on container files.

use filetime::FileTime;
use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Small fold settings used throughout: trees stay small but still make many containers and
/// external files.
pub const THRESHOLD: &str = "1KiB";
pub const THRESHOLD_BYTES: usize = 1024;
pub const CONTAINER_SIZE: &str = "64KiB";

/// A fresh temporary directory, removed on drop even when tests made parts of it read-only.
pub fn tempdir() -> Scratch {
    Scratch(Some(
        tempfile::Builder::new()
            .prefix("sheaf-it-")
            .tempdir()
            .expect("create temp dir"),
    ))
}

/// A temporary directory; see [`tempdir`].
pub struct Scratch(Option<tempfile::TempDir>);

impl Scratch {
    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("not dropped").path()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // A non-root user cannot delete inside a 0555 directory: open every directory up first.
        fn open_up(dir: &Path) {
            let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
            for child in fs::read_dir(dir).into_iter().flatten().flatten() {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    open_up(&child.path());
                }
            }
        }
        if let Some(dir) = self.0.take() {
            open_up(dir.path());
            let _ = dir.close();
        }
    }
}

/// Turns raw bytes into a path (names need not be UTF-8).
pub fn bpath(bytes: impl AsRef<[u8]>) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes.as_ref()))
}

/// Builds a directory tree for a test.
pub struct Tree {
    pub root: PathBuf,
}

impl Tree {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        fs::create_dir_all(&root).expect("create tree root");
        Tree { root }
    }

    pub fn path(&self, rel: impl AsRef<[u8]>) -> PathBuf {
        self.root.join(bpath(rel))
    }

    /// Writes a file, creating its parent directories.
    pub fn file(&self, rel: impl AsRef<[u8]>, content: &[u8]) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        fs::write(&path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    pub fn dir(&self, rel: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        fs::create_dir_all(&path).expect("create dir");
        path
    }

    pub fn symlink(&self, rel: impl AsRef<[u8]>, target: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("create parent");
        }
        std::os::unix::fs::symlink(bpath(target), &path).expect("create symlink");
        path
    }

    pub fn chmod(&self, rel: impl AsRef<[u8]>, mode: u32) {
        let path = self.path(rel);
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    }

    /// Sets the mtime (and atime) of an entry without following a final symlink.
    pub fn mtime(&self, rel: impl AsRef<[u8]>, secs: i64, nanos: u32) {
        let path = self.path(rel);
        let t = FileTime::from_unix_time(secs, nanos);
        filetime::set_symlink_file_times(&path, t, t).expect("set mtime");
    }
}

/// A tiny deterministic PRNG (xorshift64*), so generated trees are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// Content of a given length: text-like (compressible) or random, chosen by the rng.
pub fn content(rng: &mut Rng, len: usize) -> Vec<u8> {
    if rng.below(2) == 0 {
        let line = format!("record {} of a very repetitive log file\n", rng.below(1000));
        line.bytes().cycle().take(len).collect()
    } else {
        rng.bytes(len)
    }
}

/// Generates `count` files nested up to three levels below `root`, mostly below
/// [`THRESHOLD_BYTES`], some at or above it. Returns the relative paths of the files.
pub fn generate(root: &Path, count: usize, seed: u64) -> Vec<Vec<u8>> {
    let tree = Tree::new(root);
    let mut rng = Rng::new(seed);
    let mut paths = Vec::with_capacity(count);
    for i in 0..count {
        let depth = rng.below(4);
        let mut rel = String::new();
        for level in 0..depth {
            let fanout = [8, 5, 3][level as usize];
            rel.push_str(&format!("l{level}-{:02}/", rng.below(fanout)));
        }
        rel.push_str(&format!("f{i:05}.{}", ["txt", "json", "bin", "jpg"][i % 4]));
        let len = match rng.below(100) {
            0..=84 => rng.below(900) as usize,
            85..=89 => THRESHOLD_BYTES - 2 + rng.below(4) as usize,
            _ => THRESHOLD_BYTES + rng.below(3000) as usize,
        };
        let bytes = content(&mut rng, len);
        tree.file(&rel, &bytes);
        paths.push(rel.into_bytes());
    }
    paths
}

/// The output of one run of the binary.
pub struct Run {
    pub args: Vec<OsString>,
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "`sheaf {}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" "),
            self.code,
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(4000)]),
            self.stderr
        )
    }

    /// Asserts the command succeeded.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, Some(0), "{}", self.describe());
        self
    }

    /// Asserts the command failed with exactly this exit code.
    #[track_caller]
    pub fn fails_with(self, code: i32) -> Self {
        assert_eq!(self.code, Some(code), "{}", self.describe());
        self
    }

    /// Asserts standard error mentions `needle` (case-sensitive).
    #[track_caller]
    pub fn stderr_has(self, needle: &str) -> Self {
        assert!(
            self.stderr.contains(needle),
            "expected {needle:?} on stderr\n{}",
            self.describe()
        );
        self
    }

    /// Asserts standard output mentions `needle`.
    #[track_caller]
    pub fn stdout_has(self, needle: &str) -> Self {
        assert!(
            String::from_utf8_lossy(&self.stdout).contains(needle),
            "expected {needle:?} on stdout\n{}",
            self.describe()
        );
        self
    }

    /// Asserts nothing at all was written to standard output.
    #[track_caller]
    pub fn no_stdout(self) -> Self {
        assert!(
            self.stdout.is_empty(),
            "expected no stdout\n{}",
            self.describe()
        );
        self
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    pub fn lines(&self) -> Vec<String> {
        self.stdout_str().lines().map(str::to_owned).collect()
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", self.describe()))
    }
}

/// Runs the built `sheaf` binary with `args`.
pub fn sheaf<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    sheaf_with(args, |_| {})
}

/// Runs the built `sheaf` binary with `args`, letting the caller adjust the command first.
pub fn sheaf_with<I, S>(args: I, adjust: impl FnOnce(&mut Command)) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut command = Command::new(env!("CARGO_BIN_EXE_sheaf"));
    command
        .args(&args)
        .stdin(Stdio::null())
        .env("RUST_BACKTRACE", "0");
    adjust(&mut command);
    let out = command.output().expect("run sheaf");
    Run::of(args, out)
}

impl Run {
    fn of(args: Vec<OsString>, out: std::process::Output) -> Run {
        Run {
            args,
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
}

/// Runs the built `sheaf` binary with `args` and fails the test if it has not finished within
/// `limit` (killing it): for inputs that must be refused, never waited on.
pub fn sheaf_within<I, S>(args: I, limit: std::time::Duration) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "0")
        .spawn()
        .expect("run sheaf");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait for sheaf").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`sheaf {args:?}` still running after {limit:?}: it blocked");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("collect sheaf's output");
    Run::of(args, out)
}

/// `sheaf fold SRC DST --json` plus `extra` flags, with the small test threshold and container
/// size unless `extra` sets them.
pub fn fold(src: &Path, dst: &Path, extra: &[&str]) -> Run {
    sheaf(fold_args(src, dst, extra))
}

/// The arguments [`fold`] runs with.
pub fn fold_args(src: &Path, dst: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["fold".into(), src.into(), dst.into(), "--json".into()];
    for (flag, default) in [
        ("--threshold", THRESHOLD),
        ("--container-size", CONTAINER_SIZE),
    ] {
        if !extra.contains(&flag) {
            args.extend([flag.into(), default.into()]);
        }
    }
    args.extend(extra.iter().map(OsString::from));
    args
}

/// A JSON number field as u64, failing clearly when absent.
#[track_caller]
pub fn num(value: &serde_json::Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no numeric field {field:?} in {value:#}"))
}

/// What one tree entry is, as compared by [`assert_same_tree`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    File(Vec<u8>),
    Dir,
    Symlink(Vec<u8>),
    /// FIFO, socket, device: compared by kind only.
    Special,
}

/// One entry of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub content: Content,
    /// `st_mode & 0o7777`.
    pub mode: u32,
    pub mtime_ns: i64,
}

/// Every entry below a root (the root itself excluded), by relative path bytes.
pub type Snapshot = BTreeMap<Vec<u8>, Node>;

/// Snapshots the tree below `root`; a top-level `.sheaf` is left out when `skip_sheaf`.
pub fn snapshot(root: &Path, skip_sheaf: bool) -> Snapshot {
    let mut out = Snapshot::new();
    walk(root, &[], skip_sheaf, &mut |rel, path, meta| {
        let ty = meta.file_type();
        let content = if ty.is_dir() {
            Content::Dir
        } else if ty.is_symlink() {
            Content::Symlink(
                fs::read_link(path)
                    .expect("readlink")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
        } else if ty.is_file() {
            Content::File(fs::read(path).unwrap_or_else(|e| panic!("read {path:?}: {e}")))
        } else {
            Content::Special
        };
        out.insert(
            rel.to_vec(),
            Node {
                content,
                mode: meta.mode() & 0o7777,
                mtime_ns: mtime_ns(meta),
            },
        );
    });
    out
}

/// Identity stamps (inode, ctime, size) of every entry: equal stamps before and after an
/// operation mean it wrote, renamed, chmod-ed or replaced nothing.
pub fn stamps(root: &Path) -> BTreeMap<Vec<u8>, (u64, i64, u64)> {
    let mut out = BTreeMap::new();
    walk(root, &[], false, &mut |rel, _, meta| {
        out.insert(
            rel.to_vec(),
            (
                meta.ino(),
                meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
                meta.len(),
            ),
        );
    });
    out
}

/// A snapshot plus stamps: taken before and after to prove a tree was not touched.
pub fn untouched_check(root: &Path) -> impl Fn() {
    let before = (snapshot(root, false), stamps(root));
    let root = root.to_path_buf();
    move || {
        assert_same_tree(&before.0, &snapshot(&root, false));
        assert_eq!(
            before.1,
            stamps(&root),
            "{} was modified (inode, ctime or size changed)",
            root.display()
        );
    }
}

fn walk(
    dir: &Path,
    rel: &[u8],
    skip_sheaf: bool,
    visit: &mut dyn FnMut(&[u8], &Path, &fs::Metadata),
) {
    let mut children: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|c| c.expect("dir entry"))
        .collect();
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let name = child.file_name();
        if skip_sheaf && rel.is_empty() && name == ".sheaf" {
            continue;
        }
        let mut child_rel = rel.to_vec();
        if !child_rel.is_empty() {
            child_rel.push(b'/');
        }
        child_rel.extend_from_slice(name.as_bytes());
        let path = child.path();
        let meta = fs::symlink_metadata(&path).expect("lstat");
        visit(&child_rel, &path, &meta);
        if meta.is_dir() {
            walk(&path, &child_rel, false, visit);
        }
    }
}

pub fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime() * 1_000_000_000 + meta.mtime_nsec()
}

fn show(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

fn describe_node(node: &Node) -> String {
    let what = match &node.content {
        Content::File(bytes) => format!("file of {} bytes", bytes.len()),
        Content::Dir => "directory".into(),
        Content::Symlink(target) => format!("symlink -> {}", show(target)),
        Content::Special => "special file".into(),
    };
    format!("{what}, mode {:04o}, mtime {} ns", node.mode, node.mtime_ns)
}

/// Asserts two snapshots are equal, listing every difference (up to 20) when not.
#[track_caller]
pub fn assert_same_tree(expected: &Snapshot, actual: &Snapshot) {
    let mut problems = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => problems.push(format!(
                "missing {:?} ({})",
                show(path),
                describe_node(want)
            )),
            Some(got) if got != want => {
                let content = match (&want.content, &got.content) {
                    (Content::File(a), Content::File(b)) if a != b => {
                        let at = a.iter().zip(b).position(|(x, y)| x != y);
                        format!(
                            "; contents differ (lengths {} and {}, first difference at {at:?})",
                            a.len(),
                            b.len()
                        )
                    }
                    _ => String::new(),
                };
                problems.push(format!(
                    "{:?}: expected {}, found {}{content}",
                    show(path),
                    describe_node(want),
                    describe_node(got)
                ))
            }
            Some(_) => {}
        }
    }
    for (path, got) in actual {
        if !expected.contains_key(path) {
            problems.push(format!(
                "unexpected {:?} ({})",
                show(path),
                describe_node(got)
            ));
        }
    }
    if !problems.is_empty() {
        let count = problems.len();
        problems.truncate(20);
        panic!(
            "trees differ in {count} places:\n  {}",
            problems.join("\n  ")
        );
    }
}

/// The container files of a dataset, sorted by name.
pub fn containers(root: &Path) -> Vec<PathBuf> {
    let dir = root.join(".sheaf/containers");
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|c| c.expect("dir entry").path())
        .collect();
    files.sort();
    files
}

/// The file of a dataset's first generation (its catalog when nothing was added since).
pub fn catalog(root: &Path) -> PathBuf {
    root.join(sheaf::layout::generation_key(0))
}

/// Fields of a 64-byte footer at the end of `bytes`.
pub struct FooterFields {
    pub index_offset: u64,
    pub index_len: u64,
    pub data_len: u64,
    pub version: u16,
}

pub fn footer_of(bytes: &[u8]) -> FooterFields {
    let f = &bytes[bytes.len() - 64..];
    let u64_at = |at: usize| u64::from_le_bytes(f[at..at + 8].try_into().unwrap());
    assert_eq!(&f[56..64], b"SHEAF\x00\xf0\x0d", "not a sheaf footer");
    FooterFields {
        index_offset: u64_at(0),
        index_len: u64_at(8),
        data_len: u64_at(32),
        version: u16::from_le_bytes([f[40], f[41]]),
    }
}

/// Rewrites the footer of `file` with `edit` and recomputes the footer checksum, as a writer
/// of that (possibly future) footer would.
pub fn rewrite_footer(file: &Path, edit: impl FnOnce(&mut [u8])) {
    let mut bytes = fs::read(file).expect("read container");
    let start = bytes.len() - 64;
    let footer = &mut bytes[start..];
    edit(footer);
    let sum = xxhash_rust::xxh3::xxh3_64(&footer[..48]);
    footer[48..56].copy_from_slice(&sum.to_le_bytes());
    fs::write(file, bytes).expect("write container");
}

/// Flips one bit of `file` at byte `offset`.
pub fn flip_bit(file: &Path, offset: u64, bit: u8) {
    let mut bytes = fs::read(file).expect("read");
    bytes[offset as usize] ^= 1 << bit;
    fs::write(file, bytes).expect("write");
}

/// Copies a tree (files, directories, symlinks) to a new place.
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy root");
    for child in fs::read_dir(from).expect("read_dir") {
        let child = child.expect("dir entry");
        let (src, dst) = (child.path(), to.join(child.file_name()));
        let ty = child.file_type().expect("file type");
        if ty.is_dir() {
            copy_tree(&src, &dst);
        } else if ty.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            fs::copy(&src, &dst).expect("copy file");
        }
    }
}

/// True when this process runs as root (chmod 000 does not stop root from reading).
pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Writes a one-container dataset by hand (body bytes, index rows as given and in the order
/// given, valid footer, checksums and catalog), the way a buggy or hostile writer could.
pub fn write_sealed_dataset(root: &Path, body: &[u8], entries: &[sheaf::Entry]) {
    let index = sheaf::format::entry::encode_index(entries).unwrap();
    write_sealed_dataset_with_index(root, body, entries, &index);
}

/// [`write_sealed_dataset`] with the index block given as bytes (which need not be one sheaf
/// would write): footer and catalog sealed around it, its entry count that of `entries`.
pub fn write_sealed_dataset_with_index(
    root: &Path,
    body: &[u8],
    entries: &[sheaf::Entry],
    index: &[u8],
) {
    use sheaf::format::footer::{FileKind, Footer};
    use sheaf::format::{Catalog, CatalogRow};
    use sheaf::layout::{container_name, Layout};
    let mut file = body.to_vec();
    file.resize(body.len().div_ceil(64) * 64, 0);
    let footer = Footer {
        index_offset: file.len() as u64,
        index_len: index.len() as u64,
        index_xxh3: xxhash_rust::xxh3::xxh3_64(index),
        entry_count: entries.len() as u64,
        data_len: body.len() as u64,
        version: sheaf::format::FORMAT_VERSION,
        kind: FileKind::Container,
    };
    file.extend_from_slice(index);
    file.extend_from_slice(&footer.encode());
    let layout = Layout::new(root);
    let name = container_name(0, 0);
    fs::create_dir_all(layout.containers_dir()).unwrap();
    fs::write(layout.container(&name), &file).unwrap();
    let path_at = |row: Option<&sheaf::Entry>| row.map(|e| e.path.clone()).unwrap_or_default();
    let row = CatalogRow {
        name,
        first_path: path_at(entries.first()),
        last_path: path_at(entries.last()),
        entry_count: entries.len() as u64,
        file_len: file.len() as u64,
        index_xxh3: footer.index_xxh3,
        content_id: xxhash_rust::xxh3::xxh3_128(&file),
        generation: 0,
        filter: Vec::new(),
    };
    let catalog = Catalog::new(vec![row], std::collections::HashMap::new())
        .to_bytes()
        .unwrap();
    fs::write(layout.catalog(), catalog).unwrap();
}
