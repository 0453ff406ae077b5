//! Hostile datasets: a generator of crafted datasets, each correctly sealed (index checksum,
//! footer and catalog all valid, so only sheaf's own checks stand in the way), run against
//! `ls`, `stat`, `cat`, `verify`, `unfold` and the mount. Every command must end within a time
//! limit, with a clean exit (success, an error, or `verify`'s faults; never a panic or a
//! signal), an error message when it fails, bounded memory, and no write outside its output.

use crate::mount::fuse_skipped;
use crate::util::*;
use sheaf::{Codec, Entry, EntryKind};
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The longest a command may take on a hostile dataset.
const TIME_LIMIT: Duration = Duration::from_secs(30);

/// The most memory (resident) a command may use on one.
const MEMORY_LIMIT_KIB: i64 = 512 * 1024;

/// One crafted dataset: its entries in the order the index holds them, the container body,
/// and whether `verify` must find faults in it.
struct Hostile {
    name: &'static str,
    entries: Vec<Entry>,
    body: Vec<u8>,
    faulty: bool,
    /// An index block other than the one sheaf writes for `entries` (schema abuse).
    index: Option<Vec<u8>>,
}

const MTIME: i64 = 1_000_000_000_000_000_000;

/// An entry storing `stored` at `offset`, claiming `len` and `xxh3` as given.
fn raw(path: &[u8], kind: EntryKind, offset: u64, stored_len: u64, len: u64, xxh3: u64) -> Entry {
    let mode = match kind {
        EntryKind::Dir => 0o040755,
        EntryKind::Symlink => 0o120777,
        EntryKind::Tombstone => 0,
        _ => 0o100644,
    };
    Entry {
        path: path.to_vec(),
        kind,
        offset,
        stored_len,
        len,
        codec: Codec::None,
        xxh3,
        mode,
        mtime_ns: MTIME,
        block_sums: None,
    }
}

/// Entries storing each of `items` (path, kind, bytes) one after another, honestly.
fn honest(items: &[(&[u8], EntryKind, &[u8])]) -> (Vec<Entry>, Vec<u8>) {
    let mut body = Vec::new();
    let mut entries = Vec::new();
    for (path, kind, bytes) in items {
        let stored: &[u8] = if kind.is_stored() { bytes } else { b"" };
        let offset = if stored.is_empty() {
            0
        } else {
            body.len() as u64
        };
        let xxh3 = if *kind == EntryKind::Dir {
            0
        } else {
            xxhash_rust::xxh3::xxh3_64(bytes)
        };
        entries.push(raw(
            path,
            *kind,
            offset,
            stored.len() as u64,
            bytes.len() as u64,
            xxh3,
        ));
        body.extend_from_slice(stored);
    }
    (entries, body)
}

fn case(name: &'static str, faulty: bool, items: &[(&[u8], EntryKind, &[u8])]) -> Hostile {
    let (entries, body) = honest(items);
    Hostile {
        name,
        entries,
        body,
        faulty,
        index: None,
    }
}

/// The crafted datasets. `victim` is an absolute path outside every output that no command may
/// create.
fn generate_hostile(victim: &Path) -> Vec<Hostile> {
    use EntryKind::*;
    let victim = victim.as_os_str().as_bytes();
    let long = vec![b'n'; 300];
    let mut deep = Vec::new();
    for _ in 0..600 {
        deep.extend_from_slice(b"d/");
    }
    deep.extend_from_slice(b"f");
    let mut out = vec![
        case(
            "climbing path",
            true,
            &[(b"../escape.txt", File, b"escaped")],
        ),
        case("absolute path", true, &[(victim, File, b"absolute")]),
        case("nul in a name", true, &[(b"a\0b", File, b"nul")]),
        case("dot component", true, &[(b"a/./b", File, b"dot")]),
        case("empty component", true, &[(b"a//b", File, b"empty")]),
        case("trailing slash", true, &[(b"a/", File, b"slash")]),
        case("empty path", true, &[(b"", File, b"root as a file")]),
        case(
            "symlink to an absolute target",
            false,
            &[(b"link", Symlink, victim)],
        ),
        case(
            "symlink climbing out",
            false,
            &[(b"d", Dir, b""), (b"d/link", Symlink, b"../../../outside")],
        ),
        case(
            "symlink loop",
            false,
            &[(b"a", Symlink, b"b"), (b"b", Symlink, b"a")],
        ),
        case(
            "file under a symlink",
            true,
            &[
                (b"dir", Symlink, victim),
                (b"dir/evil.txt", File, b"through the link"),
            ],
        ),
        case(
            "file under a file",
            true,
            &[(b"f", File, b"file"), (b"f/g", File, b"under it")],
        ),
        case(
            "entry without its directory",
            true,
            &[(b"missing/dir/file", File, b"orphan")],
        ),
        case(
            "name longer than the system's limit",
            false,
            &[(&long, File, b"long")],
        ),
        case(
            "path deeper than the system's limit",
            true,
            &[(&deep, File, b"deep")],
        ),
        case(
            "duplicate paths",
            true,
            &[(b"same", File, b"first"), (b"same", File, b"second")],
        ),
        case(
            "paths out of order",
            true,
            &[(b"b", File, b"b"), (b"a", File, b"a")],
        ),
        case(
            "non-UTF-8 and control characters",
            false,
            &[(b"\xff\xfe", File, b"bytes"), (b"new\nline", File, b"nl")],
        ),
        case("tombstone only", false, &[(b"gone", Tombstone, b"")]),
    ];
    let wrong = |name, entries: Vec<Entry>, body: &[u8]| Hostile {
        name,
        entries,
        body: body.to_vec(),
        faulty: true,
        index: None,
    };
    let sum = |b: &[u8]| xxhash_rust::xxh3::xxh3_64(b);
    out.push(wrong(
        "offset past the data",
        vec![raw(b"f", File, 1000, 5, 5, sum(b"hello"))],
        b"hello",
    ));
    out.push(wrong(
        "offset and length overflowing",
        vec![raw(b"f", File, u64::MAX - 2, 10, 10, 0)],
        b"0123456789",
    ));
    out.push(wrong(
        "length far beyond the largest entry",
        vec![raw(b"f", File, 0, 5, 1 << 40, sum(b"hello"))],
        b"hello",
    ));
    out.push(wrong(
        "checksum that does not match",
        vec![raw(b"f", File, 0, 5, 5, 42)],
        b"hello",
    ));
    out.push(wrong(
        "directory with a length",
        vec![raw(b"d", Dir, 0, 0, 5, 0)],
        b"",
    ));
    let mut lying_mode = raw(b"f", File, 0, 5, 5, sum(b"hello"));
    lying_mode.mode = 0o040755;
    out.push(wrong(
        "file whose mode says directory",
        vec![lying_mode],
        b"hello",
    ));
    out.push(wrong(
        "external file missing",
        vec![raw(b"big.bin", External, 0, 0, 10 << 20, 7)],
        b"",
    ));
    out.extend(decompression_bombs());
    out.extend(schema_abuse());
    out
}

/// Index blocks whose Arrow schema is not the one sheaf writes: columns of other types,
/// missing, added, reordered, nested, dictionary-encoded or null, a hash table out of bounds,
/// fewer rows than the footer counts. Each is sealed like an honest one.
fn schema_abuse() -> Vec<Hostile> {
    use arrow_array::{
        types::Int32Type, ArrayRef, DictionaryArray, Float64Array, Int32Array, ListArray,
        RecordBatch, StringArray, UInt32Array, UInt64Array, UInt8Array,
    };
    use arrow_schema::{Field, Schema};
    use std::sync::Arc;

    let (entries, body) = honest(&[
        (b"d", EntryKind::Dir, b""),
        (b"d/a", EntryKind::File, b"alpha"),
        (b"d/b", EntryKind::File, b"bravo"),
    ]);
    let honest_index = sheaf::format::entry::encode_index(&entries).unwrap();
    let reader =
        arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(honest_index), None).unwrap();
    let batch = reader.into_iter().next().unwrap().unwrap();
    let columns: Vec<(String, ArrayRef)> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.name().clone(), c.clone()))
        .collect();
    let encode = |columns: Vec<(String, ArrayRef)>| -> Vec<u8> {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(name, c)| Field::new(name, c.data_type().clone(), c.null_count() > 0))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let arrays = columns.into_iter().map(|(_, c)| c).collect();
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
        let mut writer = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &schema).unwrap();
        writer.write(&batch).unwrap();
        writer.finish().unwrap();
        writer.into_inner().unwrap()
    };
    let replaced = |name: &str, with: ArrayRef| -> Vec<u8> {
        encode(
            columns
                .iter()
                .map(|(n, c)| (n.clone(), if n == name { with.clone() } else { c.clone() }))
                .collect(),
        )
    };
    let without = |name: &str| -> Vec<u8> {
        encode(columns.iter().filter(|(n, _)| n != name).cloned().collect())
    };
    let with_extra = |name: &str, extra: ArrayRef| -> Vec<u8> {
        let mut all = columns.clone();
        all.push((name.to_owned(), extra));
        encode(all)
    };
    let n = entries.len();
    let list = ListArray::from_iter_primitive::<Int32Type, _, _>((0..n).map(|_| Some([Some(1)])));
    let dictionary: DictionaryArray<Int32Type> = ["d", "d/a", "d/b"].into_iter().collect();
    let mut reordered = columns.clone();
    reordered.reverse();
    let first_rows: Vec<(String, ArrayRef)> = columns
        .iter()
        .map(|(n, c)| (n.clone(), c.slice(0, 1)))
        .collect();
    let abuse = |name, faulty, index: Vec<u8>| Hostile {
        name,
        entries: entries.clone(),
        body: body.clone(),
        faulty,
        index: Some(index),
    };
    vec![
        abuse(
            "offset column of 32-bit integers",
            true,
            replaced("offset", Arc::new(Int32Array::from(vec![0, 0, 5]))),
        ),
        abuse(
            "path column of UTF-8 text",
            true,
            replaced("path", Arc::new(StringArray::from(vec!["d", "d/a", "d/b"]))),
        ),
        abuse("xxh3 column missing", true, without("xxh3")),
        abuse("hash table column missing", true, without("hash_rows")),
        abuse(
            "kind column as lists",
            true,
            replaced("kind", Arc::new(list)),
        ),
        abuse(
            "path column dictionary-encoded",
            true,
            replaced("path", Arc::new(dictionary)),
        ),
        abuse(
            "nulls in the len column",
            true,
            replaced(
                "len",
                Arc::new(UInt64Array::from(vec![Some(0), None, Some(5)])),
            ),
        ),
        abuse(
            "kind values no sheaf writes",
            true,
            replaced("kind", Arc::new(UInt8Array::from(vec![1, 9, 0]))),
        ),
        abuse(
            "extra column of floats",
            true,
            with_extra("weights", Arc::new(Float64Array::from(vec![0.5; 3]))),
        ),
        abuse(
            "hash table naming rows that are not there",
            true,
            replaced(
                "hash_buckets",
                Arc::new(UInt32Array::from(vec![u32::MAX; 3])),
            ),
        ),
        abuse(
            "one row where the footer counts three",
            true,
            encode(first_rows),
        ),
        // Columns are found by name, so these are read as the honest index.
        abuse("columns in reverse order", false, encode(reordered)),
        abuse(
            "extra column of a known type",
            false,
            with_extra("note", Arc::new(UInt8Array::from(vec![7u8; 3]))),
        ),
    ]
}

/// zstd frames that decode to far more than their entry claims, or to less.
fn decompression_bombs() -> Vec<Hostile> {
    let zeros = vec![0u8; 256 << 20];
    let frame = zstd::bulk::compress(&zeros, 19).unwrap();
    let small = zstd::bulk::compress(b"tiny", 3).unwrap();
    let bomb = |name, len: u64, body: &[u8], xxh3| {
        let mut entry = raw(b"bomb", EntryKind::File, 0, body.len() as u64, len, xxh3);
        entry.codec = Codec::Zstd;
        Hostile {
            name,
            entries: vec![entry],
            body: body.to_vec(),
            faulty: true,
            index: None,
        }
    };
    vec![
        bomb("zstd frame of 256 MiB claiming 100 bytes", 100, &frame, 0),
        bomb(
            "zstd frame of 4 bytes claiming 1 GiB",
            sheaf::format::MAX_ENTRY_LEN,
            &small,
            0,
        ),
        bomb(
            "zstd frame of 256 MiB claiming the largest entry",
            sheaf::format::MAX_ENTRY_LEN,
            &frame,
            0,
        ),
    ]
}

/// Writes `hostile` as a sealed one-container dataset at `root`.
fn write(root: &Path, hostile: &Hostile) {
    match &hostile.index {
        Some(index) => {
            write_sealed_dataset_with_index(root, &hostile.body, &hostile.entries, index)
        }
        None => write_sealed_dataset(root, &hostile.body, &hostile.entries),
    }
}

/// How one command ended.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    max_rss_kib: i64,
}

/// Runs `sheaf args`, killing it at the time limit, and reports its exit and peak memory.
// The child is reaped with wait4 (for its resource usage), not through `Child::wait`.
#[allow(clippy::zombie_processes)]
fn run_bounded(args: &[OsString]) -> Ended {
    let dir = tempdir();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let child = Command::new(env!("CARGO_BIN_EXE_sheaf"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .env("RUST_BACKTRACE", "0")
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let started = Instant::now();
    let mut status = 0;
    // SAFETY: rusage is plain data, filled by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waiting for our own child, with valid pointers.
        let done = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if done == pid {
            break;
        }
        if started.elapsed() > TIME_LIMIT {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::wait4(pid, &mut status, 0, &mut usage);
            }
            panic!("`sheaf {args:?}` still running after {TIME_LIMIT:?}: it hung");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ended {
        code,
        stdout: String::from_utf8_lossy(&fs::read(&out).unwrap_or_default()).into_owned(),
        stderr: fs::read_to_string(&err).unwrap_or_default(),
        max_rss_kib: usage.ru_maxrss,
    }
}

/// A command on a hostile dataset ended cleanly: a success, an error with a message, or (for
/// `verify`) faults found; never a panic or a signal; within the memory bound.
fn assert_clean(label: &str, args: &[OsString], ended: &Ended, allowed: &[i32]) {
    let shown = format!(
        "{label}: `sheaf {}`",
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let code = ended
        .code
        .unwrap_or_else(|| panic!("{shown} was killed by a signal"));
    assert!(
        allowed.contains(&code),
        "{shown} exited with {code}: {}",
        ended.stderr
    );
    assert!(
        !ended.stderr.contains("panicked"),
        "{shown} panicked: {}",
        ended.stderr
    );
    if code != 0 {
        // Errors go to stderr; `verify` reports its faults on stdout.
        let said = format!("{}{}", ended.stdout, ended.stderr);
        assert!(!said.trim().is_empty(), "{shown} failed without a word");
    }
    assert!(
        ended.max_rss_kib < MEMORY_LIMIT_KIB,
        "{shown} used {} MiB",
        ended.max_rss_kib / 1024
    );
}

fn args(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_os_string()).collect()
}

/// Every file below `dir` (for "nothing written outside").
fn everything_below(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(children) = fs::read_dir(dir) {
        for child in children {
            let path = child.unwrap().path();
            found.push(path.clone());
            if path.is_dir() && !path.is_symlink() {
                found.extend(everything_below(&path));
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_command_ends_cleanly_on_every_hostile_dataset_and_writes_only_its_output() {
    let tmp = tempdir();
    let victim = tmp.path().join("victim");
    let neighbour = tmp.path().join("work/neighbour");
    Tree::new(&neighbour).file("keep.txt", b"untouched");
    let hostiles = generate_hostile(&victim);
    for (i, hostile) in hostiles.iter().enumerate() {
        let ds = tmp.path().join(format!("work/ds-{i}"));
        write(&ds, hostile);
        let out = tmp.path().join(format!("work/out-{i}/tree"));
        fs::create_dir_all(out.parent().unwrap()).unwrap();
        let label = hostile.name;

        let verify = args(&[&"verify", &"-q", &ds]);
        let ended = run_bounded(&verify);
        assert_clean(label, &verify, &ended, &[0, 3]);
        if hostile.faulty {
            assert_eq!(ended.code, Some(3), "{label}: verify found nothing");
        }
        for command in [
            args(&[&"ls", &"-R", &"-l", &ds]),
            args(&[&"unfold", &"-q", &ds, &out]),
        ] {
            let ended = run_bounded(&command);
            assert_clean(label, &command, &ended, &[0, 1]);
        }
        // A NUL cannot be passed as an argument at all.
        for entry in hostile.entries.iter().filter(|e| !e.path.contains(&0)) {
            let path = std::ffi::OsStr::from_bytes(&entry.path);
            for command in [
                args(&[&"cat", &ds, &path]),
                args(&[&"stat", &"--json", &ds, &path]),
            ] {
                let ended = run_bounded(&command);
                assert_clean(label, &command, &ended, &[0, 1]);
            }
        }
        assert!(
            !victim.exists(),
            "{label}: a command wrote {}",
            victim.display()
        );
        assert!(!tmp.path().join("escape.txt").exists(), "{label}: escaped");
        assert!(!tmp.path().join("outside").exists(), "{label}: escaped");
    }
    // Nothing appeared in the work area but the datasets and the outputs.
    for path in everything_below(&tmp.path().join("work")) {
        let rel = path.strip_prefix(tmp.path().join("work")).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        assert!(
            top.starts_with("ds-") || top.starts_with("out-") || top == "neighbour",
            "written outside the outputs: {}",
            path.display()
        );
    }
    assert_eq!(
        everything_below(&neighbour),
        vec![neighbour.join("keep.txt")]
    );
    assert_eq!(fs::read(neighbour.join("keep.txt")).unwrap(), b"untouched");
}

#[test]
fn an_index_whose_columns_are_reordered_or_added_to_reads_as_the_honest_one() {
    let tmp = tempdir();
    let sound: Vec<Hostile> = schema_abuse().into_iter().filter(|h| !h.faulty).collect();
    assert!(sound.len() >= 2);
    for (i, hostile) in sound.iter().enumerate() {
        let ds = tmp.path().join(format!("ds-{i}"));
        write(&ds, hostile);
        run!("verify", "-q", &ds).success();
        for entry in hostile.entries.iter().filter(|e| e.kind == EntryKind::File) {
            let start = entry.offset as usize;
            let expected = &hostile.body[start..start + entry.len as usize];
            let path = std::ffi::OsStr::from_bytes(&entry.path);
            let out = run!("cat", &ds, path).success();
            assert_eq!(out.stdout, expected, "{}", hostile.name);
        }
    }
}

#[test]
fn a_mount_of_every_hostile_dataset_refuses_it_or_answers_and_unmounts_cleanly() {
    if fuse_skipped() {
        return;
    }
    let tmp = tempdir();
    let victim = tmp.path().join("victim");
    let mut mounted = 0;
    for (i, hostile) in generate_hostile(&victim).iter().enumerate() {
        let label = hostile.name;
        let ds = tmp.path().join(format!("ds-{i}"));
        write(&ds, hostile);
        let point = tmp.path().join(format!("mnt-{i}"));
        fs::create_dir_all(&point).unwrap();
        // `sheaf mount` returns once the mount is ready, or fails saying why.
        let mount = args(&[&"mount", &ds, &point]);
        let ended = run_bounded(&mount);
        assert_clean(label, &mount, &ended, &[0, 1]);
        if ended.code != Some(0) {
            continue;
        }
        mounted += 1;
        // Walk and read everything the mount shows, within the time limit: errors are fine,
        // hanging is not.
        let started = Instant::now();
        let mut walker = Command::new("sh")
            .arg("-c")
            .arg("find \"$1\" -xdev -type f -exec cat {} + >/dev/null 2>&1; ls -laR \"$1\" >/dev/null 2>&1; true")
            .arg("sh")
            .arg(&point)
            .spawn()
            .unwrap();
        while walker.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < TIME_LIMIT,
                "{label}: reading the mount hung"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!victim.exists(), "{label}: the mount wrote outside");
        let unmounted = Command::new("fusermount3")
            .arg("-u")
            .arg(&point)
            .status()
            .unwrap();
        assert!(
            unmounted.success(),
            "{label}: the mount did not unmount cleanly"
        );
    }
    assert!(
        mounted > 0,
        "no hostile dataset mounted: the walk was never tested"
    );
}
