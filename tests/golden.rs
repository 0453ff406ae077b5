//! Golden fixtures: a dataset written by every format version stays readable, and the current
//! writer still produces the current version's bytes exactly.
//!
//! A missing fixture is written by this test (commit it); an existing one is never rewritten.

use sheaf::fold::{fold, Compression, ContainerLimits, FoldOptions, Target};
use sheaf::format::footer::FOOTER_LEN;
use sheaf::format::{Catalog, Container, FileKind, Footer, FORMAT_VERSION};
use sheaf::progress::Silent;
use sheaf::{Dataset, EntryKind};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Fixed mtime of every fixture entry: 2001-09-09 01:46:40.123456789 UTC.
const MTIME_NS: i64 = 1_000_000_000_123_456_789;

/// The fixture tree: (path, content) for files, with a symlink, an empty directory and two
/// files above the fixture threshold (external entries).
fn fixture_files() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for split in ["train", "val"] {
        for class in ["cat", "dog"] {
            for i in 0..4 {
                let content = format!("{split}/{class}/{i}: ").repeat(i + 1).into_bytes();
                files.push((format!("{split}/{class}/{i:04}.jpg"), content));
            }
        }
    }
    files.push(("labels.json".into(), br#"{"cat": 0, "dog": 1}"#.to_vec()));
    files.push(("empty-file".into(), Vec::new()));
    files.push((
        "big/weights.bin".into(),
        (0..600u32).map(|i| (i * 7 % 251) as u8).collect(),
    ));
    files.push((
        "big/notes.txt".into(),
        b"exactly at the threshold.".repeat(8)[..200].to_vec(),
    ));
    files
}

fn build_source(root: &Path) {
    for (path, content) in fixture_files() {
        let file = root.join(&path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, content).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    }
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    std::os::unix::fs::symlink("train/cat/0000.jpg", root.join("first-cat")).unwrap();
    fs::set_permissions(
        root.join("big/weights.bin"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let mtime = filetime::FileTime::from_unix_time(
        MTIME_NS / 1_000_000_000,
        (MTIME_NS % 1_000_000_000) as u32,
    );
    // The root last: setting the times of what is in it does not move its own.
    for path in walk(root).into_iter().chain([root.to_path_buf()]) {
        if path.is_dir() && !path.is_symlink() {
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        filetime::set_symlink_file_times(&path, mtime, mtime).unwrap();
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for child in fs::read_dir(dir).unwrap() {
        let path = child.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out
}

fn fixture_options() -> FoldOptions {
    FoldOptions {
        threshold: 200,
        limits: ContainerLimits {
            bytes: 256,
            entries: 1000,
        },
        compression: Compression::None,
        remove_originals: false,
    }
}

fn fixture_dir(version: u16) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/v{version}"))
}

/// Folds the fixture tree into `dst` with the fixture settings.
fn fold_fixture(dst: &Path) {
    let src = tempfile::tempdir().unwrap();
    build_source(src.path());
    let target = Target::NewRoot {
        src: src.path().to_path_buf(),
        dst: dst.to_path_buf(),
    };
    fold(&target, &fixture_options(), &Silent).unwrap();
}

fn ensure_current_fixture() -> PathBuf {
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_writer = WRITING.lock().unwrap();
    let dir = fixture_dir(FORMAT_VERSION);
    let published = dir.join(".sheaf/catalog.sheaf").exists()
        || dir.join(sheaf::layout::generation_key(0)).exists();
    if !published {
        fold_fixture(&dir);
        eprintln!("wrote the golden fixture {}: commit it", dir.display());
    }
    dir
}

/// Every version's fixture must keep reading: contents, metadata, listing and verify.
#[test]
fn every_fixture_version_still_reads() {
    ensure_current_fixture();
    for version in sheaf::format::OLDEST_SUPPORTED_VERSION..=FORMAT_VERSION {
        let dataset = Dataset::open(fixture_dir(version)).unwrap();
        for (path, content) in fixture_files() {
            assert_eq!(
                dataset.read(path.as_bytes()).unwrap().as_slice(),
                &content[..],
                "v{version} {path}"
            );
            let entry = dataset.stat(path.as_bytes()).unwrap();
            assert_eq!(entry.mtime_ns, MTIME_NS, "v{version} {path}");
            let expected_kind = if content.len() >= 200 {
                EntryKind::External
            } else {
                EntryKind::File
            };
            assert_eq!(entry.kind, expected_kind, "v{version} {path}");
            if expected_kind == EntryKind::External {
                // Block checksums from version 4 on; before, a part is served once the whole
                // file has been checked.
                assert_eq!(
                    entry.block_sums.is_some(),
                    version >= 4,
                    "v{version} {path}"
                );
                assert_eq!(
                    dataset.read_external_range(&entry, 5..150).unwrap(),
                    &content[5..150],
                    "v{version} {path}"
                );
            }
        }
        assert_eq!(
            dataset.stat(b"big/weights.bin").unwrap().mode & 0o777,
            0o600
        );
        assert_eq!(dataset.stat(b"empty-dir").unwrap().kind, EntryKind::Dir);
        assert_eq!(
            dataset.read(b"first-cat").unwrap().as_slice(),
            b"train/cat/0: "
        );
        let names: Vec<_> = dataset
            .list(b"")
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        let expected: Vec<&[u8]> = vec![
            b"big",
            b"empty-dir",
            b"empty-file",
            b"first-cat",
            b"labels.json",
            b"train",
            b"val",
        ];
        assert_eq!(names, expected);
        assert!(
            dataset.catalog().rows().len() > 1,
            "the fixture spans several containers"
        );
        let report = sheaf::read::verify::verify(&dataset, &Silent);
        assert!(report.is_clean(), "v{version}: {:?}", report.faults);
        // The folded root's mode and time are recorded from version 3's fixture on; older
        // datasets show a directory of mode 0755 and time 0.
        let root = dataset.stat(b"").unwrap();
        let expected_root = match version {
            3.. => (0o040755, MTIME_NS),
            _ => (0o040755, 0),
        };
        assert_eq!((root.mode, root.mtime_ns), expected_root, "v{version} root");
    }
}

/// A part of an external file indexed without block checksums is served only after the whole
/// file has been checked: a change anywhere in it fails every read of it.
#[test]
fn an_older_dataset_s_external_file_is_checked_whole_before_any_part_is_served() {
    for version in sheaf::format::OLDEST_SUPPORTED_VERSION..4 {
        let copy = tempfile::tempdir().unwrap();
        let root = copy.path().join("dataset");
        copy_dir(&fixture_dir(version), &root);
        let weights = root.join("big/weights.bin");
        let mut bytes = fs::read(&weights).unwrap();
        bytes[590] ^= 1;
        fs::write(&weights, &bytes).unwrap();
        let dataset = Dataset::open(&root).unwrap();
        let entry = dataset.stat(b"big/weights.bin").unwrap();
        let err = dataset.read_external_range(&entry, 0..10).unwrap_err();
        assert!(
            matches!(err, sheaf::Error::ChecksumMismatch { .. }),
            "v{version}: {err}"
        );

        // Compacted by this version, its external entries keep no block checksums (the
        // compaction does not read external files) and are still checked whole.
        let intact = copy.path().join("intact");
        copy_dir(&fixture_dir(version), &intact);
        sheaf::fold::compact(&intact, fixture_options().limits, &Silent).unwrap();
        let compacted = Dataset::open(&intact).unwrap();
        let entry = compacted.stat(b"big/weights.bin").unwrap();
        assert_eq!(entry.block_sums, None, "v{version}");
        assert!(sheaf::read::verify::verify(&compacted, &Silent).is_clean());
        fs::write(intact.join("big/weights.bin"), &bytes).unwrap();
        let compacted = Dataset::open(&intact).unwrap();
        compacted.read_external_range(&entry, 0..10).unwrap_err();
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for child in fs::read_dir(from).unwrap() {
        let child = child.unwrap();
        let target = to.join(child.file_name());
        if child.file_type().unwrap().is_dir() {
            copy_dir(&child.path(), &target);
        } else {
            fs::copy(child.path(), &target).unwrap();
        }
    }
}

/// While the format version stays the same, the writer must produce the same bytes.
#[test]
fn current_writer_reproduces_the_current_fixture_byte_for_byte() {
    let fixture = ensure_current_fixture();
    let fresh = tempfile::tempdir().unwrap();
    let dst = fresh.path().join("dataset");
    fold_fixture(&dst);
    let sheaf_files = |root: &Path| {
        let mut files: Vec<PathBuf> = walk(&root.join(".sheaf"))
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|p| {
                (
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    fs::read(&p).unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let (old, new) = (sheaf_files(&fixture), sheaf_files(&dst));
    assert_eq!(old.len(), new.len());
    for ((old_path, old_bytes), (new_path, new_bytes)) in old.iter().zip(&new) {
        assert_eq!(old_path, new_path);
        if old_path.starts_with(".sheaf/generations") {
            assert_same_generation(old_path, old_bytes, new_bytes);
            continue;
        }
        assert!(
            old_bytes == new_bytes,
            "{} changed without a format version bump",
            old_path.display()
        );
    }
}

/// A generation file records when and by which transaction it was committed, and Arrow
/// writes schema metadata in no fixed order: two folds of one tree agree on everything else.
fn assert_same_generation(path: &Path, old: &[u8], new: &[u8]) {
    use sheaf::format::generation::{META_TIME, META_TXN};
    let decode = |bytes: &[u8]| {
        let catalog = Catalog::from_buffer(arrow_buffer_of(bytes), path).unwrap();
        let mut meta = catalog.metadata().clone();
        for varying in [META_TIME, META_TXN] {
            assert!(meta.remove(varying).is_some(), "{varying} is recorded");
        }
        let tail = &bytes[bytes.len() - FOOTER_LEN..];
        let footer = Footer::decode(tail, bytes.len() as u64, FileKind::Catalog, path).unwrap();
        // The index's length and checksum follow the varying metadata.
        let stable = (
            footer.version,
            footer.kind,
            footer.entry_count,
            footer.data_len,
        );
        (catalog.rows().to_vec(), meta, stable)
    };
    assert!(
        decode(old) == decode(new),
        "{} changed without a format version bump",
        path.display()
    );
}

/// Rewrites the index checksum and footer checksum so a mutated index reaches the Arrow
/// decoder, as a hostile writer would.
fn reseal(bytes: &mut [u8]) {
    let len = bytes.len();
    let footer = len - FOOTER_LEN;
    let offset = u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize;
    let index_len = u64::from_le_bytes(bytes[footer + 8..footer + 16].try_into().unwrap()) as usize;
    let index_sum = xxhash_rust::xxh3::xxh3_64(&bytes[offset..offset + index_len]);
    bytes[footer + 16..footer + 24].copy_from_slice(&index_sum.to_le_bytes());
    let footer_sum = xxhash_rust::xxh3::xxh3_64(&bytes[footer..footer + 48]);
    bytes[footer + 48..footer + 56].copy_from_slice(&footer_sum.to_le_bytes());
}

/// Every single-byte corruption of an index, resealed so checksums pass, is either rejected
/// with an error or yields an index whose reads are all checked: never a panic, never wrong
/// bytes.
#[test]
fn resealed_index_corruptions_never_panic_or_return_unchecked_bytes() {
    let fixture = ensure_current_fixture();
    let row = &Dataset::open(&fixture).unwrap().catalog().rows()[0].clone();
    let original = fs::read(fixture.join(".sheaf/containers").join(&row.name)).unwrap();
    let footer = original.len() - FOOTER_LEN;
    let index_start = u64::from_le_bytes(original[footer..footer + 8].try_into().unwrap()) as usize;
    let clean = Container::from_buffer(arrow_buffer_of(&original), "clean".into()).unwrap();
    // A panic caught inside the parser still counts as a failure here: the parser must reject
    // hostile bytes by checking them, not by unwinding.
    thread_local!(static PANICKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICKED.with(|p| p.set(true));
        previous(info)
    }));
    let mut accepted = 0;
    for at in index_start..footer {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut bytes = original.clone();
            bytes[at] ^= flip;
            reseal(&mut bytes);
            sheaf::format::parse_untrusted(&bytes);
            let Ok(container) = Container::from_buffer(arrow_buffer_of(&bytes), "mutated".into())
            else {
                continue;
            };
            accepted += 1;
            let index = container.index();
            for i in 0..index.len() {
                // The hash table may be damaged: it can only ever add certainty, never a row
                // whose path differs from the one asked for.
                let path = index.path(i);
                match index.find(path) {
                    Some(row) => assert_eq!(index.path(row), path),
                    None => assert_eq!(index.find_by_search(path), None),
                }
            }
            for i in 0..container.index().len() {
                // Offsets and lengths may be damaged: touching a row reads nothing outside.
                container.fault_in_row(i);
                if let Ok(data) = container.read_row(i) {
                    let entry = container.index().entry(i);
                    assert_eq!(xxhash_rust::xxh3::xxh3_64(&data), entry.xxh3);
                    if let Some(j) = clean.index().find(&entry.path) {
                        if clean.index().entry(j).xxh3 == entry.xxh3 {
                            assert_eq!(data.as_slice(), clean.read_row(j).unwrap().as_slice());
                        }
                    }
                }
            }
        }
    }
    assert!(
        !PANICKED.with(|p| p.get()),
        "a resealed mutation made the parser panic"
    );
    eprintln!("{accepted} resealed mutations decoded without error; all their reads were checked");
}

/// A version 1 index relabelled as version 2 lacks the hash columns version 2 requires: it is
/// refused as corrupt, naming the missing column.
#[test]
fn a_version_2_index_without_its_hash_columns_is_refused() {
    let v1 = fixture_dir(1).join(".sheaf/containers/g000000-c00000000.sheaf");
    let mut bytes = fs::read(v1).unwrap();
    let footer = bytes.len() - FOOTER_LEN;
    assert_eq!(&bytes[footer + 40..footer + 42], &1u16.to_le_bytes());
    assert!(Container::from_buffer(arrow_buffer_of(&bytes), "v1".into()).is_ok());
    bytes[footer + 40..footer + 42].copy_from_slice(&2u16.to_le_bytes());
    reseal(&mut bytes);
    let error = Container::from_buffer(arrow_buffer_of(&bytes), "relabelled".into())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("index column `hash_rows`: missing"),
        "{error}"
    );
}

fn arrow_buffer_of(bytes: &[u8]) -> arrow_buffer::Buffer {
    arrow_buffer::Buffer::from(bytes.to_vec())
}

/// The version 3 fixture with generations: the fixture tree folded (generation 0), a tree
/// appended under `more/` replacing `labels.json` (1), then `val/dog` and `empty-file` removed
/// (2): overlapping levels, path filters and tombstones on disk, as every later reader must
/// keep reading them.
fn generations_fixture() -> PathBuf {
    static WRITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_writer = WRITING.lock().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v3-generations");
    if dir.join(sheaf::layout::generation_key(2)).exists() {
        return dir;
    }
    let _ = fs::remove_dir_all(&dir);
    fold_fixture(&dir);
    let more = tempfile::tempdir().unwrap();
    fs::write(
        more.path().join("labels.json"),
        b"{\"cat\": 0, \"dog\": 1, \"cow\": 2}",
    )
    .unwrap();
    fs::create_dir_all(more.path().join("cow")).unwrap();
    fs::write(more.path().join("cow/0000.jpg"), b"moo").unwrap();
    let options = fixture_options();
    sheaf::fold::append(more.path(), &dir, b"", &options, &Silent).unwrap();
    let doomed = [b"val/dog".to_vec(), b"empty-file".to_vec()];
    sheaf::fold::remove(&dir, &doomed, true, &Silent).unwrap();
    eprintln!("wrote the golden fixture {}: commit it", dir.display());
    dir
}

#[test]
fn the_generations_fixture_still_reads_at_every_generation() {
    let dir = generations_fixture();
    let at = |generation| {
        let options = sheaf::ReadOptions {
            generation: Some(generation),
            ..Default::default()
        };
        Dataset::open_in_with(sheaf::store::open(&dir).unwrap(), options).unwrap()
    };
    let newest = Dataset::open(&dir).unwrap();
    assert_eq!(newest.generation(), 2);
    // Written before datasets recorded their root: a directory of mode 0755 and time 0.
    let root = newest.stat(b"").unwrap();
    assert_eq!((root.mode, root.mtime_ns), (0o040755, 0));
    assert_eq!(
        newest.read(b"labels.json").unwrap().as_slice(),
        b"{\"cat\": 0, \"dog\": 1, \"cow\": 2}"
    );
    assert_eq!(newest.read(b"cow/0000.jpg").unwrap().as_slice(), b"moo");
    assert!(newest.stat(b"val/dog/0001.jpg").is_err());
    assert!(newest.stat(b"empty-file").is_err());
    let names: Vec<_> = newest
        .list(b"")
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    let expected: Vec<&[u8]> = vec![
        b"big",
        b"cow",
        b"empty-dir",
        b"first-cat",
        b"labels.json",
        b"train",
        b"val",
    ];
    assert_eq!(names, expected);
    assert_eq!(newest.list(b"val").unwrap().len(), 1, "val/cat only");
    let rows = newest.catalog().rows();
    assert!(rows
        .iter()
        .any(|r| r.generation == 2 && !r.filter.is_empty()));
    let report = sheaf::read::verify::verify(&newest, &Silent);
    assert!(report.is_clean(), "{:?}", report.faults);
    let first = at(0);
    assert_eq!(
        first.read(b"labels.json").unwrap().as_slice(),
        br#"{"cat": 0, "dog": 1}"#
    );
    assert!(first.stat(b"val/dog/0001.jpg").is_ok());
    assert!(at(1).stat(b"cow/0000.jpg").is_ok() && at(1).stat(b"empty-file").is_ok());
}
