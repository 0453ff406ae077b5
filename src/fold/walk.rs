//! Walking the source: a local tree depth first in path order, streamed (every entry's
//! metadata via lstat, symlinks never followed), or every object of a store, one listing per
//! directory.

use crate::error::{Error, IoContext, Result};
use crate::format::path::{cmp_paths, is_inside, SEPARATOR};
use crate::format::EntryKind;
use crate::layout::SHEAF_DIR;
use crate::store::{ObjectInfo, Store};
use crate::time::mtime_ns;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// One entry of the source tree, before its bytes are read.
#[derive(Clone, Debug)]
pub struct SourceEntry {
    /// Path relative to the source root.
    pub path: Vec<u8>,
    /// File, directory, symlink; regular files at or above the threshold are `External`.
    pub kind: EntryKind,
    /// Size from lstat.
    pub len: u64,
    /// `st_mode`.
    pub mode: u32,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// How many leading bytes of `path` are a prefix the dataset adds (an append's `--prefix
    /// P` as `P/`): the entry's path in the source is what follows them.
    pub prefix_len: usize,
}

impl SourceEntry {
    /// A small file of `len` bytes, mode 0644, time 0: for tests.
    #[cfg(test)]
    pub fn test_file(path: &str, len: u64) -> SourceEntry {
        SourceEntry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File,
            len,
            mode: 0o100644,
            mtime_ns: 0,
            prefix_len: 0,
        }
    }

    /// The entry's path relative to the source root.
    pub fn source_path(&self) -> &[u8] {
        &self.path[self.prefix_len..]
    }
}

/// What the walk yields, in path order.
#[derive(Debug)]
pub enum Walked {
    Entry(SourceEntry),
    /// A socket, FIFO or device node: it holds no data and is not folded.
    Special(PathBuf),
}

/// A contiguous run of the path order, `from` (inclusive) to `until` (exclusive), either end
/// open: the share of a tree one part of a planned fold walks. Every entry of a tree lies in
/// exactly one of the runs a plan cuts it into.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathRange {
    pub from: Option<Vec<u8>>,
    pub until: Option<Vec<u8>>,
}

/// Where a walked path lies relative to a [`PathRange`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Before the range, and so is everything below it: not even listed.
    Before,
    /// Before the range, but the range starts inside this directory: listed, not yielded.
    Above,
    Inside,
    /// At or after the range's end: so is everything the walk would yield next.
    After,
}

impl PathRange {
    /// The whole tree.
    pub const ALL: PathRange = PathRange {
        from: None,
        until: None,
    };

    pub fn place(&self, path: &[u8], is_dir: bool) -> Place {
        if let Some(until) = &self.until {
            if cmp_paths(path, until).is_ge() {
                return Place::After;
            }
        }
        match &self.from {
            Some(from) if cmp_paths(path, from).is_lt() => match is_dir && is_inside(from, path) {
                true => Place::Above,
                false => Place::Before,
            },
            _ => Place::Inside,
        }
    }
}

/// Walks a local tree depth first, yielding its entries in the index's path order (see
/// `cmp_paths`) without collecting them: memory holds the names of the directories on the
/// current path only, so it grows with the widest directory, not with the tree. Every entry is
/// `lstat`ed (symlinks are never followed). The top-level `.sheaf` directory is skipped when
/// `skip_sheaf_dir` (an in-place fold's own files); a fold to a new root refuses a source
/// holding one before it walks.
pub struct SortedWalk {
    threshold: u64,
    skip_sheaf_dir: bool,
    range: PathRange,
    /// One level per directory on the current path: its children not yet yielded.
    levels: Vec<Level>,
}

struct Level {
    /// Path of the directory relative to the root (empty for the root).
    rel: Vec<u8>,
    /// Children in byte order of their names, the next one last.
    pending: Vec<(OsString, fs::DirEntry)>,
}

impl SortedWalk {
    pub fn new(root: &Path, threshold: u64, skip_sheaf_dir: bool) -> Result<SortedWalk> {
        Self::within(root, threshold, skip_sheaf_dir, PathRange::ALL)
    }

    /// Walks only the entries in `range`, listing no directory wholly outside it.
    pub fn within(
        root: &Path,
        threshold: u64,
        skip_sheaf_dir: bool,
        range: PathRange,
    ) -> Result<SortedWalk> {
        Ok(SortedWalk {
            threshold,
            skip_sheaf_dir,
            range,
            levels: vec![Level::read(root, Vec::new())?],
        })
    }

    fn entry(&mut self, name: OsString, child: fs::DirEntry) -> Result<Option<Walked>> {
        let abs = child.path();
        let parent = &self.levels.last().expect("a level is open").rel;
        let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
        path.extend_from_slice(parent);
        if !path.is_empty() {
            path.push(SEPARATOR);
        }
        path.extend_from_slice(name.as_bytes());
        if self.levels.len() == 1 && self.skip_sheaf_dir && is_sheaf_dir_or_below(&path) {
            return Ok(None);
        }
        if self.range != PathRange::ALL {
            // The directory entry's own type (no stat) is enough to place it.
            let is_dir = child.file_type().ctx("stat", &abs)?.is_dir();
            match self.range.place(&path, is_dir) {
                Place::Inside => {}
                Place::Before => return Ok(None),
                Place::Above => {
                    self.levels.push(Level::read(&abs, path)?);
                    return Ok(None);
                }
                Place::After => {
                    self.levels.clear();
                    return Ok(None);
                }
            }
        }
        // `DirEntry::metadata` is an lstat relative to the open directory.
        let meta = child.metadata().ctx("stat", &abs)?;
        let Some(kind) = classify(&meta, self.threshold) else {
            return Ok(Some(Walked::Special(abs)));
        };
        if kind == EntryKind::Dir {
            self.levels.push(Level::read(&abs, path.clone())?);
        }
        Ok(Some(Walked::Entry(SourceEntry {
            path,
            kind,
            len: if kind == EntryKind::Dir {
                0
            } else {
                meta.len()
            },
            mode: meta.mode(),
            mtime_ns: mtime_ns(&meta),
            prefix_len: 0,
        })))
    }
}

impl Level {
    fn read(dir: &Path, rel: Vec<u8>) -> Result<Level> {
        let mut pending = Vec::new();
        for child in fs::read_dir(dir).ctx("read directory", dir)? {
            let child = child.ctx("read directory", dir)?;
            pending.push((child.file_name(), child));
        }
        // Names never hold `/`, so byte order of names within one directory, depth first,
        // is the index's path order. Reversed: the next child is popped from the end.
        pending.sort_unstable_by(|a, b| b.0.as_bytes().cmp(a.0.as_bytes()));
        Ok(Level { rel, pending })
    }
}

impl Iterator for SortedWalk {
    type Item = Result<Walked>;

    fn next(&mut self) -> Option<Result<Walked>> {
        loop {
            let level = self.levels.last_mut()?;
            let Some((name, child)) = level.pending.pop() else {
                self.levels.pop();
                continue;
            };
            match self.entry(name, child) {
                Ok(Some(walked)) => return Some(Ok(walked)),
                Ok(None) => continue,
                Err(e) => {
                    // An error ends the walk.
                    self.levels.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// The children of directory `dir` (a path relative to the source's root, empty for the root)
/// in path order, each with whether it is a directory: one listing, nothing below it. The
/// top-level `.sheaf` is left out. What a planner lists to cut a tree it does not walk whole.
pub fn list_level(
    store: &dyn Store,
    local_root: Option<&Path>,
    dir: &[u8],
) -> Result<Vec<(Vec<u8>, bool)>> {
    let mut children = match local_root {
        Some(root) => {
            let abs = match dir.is_empty() {
                true => root.to_path_buf(),
                false => root.join(OsStr::from_bytes(dir)),
            };
            let mut listed = Vec::new();
            for child in fs::read_dir(&abs).ctx("read directory", &abs)? {
                let child = child.ctx("read directory", &abs)?;
                let is_dir = child.file_type().ctx("stat", child.path())?.is_dir();
                let mut path = dir.to_vec();
                if !path.is_empty() {
                    path.push(SEPARATOR);
                }
                path.extend_from_slice(child.file_name().as_bytes());
                listed.push((path, is_dir));
            }
            listed
        }
        None => {
            let key = std::str::from_utf8(dir).map_err(|_| Error::Refused {
                path: store.uri("").into(),
                reason: "a store's keys are UTF-8".into(),
            })?;
            read_store_level(store, key)?
                .into_iter()
                .map(|child| {
                    let is_dir = matches!(child, StoreChild::Dir(_));
                    (child.key().as_bytes().to_vec(), is_dir)
                })
                .collect()
        }
    };
    children.retain(|(path, _)| !is_sheaf_dir_or_below(path));
    children.sort_unstable_by(|a, b| cmp_paths(&a.0, &b.0));
    Ok(children)
}

fn is_sheaf_dir_or_below(path: &[u8]) -> bool {
    let top = SHEAF_DIR.as_bytes();
    path.starts_with(top) && (path.len() == top.len() || path[top.len()] == SEPARATOR)
}

fn classify(meta: &Metadata, threshold: u64) -> Option<EntryKind> {
    let ty = meta.file_type();
    if ty.is_dir() {
        Some(EntryKind::Dir)
    } else if ty.is_symlink() {
        Some(EntryKind::Symlink)
    } else if ty.is_file() {
        Some(if meta.len() < threshold {
            EntryKind::File
        } else {
            EntryKind::External
        })
    } else {
        debug_assert!(
            ty.is_fifo() || ty.is_socket() || ty.is_block_device() || ty.is_char_device()
        );
        None
    }
}

/// Walks every object of a store as a tree, one directory level per listing, yielding entries
/// in the index's path order as [`SortedWalk`] does: memory holds the listings of the
/// directories on the current path, not the whole store. Objects are files (classified by
/// `threshold`), every key prefix ending in `/` is a directory. Object stores keep no modes or
/// symlinks, so files get mode 0644 and directories 0755. The top-level `.sheaf` prefix is
/// skipped when `skip_sheaf_dir` (an in-place fold's own objects) and refused, before anything
/// is yielded, otherwise.
pub struct StoreWalk<'a> {
    store: &'a dyn Store,
    threshold: u64,
    range: PathRange,
    /// One level per directory on the current path: its children not yet yielded.
    levels: Vec<Vec<StoreChild>>,
}

/// An object or a prefix directly in a listed directory.
enum StoreChild {
    Object(ObjectInfo),
    Dir(String),
}

impl StoreChild {
    fn key(&self) -> &str {
        match self {
            StoreChild::Object(o) => &o.key,
            StoreChild::Dir(key) => key,
        }
    }
}

impl<'a> StoreWalk<'a> {
    pub fn new(
        store: &'a dyn Store,
        threshold: u64,
        skip_sheaf_dir: bool,
    ) -> Result<StoreWalk<'a>> {
        Self::within(store, threshold, skip_sheaf_dir, PathRange::ALL)
    }

    /// Walks only the entries in `range`, listing no directory wholly outside it.
    pub fn within(
        store: &'a dyn Store,
        threshold: u64,
        skip_sheaf_dir: bool,
        range: PathRange,
    ) -> Result<StoreWalk<'a>> {
        let mut root = read_store_level(store, "")?;
        let reserved = |c: &StoreChild| is_sheaf_dir_or_below(c.key().as_bytes());
        if skip_sheaf_dir {
            root.retain(|c| !reserved(c));
        } else if root.iter().any(reserved) {
            return Err(Error::Refused {
                path: store.uri("").into(),
                reason:
                    "the source holds a top-level `.sheaf`, a name sheaf reserves for its own files"
                        .into(),
            });
        }
        Ok(StoreWalk {
            store,
            threshold,
            range,
            levels: vec![root],
        })
    }

    fn entry(&mut self, child: StoreChild) -> Result<SourceEntry> {
        Ok(match child {
            StoreChild::Object(object) => SourceEntry {
                kind: if object.len < self.threshold {
                    EntryKind::File
                } else {
                    EntryKind::External
                },
                path: object.key.into_bytes(),
                len: object.len,
                mode: 0o100644,
                mtime_ns: object.mtime_ns,
                prefix_len: 0,
            },
            StoreChild::Dir(key) => {
                self.levels.push(read_store_level(self.store, &key)?);
                SourceEntry {
                    path: key.into_bytes(),
                    kind: EntryKind::Dir,
                    len: 0,
                    mode: 0o040755,
                    mtime_ns: 0,
                    prefix_len: 0,
                }
            }
        })
    }
}

/// The children of the store directory `dir`, in reverse byte order of their names (the next
/// one last). A name that is both an object and a prefix cannot be a file and a directory at
/// once, so it is refused.
fn read_store_level(store: &dyn Store, dir: &str) -> Result<Vec<StoreChild>> {
    let listing = store.list_dir(dir)?;
    let mut children: Vec<StoreChild> = listing
        .objects
        .into_iter()
        .map(StoreChild::Object)
        .chain(listing.dirs.into_iter().map(StoreChild::Dir))
        .collect();
    children.sort_unstable_by(|a, b| b.key().cmp(a.key()));
    if let Some(pair) = children.windows(2).find(|w| w[0].key() == w[1].key()) {
        return Err(Error::Refused {
            path: store.uri(pair[0].key()).into(),
            reason: "is both an object and a prefix of other objects (a file and a directory)"
                .into(),
        });
    }
    Ok(children)
}

impl Iterator for StoreWalk<'_> {
    type Item = Result<Walked>;

    fn next(&mut self) -> Option<Result<Walked>> {
        loop {
            let level = self.levels.last_mut()?;
            let Some(child) = level.pop() else {
                self.levels.pop();
                continue;
            };
            let is_dir = matches!(child, StoreChild::Dir(_));
            match self.range.place(child.key().as_bytes(), is_dir) {
                Place::Inside => {}
                Place::Before => continue,
                Place::Above => match read_store_level(self.store, child.key()) {
                    Ok(level) => {
                        self.levels.push(level);
                        continue;
                    }
                    Err(e) => {
                        self.levels.clear();
                        return Some(Err(e));
                    }
                },
                Place::After => {
                    self.levels.clear();
                    return None;
                }
            }
            let walked = self.entry(child).map(Walked::Entry);
            if walked.is_err() {
                // An error ends the walk.
                self.levels.clear();
            }
            return Some(walked);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::path::cmp_paths;

    fn walked(root: &Path, skip_sheaf_dir: bool) -> (Vec<String>, Vec<PathBuf>) {
        let (mut entries, mut specials) = (Vec::new(), Vec::new());
        for item in SortedWalk::new(root, 100, skip_sheaf_dir).unwrap() {
            match item.unwrap() {
                Walked::Entry(e) => entries.push(String::from_utf8(e.path).unwrap()),
                Walked::Special(p) => specials.push(p),
            }
        }
        (entries, specials)
    }

    /// A tree whose path order differs from byte order ("a/b0" before "a-b"), with an empty
    /// directory (a/c), a file over the walks' threshold of 100 (big), a top-level `.sheaf` and
    /// the `extra_dirs` and `extra_files` given.
    fn make_tree(root: &Path, extra_dirs: &[&str], extra_files: &[&str]) {
        let dirs = ["a/b", "a-b", "a/c", ".sheaf/containers"];
        for dir in dirs.iter().chain(extra_dirs) {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        let files = ["a.txt", "a/b/x", "a-b/y", "a/b0", "b"];
        for file in files.iter().chain(extra_files) {
            fs::write(root.join(file), file).unwrap();
        }
        fs::write(root.join("big"), [0u8; 200]).unwrap();
    }

    #[test]
    fn the_walk_yields_every_entry_in_index_order_without_sorting() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        make_tree(
            root,
            &["sub/.sheaf", "z"],
            &["\u{e9}", "sub/.sheaf/f", ".sheaf/containers/c"],
        );
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        let fifo = root.join("z/fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);

        let (entries, specials) = walked(root, true);
        let mut sorted = entries.clone();
        sorted.sort_by(|a, b| cmp_paths(a.as_bytes(), b.as_bytes()));
        assert_eq!(entries, sorted, "yielded in index order");
        assert_eq!(
            entries,
            [
                "a",
                "a/b",
                "a/b/x",
                "a/b0",
                "a/c",
                "a-b",
                "a-b/y",
                "a.txt",
                "b",
                "big",
                "link",
                "sub",
                "sub/.sheaf",
                "sub/.sheaf/f",
                "z",
                "\u{e9}"
            ]
        );
        assert_eq!(specials, vec![fifo]);
        let (with_own_dir, _) = walked(root, false);
        assert!(with_own_dir.contains(&".sheaf/containers".to_owned()));
    }

    #[test]
    fn files_at_the_threshold_are_external_and_links_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("small"), [0u8; 99]).unwrap();
        fs::write(tmp.path().join("large"), [0u8; 100]).unwrap();
        std::os::unix::fs::symlink("/", tmp.path().join("root-link")).unwrap();
        let kinds: Vec<(Vec<u8>, EntryKind)> = SortedWalk::new(tmp.path(), 100, false)
            .unwrap()
            .map(|item| match item.unwrap() {
                Walked::Entry(e) => (e.path, e.kind),
                Walked::Special(p) => panic!("{p:?}"),
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (b"large".to_vec(), EntryKind::External),
                (b"root-link".to_vec(), EntryKind::Symlink),
                (b"small".to_vec(), EntryKind::File),
            ]
        );
    }

    fn store_walked(store: &dyn Store, skip_sheaf_dir: bool) -> Result<Vec<(String, EntryKind)>> {
        StoreWalk::new(store, 100, skip_sheaf_dir)?
            .map(|item| match item? {
                Walked::Entry(e) => Ok((String::from_utf8(e.path).unwrap(), e.kind)),
                Walked::Special(p) => panic!("a store has no special files: {p:?}"),
            })
            .collect()
    }

    #[test]
    fn a_store_walk_yields_the_tree_in_index_order_one_level_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        make_tree(root, &[], &[".sheaf/containers/c"]);
        let store = crate::store::LocalStore::new(root);
        let entries = store_walked(&store, true).unwrap();
        let paths: Vec<&str> = entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["a", "a/b", "a/b/x", "a/b0", "a/c", "a-b", "a-b/y", "a.txt", "b", "big"]
        );
        let kind = |p: &str| entries.iter().find(|(q, _)| q == p).unwrap().1;
        assert_eq!(kind("a/c"), EntryKind::Dir);
        assert_eq!(kind("b"), EntryKind::File);
        assert_eq!(kind("big"), EntryKind::External);
        // The same walk through the levels a full listing gives (the trait's default), which
        // cannot see the empty directory.
        let listed = memory_store_of(store.list("").unwrap());
        let mut without_empty = entries.clone();
        without_empty.retain(|(p, _)| p != "a/c");
        assert_eq!(store_walked(&listed, true).unwrap(), without_empty);
        let refused = store_walked(&store, false).unwrap_err();
        assert!(refused.to_string().contains("reserves"), "{refused}");
    }

    fn paths_of(walk: impl Iterator<Item = Result<Walked>>) -> Vec<String> {
        walk.map(|item| match item.unwrap() {
            Walked::Entry(e) => String::from_utf8(e.path).unwrap(),
            Walked::Special(p) => panic!("no special files here: {p:?}"),
        })
        .collect()
    }

    #[test]
    fn ranges_cut_at_any_paths_tile_both_walks_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        make_tree(
            root,
            &["a/b/deep/er", "z"],
            &["a/b/deep/er/f", "a/b/deep/g"],
        );
        let store = crate::store::LocalStore::new(root);
        let whole = paths_of(SortedWalk::new(root, 100, true).unwrap());
        assert_eq!(whole, paths_of(StoreWalk::new(&store, 100, true).unwrap()));
        let bound = |i: usize| whole.get(i).map(|p| p.as_bytes().to_vec());
        // Every pair of cut points (and the open ends) splits the walk into three runs that
        // put every entry in exactly one of them, in order.
        for first in 1..whole.len() {
            for second in first + 1..=whole.len() {
                let mut ranges = vec![
                    PathRange {
                        from: None,
                        until: bound(first),
                    },
                    PathRange {
                        from: bound(first),
                        until: bound(second),
                    },
                ];
                if second < whole.len() {
                    ranges.push(PathRange {
                        from: bound(second),
                        until: None,
                    });
                }
                let mut local = Vec::new();
                let mut stored = Vec::new();
                for range in ranges {
                    local.extend(paths_of(
                        SortedWalk::within(root, 100, true, range.clone()).unwrap(),
                    ));
                    stored.extend(paths_of(
                        StoreWalk::within(&store, 100, true, range).unwrap(),
                    ));
                }
                assert_eq!(local, whole, "cut at {first} and {second}");
                assert_eq!(stored, whole, "cut at {first} and {second}");
            }
        }
    }

    #[test]
    fn a_store_name_that_is_both_an_object_and_a_prefix_is_refused() {
        let object = |key: &str| ObjectInfo {
            key: key.into(),
            len: 1,
            mtime_ns: 0,
        };
        let store = memory_store_of(vec![object("a"), object("a/b"), object("c")]);
        let refused = store_walked(&store, false).unwrap_err();
        assert!(
            refused.to_string().contains("both an object and a prefix"),
            "{refused}"
        );
    }

    /// A store in memory holding objects of these keys, lengths and times.
    fn memory_store_of(objects: Vec<ObjectInfo>) -> crate::store::memory::MemoryStore {
        let store = crate::store::memory::MemoryStore::new();
        for object in objects {
            store.put_with_mtime(&object.key, vec![0; object.len as usize], object.mtime_ns);
        }
        store
    }

    #[test]
    fn an_unreadable_directory_ends_the_walk_with_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(SortedWalk::new(&tmp.path().join("missing"), 100, false).is_err());
    }
}
