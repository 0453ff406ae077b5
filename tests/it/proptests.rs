//! Properties over random input: random trees fold and come back exactly, in the order the spec
//! defines; damaged container bytes are an error or the original data, never other data.

use crate::util::{self, *};
use arrow_buffer::Buffer;
use proptest::prelude::*;
use sheaf::fold::{Compression, ContainerLimits, FoldOptions, Target};
use sheaf::format::{Container, ContainerWriter};
use sheaf::progress::Silent;
use sheaf::{Codec, Dataset, Entry, EntryKind};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Directory and file names are drawn from disjoint sets, so no path is both.
const DIRS: [&[u8]; 6] = [b"a", b"a-b", b"a.b", b"b", b"\xff", b"A"];
const NAMES: [&[u8]; 6] = [b"f", b"f.txt", b"f-1", b"\xe9f", b"z", b"f b"];

fn rel_path() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::sample::select(DIRS.to_vec()), 0..4)
        .prop_map(|dirs| dirs.into_iter().map(<[u8]>::to_vec).collect())
}

fn join(components: &[Vec<u8>]) -> Vec<u8> {
    components.join(&b'/')
}

#[derive(Debug, Clone)]
struct RandomTree {
    files: BTreeMap<Vec<u8>, Vec<u8>>,
    empty_dirs: BTreeSet<Vec<u8>>,
}

fn random_tree() -> impl Strategy<Value = RandomTree> {
    let file = (
        rel_path(),
        prop::sample::select(NAMES.to_vec()),
        prop::collection::vec(any::<u8>(), 0..400),
    );
    (
        prop::collection::vec(file, 1..40),
        prop::collection::vec(rel_path(), 0..3),
    )
        .prop_map(|(files, dirs)| RandomTree {
            files: files
                .into_iter()
                .map(|(mut dir, name, bytes)| {
                    dir.push(name.to_vec());
                    (join(&dir), bytes)
                })
                .collect(),
            empty_dirs: dirs
                .into_iter()
                .filter(|d| !d.is_empty())
                .map(|d| join(&d))
                .collect(),
        })
}

fn compression() -> impl Strategy<Value = Compression> {
    prop_oneof![
        Just(Compression::None),
        (1..4i32).prop_map(Compression::Zstd),
        (1..4i32).prop_map(Compression::Auto),
    ]
}

/// Path order as the spec words it: component by component, bytewise, shorter prefix first.
fn spec_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let parts = |p: &[u8]| {
        p.split(|&c| c == b'/')
            .map(<[u8]>::to_vec)
            .collect::<Vec<_>>()
    };
    parts(a).cmp(&parts(b))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn random_trees_fold_and_come_back_exactly(
        tree in random_tree(),
        threshold in 1u64..400,
        container_bytes in 64u64..4000,
        max_entries in 1usize..25,
        compression in compression(),
    ) {
        let tmp = tempdir();
        let t = Tree::new(tmp.path().join("src"));
        for (path, bytes) in &tree.files {
            t.file(path, bytes);
        }
        for dir in &tree.empty_dirs {
            t.dir(dir);
        }
        let before = snapshot(&t.root, false);
        let dst = tmp.path().join("dst");
        let options = FoldOptions {
            threshold,
            limits: ContainerLimits { bytes: container_bytes, entries: max_entries },
            compression,
            remove_originals: false,
        };
        let target = Target::NewRoot { src: t.root.clone(), dst: dst.clone() };
        let summary = sheaf::fold::fold(&target, &options, &Silent).expect("fold");
        let external = tree.files.values().filter(|b| b.len() as u64 >= threshold).count();
        prop_assert_eq!(summary.files_kept as usize, external);
        prop_assert_eq!(summary.files_folded as usize, tree.files.len() - external);

        let dataset = Dataset::open(&dst).expect("open");
        for row in dataset.catalog().rows() {
            prop_assert!(row.entry_count as usize <= max_entries);
        }
        for (path, bytes) in &tree.files {
            let read = dataset.read(path).expect("read");
            prop_assert_eq!(&read[..], bytes.as_slice());
            let kind = dataset.stat(path).unwrap().kind;
            let expected = if (bytes.len() as u64) < threshold { EntryKind::File } else { EntryKind::External };
            prop_assert_eq!(kind, expected);
            // However the user spells the path, it is the same file.
            let mut spelled = b"/./".to_vec();
            spelled.extend(path.iter().flat_map(|&c| if c == b'/' { b"//".to_vec() } else { vec![c] }));
            prop_assert_eq!(&dataset.read(&spelled).expect("read respelled")[..], bytes.as_slice());
        }

        // Walk order is the spec's path order, and every directory is there.
        let walked: Vec<Vec<u8>> = dataset.walk().map(|i| i.expect("walk").1.path).collect();
        let mut sorted = walked.clone();
        sorted.sort_by(|a, b| spec_order(a, b));
        sorted.dedup();
        prop_assert_eq!(&walked, &sorted);
        let expected: BTreeSet<Vec<u8>> = before.keys().cloned().collect();
        prop_assert_eq!(walked.into_iter().collect::<BTreeSet<_>>(), expected);

        let out = tmp.path().join("out");
        sheaf::read::unfold::unfold(&dataset, &out, &Silent).expect("unfold");
        assert_same_tree(&before, &snapshot(&out, false));
    }
}

/// A container built once: bytes, the original content of every stored entry, and its data
/// and padding ranges.
struct Sample {
    bytes: Vec<u8>,
    originals: BTreeMap<Vec<u8>, Vec<u8>>,
    data_len: u64,
    index_offset: u64,
}

fn build_sample(codec: Codec) -> Sample {
    let tmp = tempdir();
    let file = tmp.path().join("sample.sheaf");
    let mut writer = ContainerWriter::create(&file).unwrap();
    let mut rng = util::Rng::new(codec as u64 + 10);
    let mut originals = BTreeMap::new();
    let mut paths: Vec<(Vec<u8>, EntryKind)> = (0..20)
        .map(|i| (format!("d/f{i:02}").into_bytes(), EntryKind::File))
        .collect();
    paths.push((b"d".to_vec(), EntryKind::Dir));
    paths.push((b"d/link".to_vec(), EntryKind::Symlink));
    paths.push((b"d/zz-large".to_vec(), EntryKind::External));
    paths.sort_by(|a, b| sheaf::format::path::cmp_paths(&a.0, &b.0));
    for (path, kind) in paths {
        let original = match kind {
            EntryKind::File => {
                let len = rng.below(300) as usize;
                content(&mut rng, len)
            }
            EntryKind::Symlink => b"f00".to_vec(),
            _ => Vec::new(),
        };
        let stored = match (kind, codec) {
            (EntryKind::File, Codec::Zstd) => zstd::bulk::compress(&original, 3).unwrap(),
            _ => original.clone(),
        };
        let entry = Entry {
            path: path.clone(),
            kind,
            offset: 0,
            stored_len: 0,
            len: original.len() as u64,
            codec: if kind == EntryKind::File {
                codec
            } else {
                Codec::None
            },
            xxh3: xxhash_rust::xxh3::xxh3_64(&original),
            mode: 0o100644,
            mtime_ns: 0,
            block_sums: None,
        };
        writer
            .add(entry, if kind.is_stored() { &stored } else { &[] })
            .unwrap();
        if kind.is_stored() {
            originals.insert(path, original);
        }
    }
    let written = writer.finish().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    Sample {
        bytes,
        originals,
        data_len: written.footer.data_len,
        index_offset: written.footer.index_offset,
    }
}

fn sample(codec: Codec) -> &'static Sample {
    static PLAIN: OnceLock<Sample> = OnceLock::new();
    static ZSTD: OnceLock<Sample> = OnceLock::new();
    match codec {
        Codec::None => PLAIN.get_or_init(|| build_sample(Codec::None)),
        Codec::Zstd => ZSTD.get_or_init(|| build_sample(Codec::Zstd)),
    }
}

/// Opens `bytes` as a container and reads every stored row. Returns how many rows came back
/// as data, after checking each equals the original; `None` when the container did not open.
fn read_all(
    bytes: Vec<u8>,
    originals: &BTreeMap<Vec<u8>, Vec<u8>>,
) -> Result<Option<usize>, TestCaseError> {
    let Ok(container) = Container::from_buffer(Buffer::from_vec(bytes), PathBuf::from("damaged"))
    else {
        return Ok(None);
    };
    let mut served = 0;
    for row in 0..container.index().len() {
        let entry = container.index().entry(row);
        if !entry.kind.is_stored() {
            continue;
        }
        // Copied and checked in one pass into memory of our own, the row passes or fails
        // exactly as it does read the usual way, and never hands over wrong bytes either.
        // Touching the row's pages reads nothing outside the data, whatever the index says.
        container.fault_in_row(row);
        let mut placed = vec![0u8; container.row_len(row) as usize];
        let placed_ok = container.read_row_to(row, &mut placed).is_ok();
        let original = originals.get(&entry.path);
        if let Ok(bytes) = container.read_row(row) {
            prop_assert_eq!(
                Some(&bytes.to_vec()),
                original,
                "wrong bytes served for {:?}",
                entry.path
            );
            prop_assert!(placed_ok && Some(&placed) == original, "{:?}", entry.path);
            served += 1;
        } else {
            prop_assert!(!placed_ok, "{:?} placed but not read", entry.path);
        }
    }
    Ok(Some(served))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn a_flipped_bit_anywhere_is_detected_or_harmless(
        zstd in any::<bool>(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let s = sample(if zstd { Codec::Zstd } else { Codec::None });
        let offset = at.index(s.bytes.len());
        let mut bytes = s.bytes.clone();
        bytes[offset] ^= 1 << bit;
        let stored = s.originals.len();
        match read_all(bytes, &s.originals)? {
            None => {}
            Some(served) if served < stored => {}
            Some(_) => {
                // Every entry came back intact: the flip must have hit the zero padding before
                // the index, or (zstd) a frame bit that does not change what it decodes to.
                let padding = (s.data_len..s.index_offset).contains(&(offset as u64));
                prop_assert!(padding || zstd, "undetected flip at {} (bit {})", offset, bit);
            }
        }
    }

    #[test]
    fn every_truncation_is_refused(zstd in any::<bool>(), at in any::<prop::sample::Index>()) {
        let s = sample(if zstd { Codec::Zstd } else { Codec::None });
        let cut = at.index(s.bytes.len());
        let opened = Container::from_buffer(Buffer::from_vec(s.bytes[..cut].to_vec()), PathBuf::from("cut"));
        prop_assert!(opened.is_err(), "a container cut at {} opened", cut);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parsers(tail in prop::collection::vec(any::<u8>(), 0..600), keep_magic in any::<bool>()) {
        let mut bytes = tail;
        if keep_magic {
            bytes.extend_from_slice(&sample(Codec::None).bytes[sample(Codec::None).bytes.len() - 64..]);
        }
        // Must return (with no rows or some), not panic or read out of bounds.
        let _ = sheaf::format::parse_untrusted(&bytes);
    }
}

#[test]
fn the_intact_samples_read_back_completely() {
    for codec in [Codec::None, Codec::Zstd] {
        let s = sample(codec);
        let served = read_all(s.bytes.clone(), &s.originals).unwrap();
        assert_eq!(served, Some(s.originals.len()), "{codec:?}");
    }
}
