//! Damaged and hostile input: every fault is an error with a clear message, never wrong bytes,
//! and `verify` reports all of them.

use crate::util::*;
use sheaf::format::{Catalog, ContainerWriter};
use sheaf::layout::{container_name, Layout};
use sheaf::{Codec, Dataset, Entry, EntryKind};
use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A folded dataset with several containers, a symlink and an external file.
struct Fixture {
    tmp: Scratch,
    dst: PathBuf,
    before: Snapshot,
}

const EXTERNAL: &str = "ext/big.bin";

fn fixture() -> Fixture {
    let tmp = tempdir();
    let src = tmp.path().join("src");
    generate(&src, 150, 31);
    let t = Tree::new(&src);
    t.file(EXTERNAL, &Rng::new(2).bytes(4000));
    t.symlink("ext/link", "big.bin");
    let before = snapshot(&src, false);
    let dst = tmp.path().join("dst");
    fold(&src, &dst, &["--container-size", "16KiB"]).success();
    assert!(containers(&dst).len() >= 3);
    Fixture { tmp, dst, before }
}

impl Fixture {
    /// Folded files (path and entry) of container `i`, read before any damage.
    fn files_in(&self, i: usize) -> Vec<Entry> {
        let dataset = Dataset::open(&self.dst).unwrap();
        dataset
            .walk()
            .map(|item| item.unwrap())
            .filter(|(at, e)| at.container == i && e.kind == EntryKind::File && e.len >= 16)
            .map(|(_, e)| e)
            .collect()
    }

    fn container(&self, i: usize) -> PathBuf {
        containers(&self.dst)[i].clone()
    }

    fn original(&self, path: &[u8]) -> Vec<u8> {
        match &self.before[path].content {
            Content::File(bytes) => bytes.clone(),
            other => panic!("{other:?} is not a file"),
        }
    }

    /// A pristine copy of the dataset to damage.
    fn copy(&self, name: &str) -> PathBuf {
        let to = self.tmp.path().join(name);
        copy_tree(&self.dst, &to);
        to
    }
}

fn name_of(file: &Path) -> String {
    file.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn a_truncated_container_is_reported_wherever_it_was_cut() {
    let fx = fixture();
    let victim = fx.files_in(1)[0].path.clone();
    let healthy = fx.files_in(0)[0].path.clone();
    let len = fs::metadata(fx.container(1)).unwrap().len();
    let footer = footer_of(&fs::read(fx.container(1)).unwrap());
    let cuts = [
        0,
        1,
        63,
        64,
        footer.data_len / 2,
        footer.index_offset + 3,
        len - 64,
        len - 1,
    ];
    for (n, cut) in cuts.into_iter().enumerate() {
        let ds = fx.copy(&format!("cut-{n}"));
        let file = containers(&ds)[1].clone();
        fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(cut)
            .unwrap();

        let cat = run!("cat", ds, bpath(&victim)).fails_with(1).no_stdout();
        assert!(
            cat.stderr.contains("corrupt") && cat.stderr.contains(&name_of(&file)),
            "cut at {cut}: {}",
            cat.stderr
        );
        // Other containers still serve their files.
        let ok = run!("cat", ds, bpath(&healthy)).success();
        assert_eq!(ok.stdout, fx.original(&healthy));
        let verify = run!("verify", ds).fails_with(3);
        let report = verify.stdout_str();
        assert!(
            report.contains(&format!("FAULT {}", file.display())),
            "cut at {cut}: {report}"
        );
    }
}

#[test]
fn a_flipped_bit_in_a_file_is_an_error_never_data() {
    let fx = fixture();
    let files = fx.files_in(0);
    let (good1, bad, good2) = (&files[0], &files[1], &files[2]);
    let ds = fx.copy("flipped");
    flip_bit(&containers(&ds)[0], bad.offset + bad.len / 2, 3);

    // Alone: no byte of the damaged file reaches stdout.
    let cat = run!("cat", ds, bpath(&bad.path)).fails_with(1).no_stdout();
    assert!(cat.stderr.contains("checksum mismatch"), "{}", cat.stderr);
    assert!(
        cat.stderr
            .contains(&String::from_utf8_lossy(&bad.path).into_owned()),
        "{}",
        cat.stderr
    );
    // Between two good files: exactly the good files' bytes, and a failing exit status.
    let mixed = run!(
        "cat",
        ds,
        bpath(&good1.path),
        bpath(&bad.path),
        bpath(&good2.path)
    )
    .fails_with(1);
    let mut expected = fx.original(&good1.path);
    expected.extend(fx.original(&good2.path));
    assert!(mixed.stdout == expected, "cat mixed good and bad bytes");

    // The library refuses the same way.
    let dataset = Dataset::open(&ds).unwrap();
    assert!(matches!(
        dataset.read(&bad.path),
        Err(sheaf::Error::ChecksumMismatch { .. })
    ));
    assert_eq!(
        &dataset.read(&good1.path).unwrap()[..],
        fx.original(&good1.path)
    );

    let verify = run!("verify", "--json", ds).fails_with(3).json();
    let faulty: Vec<&str> = verify["faults"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    assert_eq!(faulty, vec![String::from_utf8_lossy(&bad.path)]);

    // unfold refuses, and leaves no file with wrong (or no) bytes at the damaged path.
    let out = fx.tmp.path().join("out");
    run!("unfold", ds, out)
        .fails_with(1)
        .stderr_has("checksum mismatch");
    let restored = out.join(bpath(&bad.path));
    assert!(
        !restored.exists(),
        "unfold left {} behind ({} bytes) after refusing it",
        restored.display(),
        fs::metadata(&restored).map(|m| m.len()).unwrap_or(0)
    );
}

#[test]
fn verify_reports_every_damaged_entry_not_just_the_first() {
    let fx = fixture();
    let in0 = fx.files_in(0);
    let in2 = fx.files_in(2);
    let damaged = [&in0[3], &in0[in0.len() - 1], &in2[0]];
    let ds = fx.copy("many-faults");
    flip_bit(&containers(&ds)[0], damaged[0].offset, 0);
    flip_bit(
        &containers(&ds)[0],
        damaged[1].offset + damaged[1].len - 1,
        7,
    );
    flip_bit(&containers(&ds)[2], damaged[2].offset + 5, 1);

    let verify = run!("verify", "--json", ds).fails_with(3).json();
    let faults = verify["faults"].as_array().unwrap();
    let paths: BTreeSet<String> = faults
        .iter()
        .filter_map(|f| f["path"].as_str().map(str::to_owned))
        .collect();
    let expected: BTreeSet<String> = damaged
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    assert_eq!(paths, expected);
    // Besides the entries, only the whole-file checksums of the two damaged containers.
    for fault in faults.iter().filter(|f| f["path"].is_null()) {
        assert!(
            fault["problem"]
                .as_str()
                .unwrap()
                .contains("whole-file checksum"),
            "{fault}"
        );
    }
    assert_eq!(faults.len(), 3 + 2);
    assert_eq!(num(&verify, "containers"), containers(&ds).len() as u64);

    // The human report lists each one and counts them.
    let human = run!("verify", ds).fails_with(3).stdout_str();
    for path in &expected {
        assert!(human.contains(&format!("[{path}]")), "{human}");
    }
    assert!(human.contains("5 faults"), "{human}");
}

#[test]
fn a_flipped_bit_in_an_index_or_footer_is_a_checksum_error() {
    let fx = fixture();
    let victim = fx.files_in(1)[0].path.clone();

    let ds = fx.copy("index-flip");
    let file = containers(&ds)[1].clone();
    let footer = footer_of(&fs::read(&file).unwrap());
    flip_bit(&file, footer.index_offset + footer.index_len / 2, 4);
    run!("cat", ds, bpath(&victim))
        .fails_with(1)
        .no_stdout()
        .stderr_has("index checksum mismatch");
    let verify = run!("verify", ds).fails_with(3).stdout_str();
    assert!(verify.contains("index checksum mismatch"), "{verify}");

    let ds = fx.copy("footer-flip");
    let file = containers(&ds)[1].clone();
    let len = fs::metadata(&file).unwrap().len();
    flip_bit(&file, len - 64 + 33, 2); // data_len, covered by the footer checksum
    run!("cat", ds, bpath(&victim))
        .fails_with(1)
        .no_stdout()
        .stderr_has("footer checksum mismatch");

    let ds = fx.copy("catalog-flip");
    let cat_len = fs::metadata(catalog(&ds)).unwrap().len();
    flip_bit(&catalog(&ds), cat_len / 3, 5);
    for args in [vec!["ls"], vec!["stat", "ext"]] {
        let mut full: Vec<std::ffi::OsString> = vec![args[0].into(), ds.clone().into()];
        full.extend(args[1..].iter().map(Into::into));
        sheaf(full)
            .fails_with(1)
            .no_stdout()
            .stderr_has("catalog checksum mismatch");
    }
    // verify reports a damaged catalog as a fault it found.
    run!("verify", ds)
        .fails_with(3)
        .stdout_has("FAULT")
        .stdout_has("catalog checksum mismatch");
}

#[test]
fn foreign_files_and_wrong_magic_are_not_read_as_containers() {
    let fx = fixture();
    let victim = fx.files_in(0)[0].path.clone();

    let ds = fx.copy("magic");
    let file = containers(&ds)[0].clone();
    let mut bytes = fs::read(&file).unwrap();
    let n = bytes.len();
    bytes[n - 8..].copy_from_slice(b"NOTSHEAF");
    fs::write(&file, bytes).unwrap();
    run!("cat", ds, bpath(&victim))
        .fails_with(1)
        .no_stdout()
        .stderr_has("footer magic is missing");

    let ds = fx.copy("foreign");
    let file = containers(&ds)[0].clone();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.resize(fs::metadata(&file).unwrap().len() as usize, 0x42);
    fs::write(&file, png).unwrap();
    run!("cat", ds, bpath(&victim))
        .fails_with(1)
        .no_stdout()
        .stderr_has("not a sheaf container");
    let verify = run!("verify", ds).fails_with(3).stdout_str();
    assert!(verify.contains("not a sheaf container"), "{verify}");

    // A container put where the catalog should be is refused as the wrong kind of file.
    let ds = fx.copy("swapped");
    fs::copy(containers(&ds)[0].clone(), catalog(&ds)).unwrap();
    run!("ls", ds)
        .fails_with(1)
        .stderr_has("is a sheaf container, expected a catalog");
}

#[test]
fn a_file_from_a_future_format_version_asks_for_an_upgrade() {
    let fx = fixture();
    let victim = fx.files_in(0)[0].path.clone();
    let ds = fx.copy("future-container");
    let file = containers(&ds)[0].clone();
    let future = sheaf::format::FORMAT_VERSION + 1;
    rewrite_footer(&file, |f| f[40..42].copy_from_slice(&future.to_le_bytes()));
    assert_eq!(footer_of(&fs::read(&file).unwrap()).version, future);
    let cat = run!("cat", ds, bpath(&victim)).fails_with(1).no_stdout();
    assert!(
        cat.stderr.contains(&format!("format version {future}"))
            && cat.stderr.contains("upgrade sheaf"),
        "{}",
        cat.stderr
    );
    let verify = run!("verify", ds).fails_with(3).stdout_str();
    assert!(verify.contains("upgrade sheaf"), "{verify}");

    let ds = fx.copy("future-catalog");
    rewrite_footer(&catalog(&ds), |f| {
        f[40..42].copy_from_slice(&7u16.to_le_bytes())
    });
    run!("ls", ds).fails_with(1).stderr_has(&format!(
        "format version 7; this build reads versions 1 to {}",
        sheaf::format::FORMAT_VERSION
    ));
}

#[test]
fn a_missing_container_fails_its_own_files_only() {
    let fx = fixture();
    let lost = fx.files_in(1)[0].path.clone();
    let kept = fx.files_in(2)[0].path.clone();
    let ds = fx.copy("lost-container");
    let file = containers(&ds)[1].clone();
    fs::remove_file(&file).unwrap();

    let cat = run!("cat", ds, bpath(&lost)).fails_with(1).no_stdout();
    assert!(
        cat.stderr.contains(&name_of(&file)) && cat.stderr.contains("No such file"),
        "{}",
        cat.stderr
    );
    assert_eq!(
        run!("cat", ds, bpath(&kept)).success().stdout,
        fx.original(&kept)
    );
    let verify = run!("verify", "--json", ds).fails_with(3).json();
    let faults = verify["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{verify:#}");
    assert!(faults[0]["file"]
        .as_str()
        .unwrap()
        .ends_with(&name_of(&file)));
    // The containers after it were still checked.
    assert!(num(&verify, "checked") > 0);
}

#[test]
fn a_damaged_or_missing_catalog_stops_every_command_with_a_clear_message() {
    let fx = fixture();
    let ds = fx.copy("truncated-catalog");
    let len = fs::metadata(catalog(&ds)).unwrap().len();
    for cut in [len / 2, 10, 0] {
        fs::OpenOptions::new()
            .write(true)
            .open(catalog(&ds))
            .unwrap()
            .set_len(cut)
            .unwrap();
        let run = run!("ls", ds).fails_with(1).no_stdout();
        assert!(
            run.stderr.contains("corrupt") && run.stderr.contains(".sheaf/generations/"),
            "cut at {cut}: {}",
            run.stderr
        );
        run!("verify", ds)
            .fails_with(3)
            .stdout_has("FAULT")
            .stdout_has(".sheaf/generations/");
    }
    fs::remove_file(catalog(&ds)).unwrap();
    run!("cat", ds, EXTERNAL)
        .fails_with(1)
        .stderr_has("is not a sheaf dataset");
    let plain = fx.tmp.path().join("src");
    run!("ls", plain)
        .fails_with(1)
        .stderr_has("is not a sheaf dataset");
}

#[test]
fn paths_that_are_missing_or_climb_out_are_refused() {
    let fx = fixture();
    let ds = &fx.dst;
    run!("cat", ds, "no/such/file.txt")
        .fails_with(1)
        .no_stdout()
        .stderr_has("no such path");
    run!("stat", ds, "no/such/file.txt")
        .fails_with(1)
        .stderr_has("no such path");
    run!("ls", ds, "no/such/dir")
        .fails_with(1)
        .stderr_has("no such path");
    for climbing in ["../src/ext/big.bin", "ext/../ext/big.bin", "..", "ext/.."] {
        run!("cat", ds, climbing)
            .fails_with(1)
            .no_stdout()
            .stderr_has("`..` component");
    }
    run!("ls", ds, "../..")
        .fails_with(1)
        .stderr_has("invalid path");
    // An absolute path means the dataset root, not the machine's.
    run!("cat", ds, "/etc/passwd")
        .fails_with(1)
        .no_stdout()
        .stderr_has("no such path");
    assert_eq!(
        run!("cat", ds, format!("/{EXTERNAL}")).success().stdout,
        fx.original(EXTERNAL.as_bytes())
    );
}

#[test]
fn an_external_file_changed_after_the_fold_is_refused() {
    let fx = fixture();
    let original = fx.original(EXTERNAL.as_bytes());

    // Same length, one byte different: only the checksum can tell.
    let ds = fx.copy("edited");
    let mut edited = original.clone();
    edited[1234] ^= 0x20;
    fs::write(ds.join(EXTERNAL), &edited).unwrap();
    run!("cat", ds, EXTERNAL)
        .fails_with(1)
        .no_stdout()
        .stderr_has("checksum mismatch");
    // Through the link in the dataset, too.
    run!("cat", ds, "ext/link").fails_with(1).no_stdout();
    let verify = run!("verify", "--json", ds).fails_with(3).json();
    let faults = verify["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 1, "{verify:#}");
    assert_eq!(faults[0]["path"], EXTERNAL);
    assert!(faults[0]["file"].as_str().unwrap().ends_with(EXTERNAL));
    let out = fx.tmp.path().join("out");
    run!("unfold", ds, out).fails_with(1);
    assert!(
        !out.join(EXTERNAL).exists(),
        "unfold kept a copy that failed its checksum"
    );

    // Grown.
    let ds = fx.copy("grown");
    let mut grown = original.clone();
    grown.extend_from_slice(b"appended");
    fs::write(ds.join(EXTERNAL), &grown).unwrap();
    run!("cat", ds, EXTERNAL)
        .fails_with(1)
        .no_stdout()
        .stderr_has("changed since the fold");

    // Replaced by a symlink to identical bytes elsewhere: not followed.
    let ds = fx.copy("swapped-for-link");
    let elsewhere = fx.tmp.path().join("elsewhere.bin");
    fs::write(&elsewhere, &original).unwrap();
    fs::remove_file(ds.join(EXTERNAL)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, ds.join(EXTERNAL)).unwrap();
    run!("cat", ds, EXTERNAL).fails_with(1).no_stdout();
    run!("verify", ds).fails_with(3);

    // Deleted.
    let ds = fx.copy("deleted");
    fs::remove_file(ds.join(EXTERNAL)).unwrap();
    run!("cat", ds, EXTERNAL)
        .fails_with(1)
        .no_stdout()
        .stderr_has("No such file");
    run!("verify", ds).fails_with(3);
}

/// A large file kept external, folded with a threshold low enough to keep it so, and its bytes.
fn external_fixture(tmp: &Path) -> (PathBuf, Vec<u8>) {
    let src = tmp.join("src");
    let content = Rng::new(17).bytes(1_000_003);
    Tree::new(&src).file("clips/a.bin", &content);
    Tree::new(&src).file("small.txt", b"small");
    let ds = tmp.join("ds");
    fold(&src, &ds, &["--threshold", "64KiB"]).success();
    (ds, content)
}

#[test]
fn every_range_of_an_external_file_is_checked_however_it_is_read() {
    const CLIP: &[u8] = b"clips/a.bin";
    let tmp = tempdir();
    let (ds, content) = external_fixture(tmp.path());
    let dataset = Dataset::open(&ds).unwrap();
    let entry = dataset.stat(CLIP).unwrap();
    assert_eq!(entry.kind, EntryKind::External);
    assert_eq!(entry.block_sums.as_deref().map(<[u64]>::len), Some(16));
    let mut rng = Rng::new(5);
    for _ in 0..200 {
        let start = rng.below(content.len() as u64 + 10);
        let end = start + rng.below(300_000);
        let want = &content[(start as usize).min(content.len())..(end as usize).min(content.len())];
        assert_eq!(
            dataset.read_external_range(&entry, start..end).unwrap(),
            want
        );
    }

    // One byte changed in block 10 (bytes 655,360 to 720,895): reads that touch that block
    // fail, in any order and alone; reads elsewhere still serve checked bytes.
    let mut edited = content.clone();
    edited[700_000] ^= 1;
    fs::write(ds.join("clips/a.bin"), &edited).unwrap();
    let dataset = Dataset::open(&ds).unwrap();
    for range in [
        699_999..700_001,
        655_360..655_361,
        720_000..720_896,
        0..1_000_003,
    ] {
        let err = dataset
            .read_external_range(&entry, range.clone())
            .unwrap_err();
        assert!(
            matches!(err, sheaf::Error::ChecksumMismatch { .. }),
            "{range:?}: {err}"
        );
    }
    for range in [
        0..4096,
        655_359..655_360,
        720_896..720_900,
        999_000..1_000_003,
    ] {
        let want = &content[range.start as usize..range.end as usize];
        assert_eq!(dataset.read_external_range(&entry, range).unwrap(), want);
    }

    // Cut short: the blocks past the cut are refused, the ones before it still serve.
    fs::write(ds.join("clips/a.bin"), &content[..800_000]).unwrap();
    let dataset = Dataset::open(&ds).unwrap();
    let err = dataset
        .read_external_range(&entry, 990_000..1_000_003)
        .unwrap_err();
    assert!(err.to_string().contains("changed since the fold"), "{err}");
    let err = dataset
        .read_external_range(&entry, 786_000..790_000)
        .unwrap_err();
    assert!(err.to_string().contains("changed since the fold"), "{err}");
    assert_eq!(
        dataset.read_external_range(&entry, 10..20).unwrap(),
        &content[10..20]
    );
}

#[test]
fn an_index_whose_block_checksums_do_not_fit_its_rows_is_corrupt() {
    let tmp = tempdir();
    let (ds, _) = external_fixture(tmp.path());
    let dataset = Dataset::open(&ds).unwrap();
    let mut entry = dataset.stat(b"clips/a.bin").unwrap();
    let sums = entry.block_sums.clone().unwrap();
    // One checksum short of what a file of this length needs.
    entry.block_sums = Some(sums[..15].into());
    let container = tmp.path().join("short.sheaf");
    let mut writer = ContainerWriter::create(&container).unwrap();
    writer.add(entry.clone(), &[]).unwrap();
    writer.finish().unwrap();
    let err = sheaf::format::Container::open(&container).unwrap_err();
    assert!(err.to_string().contains("block checksums"), "{err}");
    // None at all is what an entry carried over from an older index has: it reads, checked
    // as a whole file.
    entry.block_sums = None;
    let mut writer = ContainerWriter::create(&container).unwrap();
    writer.add(entry, &[]).unwrap();
    writer.finish().unwrap();
    sheaf::format::Container::open(&container).unwrap();
}

/// One entry to put into a hand-built container.
fn entry(path: &[u8], kind: EntryKind, bytes: &[u8]) -> (Entry, Vec<u8>) {
    let mode = match kind {
        EntryKind::Dir => 0o040755,
        EntryKind::Symlink => 0o120777,
        _ => 0o100644,
    };
    let stored = if kind.is_stored() {
        bytes.to_vec()
    } else {
        Vec::new()
    };
    let entry = Entry {
        path: path.to_vec(),
        kind,
        offset: 0,
        stored_len: 0,
        len: bytes.len() as u64,
        codec: Codec::None,
        xxh3: if kind == EntryKind::Dir {
            0
        } else {
            xxhash_rust::xxh3::xxh3_64(bytes)
        },
        mode,
        mtime_ns: 1_000_000_000_000_000_000,
        block_sums: None,
    };
    (entry, stored)
}

/// Writes a one-container dataset at `root` from entries in any order, with the library's
/// own writer: what a hostile or buggy producer could hand a user.
fn write_dataset(root: &Path, mut entries: Vec<(Entry, Vec<u8>)>) {
    entries.sort_by(|a, b| sheaf::format::path::cmp_paths(&a.0.path, &b.0.path));
    let layout = Layout::new(root);
    fs::create_dir_all(layout.containers_dir()).unwrap();
    let name = container_name(0, 0);
    let mut writer = ContainerWriter::create(&layout.container(&name)).unwrap();
    for (e, stored) in entries {
        writer.add(e, &stored).unwrap();
    }
    let row = writer.finish().unwrap().catalog_row(&name, 0);
    let bytes = Catalog::new(vec![row], HashMap::new()).to_bytes().unwrap();
    fs::write(layout.catalog(), bytes).unwrap();
}

#[test]
fn hostile_paths_in_an_index_are_reported_and_never_written() {
    let tmp = tempdir();
    let victim = tmp.path().join("absolute-victim");
    let absolute = victim.to_str().unwrap().as_bytes().to_vec();
    let ds = tmp.path().join("hostile");
    write_dataset(
        &ds,
        vec![
            entry(b"ok.txt", EntryKind::File, b"fine\n"),
            entry(b"../escaped.txt", EntryKind::File, b"escaped\n"),
            entry(&absolute, EntryKind::File, b"absolute\n"),
            entry(b"nul\0byte", EntryKind::File, b"nul\n"),
            entry(b"dir/./dot", EntryKind::File, b"dot\n"),
        ],
    );

    let verify = run!("verify", "--json", ds).fails_with(3).json();
    let problems: Vec<String> = verify["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["problem"].as_str().unwrap().to_owned())
        .collect();
    let hostile = problems
        .iter()
        .filter(|p| p.contains("hostile path"))
        .count();
    assert_eq!(hostile, 4, "{problems:#?}");
    for needle in [
        "`..` component",
        "absolute path",
        "NUL byte",
        "`.` component",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "{needle}: {problems:#?}"
        );
    }

    let out = tmp.path().join("out");
    run!("unfold", ds, out)
        .fails_with(1)
        .stderr_has("hostile path")
        .stderr_has("g000000-c00000000.sheaf");
    assert!(!tmp.path().join("escaped.txt").exists());
    assert!(!victim.exists());
    let left: Vec<_> = fs::read_dir(&out).map(|d| d.collect()).unwrap_or_default();
    assert!(left.is_empty(), "unfold wrote {left:?} before refusing");

    // A container with a hostile index is refused as a whole, naming it; the hostile names
    // cannot even be asked for.
    run!("cat", ds, "ok.txt")
        .fails_with(1)
        .no_stdout()
        .stderr_has("hostile path");
    run!("cat", ds, "../escaped.txt")
        .fails_with(1)
        .no_stdout()
        .stderr_has("invalid path");
}

#[test]
fn unfold_never_writes_through_a_symlink_from_the_index() {
    let tmp = tempdir();
    let outside = Tree::new(tmp.path().join("outside"));
    let ds = tmp.path().join("hostile");
    // Valid paths: a link that climbs out of the output directory, and a file "below" it.
    write_dataset(
        &ds,
        vec![
            entry(b"a", EntryKind::Symlink, b"../outside"),
            entry(b"a/pwned", EntryKind::File, b"written through a link\n"),
            entry(b"b", EntryKind::Symlink, b"/etc"),
            entry(b"b/pwned", EntryKind::File, b"written through a link\n"),
        ],
    );
    let out = tmp.path().join("out");
    let run = run!("unfold", ds, out);
    assert!(
        fs::read_dir(&outside.root).unwrap().next().is_none(),
        "unfold wrote outside its output directory (exit {:?}, stderr {})",
        run.code,
        run.stderr
    );
    assert!(!Path::new("/etc/pwned").exists());
    assert_ne!(
        run.code,
        Some(0),
        "an unrestorable dataset must not report success"
    );
    // Readers do not follow the link out either.
    run!("cat", ds, "a/pwned").success();
    assert!(matches!(
        Dataset::open(&ds).unwrap().read(b"a"),
        Err(sheaf::Error::WrongKind { .. })
    ));
}

#[test]
fn a_catalog_naming_a_container_outside_its_directory_is_refused() {
    let tmp = tempdir();
    let ds = tmp.path().join("ds");
    write_dataset(&ds, vec![entry(b"x", EntryKind::File, b"x")]);
    let catalog_file = Layout::new(&ds).catalog();
    let good = Catalog::open(&catalog_file).unwrap();
    let mut row = good.rows()[0].clone();
    // The real container, reached by climbing out and back in.
    row.name = "../containers/g000000-c00000000.sheaf".into();
    fs::write(
        &catalog_file,
        Catalog::new(vec![row], HashMap::new()).to_bytes().unwrap(),
    )
    .unwrap();
    run!("cat", ds, "x")
        .fails_with(1)
        .no_stdout()
        .stderr_has("hostile container name");
}

fn stored_file(path: &str, offset: u64, content: &[u8], stored_len: u64) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind: EntryKind::File,
        offset,
        stored_len,
        len: stored_len,
        codec: Codec::None,
        xxh3: xxhash_rust::xxh3::xxh3_64(content),
        mode: 0o100644,
        mtime_ns: 0,
        block_sums: None,
    }
}

#[test]
fn index_entries_pointing_outside_the_container_data_are_refused_by_name() {
    let tmp = tempdir();
    let ds = tmp.path().join("outside");
    let body = b"hello, world";
    write_sealed_dataset(
        &ds,
        body,
        &[
            stored_file("a-sound", 0, b"hello", 5),
            // Runs past the data into the padding and the index.
            stored_file("b-into-the-index", 7, b"world and more", 14),
            // offset + stored_len overflows u64.
            stored_file("c-overflowing", u64::MAX - 3, b"x", 8),
        ],
    );
    assert_eq!(run!("cat", ds, "a-sound").success().stdout, b"hello");
    for path in ["b-into-the-index", "c-overflowing"] {
        run!("cat", ds, path)
            .fails_with(1)
            .no_stdout()
            .stderr_has("outside the 12 data bytes")
            .stderr_has("g000000-c00000000.sheaf");
    }
    let report = run!("verify", ds, "--json").fails_with(3).json();
    let faults = report["faults"].as_array().unwrap();
    let problems: Vec<&str> = faults
        .iter()
        .map(|f| f["problem"].as_str().unwrap())
        .collect();
    let outside = problems
        .iter()
        .filter(|p| p.contains("outside the 12 data bytes"))
        .count();
    assert_eq!(outside, 2, "{report:#}");
    // The layout the format fixes is judged too: bytes not where the previous entry's end.
    assert!(
        problems
            .iter()
            .any(|p| p.contains("where the previous entry's bytes end")),
        "{report:#}"
    );
}

#[test]
fn an_index_out_of_path_order_or_with_duplicates_is_refused_by_name() {
    let tmp = tempdir();
    for (label, names) in [
        ("unsorted", ["a", "c", "b"]),
        ("duplicate", ["a", "a", "b"]),
    ] {
        let ds = tmp.path().join(label);
        let entries: Vec<Entry> = names
            .iter()
            .map(|name| stored_file(name, 0, b"x", 1))
            .collect();
        write_sealed_dataset(&ds, b"x", &entries);
        run!("cat", ds, "a")
            .fails_with(1)
            .no_stdout()
            .stderr_has("out of path order")
            .stderr_has("g000000-c00000000.sheaf");
        run!("ls", ds).fails_with(1).stderr_has("out of path order");
        run!("verify", ds)
            .fails_with(3)
            .stdout_has("out of path order");
    }
}

#[test]
fn a_fifo_where_a_dataset_file_belongs_is_refused_without_blocking() {
    // Opening a FIFO waits for a writer: the catalog, a container or an external file replaced
    // by one must be a clear error, at once, from every command that reads it.
    let f = fixture();
    let limit = std::time::Duration::from_secs(20);
    let catalog_fifo = f.copy("fifo-catalog");
    fs::remove_file(catalog(&catalog_fifo)).unwrap();
    mkfifo(&catalog(&catalog_fifo));
    for command in ["ls", "verify"] {
        let run = sheaf_within([OsStr::new(command), catalog_fifo.as_os_str()], limit);
        assert_ne!(run.code, Some(0), "{command}: {}", run.stderr);
        assert!(
            run.stderr.contains("not a regular file"),
            "{command}: {}",
            run.stderr
        );
    }

    let container_fifo = f.copy("fifo-container");
    let victim = containers(&container_fifo)[0].clone();
    let first = f.files_in(0)[0].path.clone();
    fs::remove_file(&victim).unwrap();
    mkfifo(&victim);
    let run = sheaf_within(
        [
            OsStr::new("cat"),
            container_fifo.as_os_str(),
            OsStr::from_bytes(&first),
        ],
        limit,
    );
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains("not a regular file"), "{}", run.stderr);
    let run = sheaf_within([OsStr::new("verify"), container_fifo.as_os_str()], limit);
    assert_ne!(
        run.code,
        Some(0),
        "verify passed a FIFO container: {}",
        run.stdout_str()
    );

    let external_fifo = f.copy("fifo-external");
    let external = external_fifo.join(EXTERNAL);
    fs::remove_file(&external).unwrap();
    mkfifo(&external);
    let out = f.tmp.path().join("unfolded");
    for args in [
        vec![
            OsStr::new("cat"),
            external_fifo.as_os_str(),
            OsStr::new(EXTERNAL),
        ],
        vec![OsStr::new("verify"), external_fifo.as_os_str()],
        vec![
            OsStr::new("unfold"),
            external_fifo.as_os_str(),
            out.as_os_str(),
        ],
    ] {
        let run = sheaf_within(&args, limit);
        assert_ne!(run.code, Some(0), "{args:?}: {}", run.stdout_str());
    }
}

#[test]
fn an_external_file_is_never_read_through_a_symlinked_directory() {
    // The same bytes outside the dataset, reached through a symlinked parent directory: the
    // length and checksum would match, but the read must not leave the root.
    let f = fixture();
    let moved = f.copy("symlinked-parent");
    let outside = f.tmp.path().join("outside");
    fs::rename(moved.join("ext"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, moved.join("ext")).unwrap();
    assert_eq!(
        fs::read(moved.join(EXTERNAL)).unwrap(),
        f.original(EXTERNAL.as_bytes()),
        "the kernel follows the link to the same bytes"
    );
    let dataset = Dataset::open(&moved).unwrap();
    let refused = dataset.read(EXTERNAL.as_bytes()).unwrap_err();
    assert!(refused.to_string().contains("symlink"), "{refused}");
    run!("cat", moved, EXTERNAL)
        .fails_with(1)
        .stderr_has("symlink");
    // The dataset as folded still reads it.
    let intact = Dataset::open(&f.dst).unwrap();
    assert_eq!(
        intact.read(EXTERNAL.as_bytes()).unwrap().as_slice(),
        f.original(EXTERNAL.as_bytes())
    );
}

#[test]
fn verify_reports_a_tree_unfold_could_not_restore_and_unfold_writes_nothing() {
    let tmp = tempdir();
    // Each with its checksums right: a file under a file, a file under a symlink, and a file
    // whose directory has no entry.
    // (dataset name, its entries, the problem verify must name)
    type Case = (&'static str, Vec<(Entry, Vec<u8>)>, &'static str);
    let cases: [Case; 3] = [
        (
            "under-a-file",
            vec![
                entry(b"f", EntryKind::File, b"a file\n"),
                entry(b"f/x", EntryKind::File, b"x\n"),
            ],
            "not a directory",
        ),
        (
            "under-a-symlink",
            vec![
                entry(b"d", EntryKind::Dir, b""),
                entry(b"d/y", EntryKind::File, b"y\n"),
                entry(b"l", EntryKind::Symlink, b"d"),
                entry(b"l/z", EntryKind::File, b"z\n"),
            ],
            "not a directory",
        ),
        (
            "no-directory-entry",
            vec![entry(b"missing/w", EntryKind::File, b"w\n")],
            "has no entry",
        ),
    ];
    for (name, entries, problem) in cases {
        let ds = tmp.path().join(name);
        write_dataset(&ds, entries);
        let verify = run!("verify", ds, "--json").fails_with(3).json();
        let faults = verify["faults"].as_array().unwrap();
        assert!(
            faults
                .iter()
                .any(|f| f["problem"].as_str().unwrap().contains(problem)),
            "{name}: {verify:#}"
        );
        let out = tmp.path().join(format!("{name}-out"));
        run!("unfold", ds, out)
            .fails_with(1)
            .stderr_has("cannot be restored");
        assert!(!out.exists(), "{name}: unfold wrote before refusing");
    }
}

/// The layout rules formats/SPEC.md fixes beyond paths: one zstd frame per compressed entry,
/// directories without length, modes whose file type is their kind's. A reader refuses the
/// frames it would otherwise decode differently; `verify` reports each rule broken.
#[test]
fn entries_breaking_the_layout_rules_are_reported_and_extra_zstd_frames_refused() {
    let tmp = tempdir();
    let ds = tmp.path().join("layout");
    let (first, second) = (b"one frame, ".as_slice(), b"then another".as_slice());
    let mut two_frames = zstd::bulk::compress(first, 3).unwrap();
    two_frames.extend(zstd::bulk::compress(second, 3).unwrap());
    let whole = [first, second].concat();
    let plain = b"plain bytes";
    let mut body = two_frames.clone();
    body.extend_from_slice(plain);
    let mut entries = vec![
        Entry {
            path: b"a-dir".to_vec(),
            kind: EntryKind::Dir,
            offset: 0,
            stored_len: 0,
            len: 42,
            codec: Codec::None,
            xxh3: 0,
            mode: 0o040755,
            mtime_ns: 0,
            block_sums: None,
        },
        Entry {
            path: b"b-two-frames".to_vec(),
            kind: EntryKind::File,
            offset: 0,
            stored_len: two_frames.len() as u64,
            len: whole.len() as u64,
            codec: Codec::Zstd,
            xxh3: xxhash_rust::xxh3::xxh3_64(&whole),
            mode: 0o100644,
            mtime_ns: 0,
            block_sums: None,
        },
        stored_file(
            "c-file-with-a-dir-mode",
            two_frames.len() as u64,
            plain,
            plain.len() as u64,
        ),
    ];
    entries[2].mode = 0o040644;
    write_sealed_dataset(&ds, &body, &entries);
    run!("cat", ds, "b-two-frames")
        .fails_with(1)
        .no_stdout()
        .stderr_has("not exactly one zstd frame");
    let report = run!("verify", ds, "--json").fails_with(3).json();
    let problems: Vec<String> = report["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["problem"].as_str().unwrap().to_owned())
        .collect();
    for expected in [
        "a directory with a length (42)",
        "not exactly one zstd frame",
        "whose mode 40644 has another file type",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected:?} in {problems:#?}"
        );
    }
}
