//! Generations (format version 3): a dataset is a sequence of numbered, immutable snapshots,
//! each one catalog file under `.sheaf/generations/`, committed by creating a name that did not
//! exist (put-if-absent), never by overwriting a shared pointer.
//!
//! See formats/SPEC.md, "Generations".

use super::catalog::{Catalog, RootMeta, META_ROOT_MODE, META_ROOT_MTIME_NS, META_THRESHOLD};
use super::CatalogRow;
use crate::error::{Error, Result};
use crate::layout::{generation_key, CATALOG_KEY, GENERATIONS_PREFIX};
use crate::store::Store;
use arrow_buffer::Buffer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Schema metadata keys of a generation file.
pub const META_GENERATION: &str = "sheaf.generation";
/// The generation this one was made from (absent for generation 0).
pub const META_PARENT: &str = "sheaf.parent";
/// The writer's transaction id: a retried commit whose acknowledgement was lost finds it.
pub const META_TXN: &str = "sheaf.txn";
/// What made the generation: `fold`, `append`, `rm` or `compact`.
pub const META_OPERATION: &str = "sheaf.operation";
/// When the generation was made, nanoseconds since the epoch.
pub const META_TIME: &str = "sheaf.time_ns";
/// Entries the operation wrote (tombstones not counted).
pub const META_ADDED: &str = "sheaf.added";
/// Tombstones the operation wrote.
pub const META_REMOVED: &str = "sheaf.removed";

/// What a generation says about itself.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GenerationInfo {
    /// Its number: 0 for a dataset's first.
    pub number: u64,
    /// The operation that made it.
    pub operation: String,
    /// When it was made, nanoseconds since the epoch (0 when not recorded: version 1 and 2).
    pub time_ns: i64,
    /// The writer's transaction id (empty when not recorded).
    pub txn: String,
    /// Entries its operation wrote, tombstones not counted.
    pub added: u64,
    /// Tombstones its operation wrote.
    pub removed: u64,
    /// Containers it uses.
    pub containers: u64,
    /// Bytes of those containers.
    pub bytes: u64,
}

/// A generation as read: its number and catalog, and the bytes they came from (a cache
/// records them, so a preloaded dataset opens without asking its origin).
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The generation number.
    pub number: u64,
    /// Its catalog.
    pub catalog: Catalog,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// Which generation to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Which {
    /// The newest committed one.
    #[default]
    Newest,
    /// This number.
    Number(u64),
}

/// Parses and checks the bytes of generation `number` read from `file`: a catalog whose own
/// number is `number`, whose parent is the one before it, and whose containers were written
/// by it or by generations before it. A version 1 or 2 catalog is generation 0.
pub fn parse(bytes: Vec<u8>, number: u64, file: &Path) -> Result<Snapshot> {
    let catalog = Catalog::from_buffer(Buffer::from_vec(bytes.clone()), file)?;
    check(&catalog, number, file)?;
    Ok(Snapshot {
        number,
        catalog,
        bytes,
    })
}

/// Parses a generation whose number is taken from the file itself (a copy a cache kept).
pub fn parse_recorded(bytes: Vec<u8>, file: &Path) -> Result<Snapshot> {
    let catalog = Catalog::from_buffer(Buffer::from_vec(bytes.clone()), file)?;
    let number = recorded_number(&catalog, file)?;
    check(&catalog, number, file)?;
    Ok(Snapshot {
        number,
        catalog,
        bytes,
    })
}

/// The number a catalog records for itself (0 for a version 1 or 2 catalog).
fn recorded_number(catalog: &Catalog, file: &Path) -> Result<u64> {
    match catalog.metadata().get(META_GENERATION) {
        Some(text) => parse_number(text, META_GENERATION, file),
        None => Ok(0),
    }
}

/// Checks a catalog read as generation `number`.
fn check(catalog: &Catalog, number: u64, file: &Path) -> Result<()> {
    let meta = catalog.metadata();
    let recorded = recorded_number(catalog, file)?;
    if recorded != number {
        return Err(Error::corrupt(
            file,
            format!("names itself generation {recorded}, but is stored as generation {number}"),
        ));
    }
    let parent = meta
        .get(META_PARENT)
        .map(|text| parse_number(text, META_PARENT, file))
        .transpose()?;
    if parent != number.checked_sub(1) {
        return Err(Error::corrupt(
            file,
            format!(
                "generation {number} names {} as its parent, not the one before it",
                parent.map_or("none".to_owned(), |p| p.to_string())
            ),
        ));
    }
    if let Some(row) = catalog
        .rows()
        .iter()
        .find(|r| u64::from(r.generation) > number)
    {
        return Err(Error::corrupt(
            file,
            format!(
                "container {} is of generation {}, after the generation that lists it",
                row.name, row.generation
            ),
        ));
    }
    Ok(())
}

fn parse_number(text: &str, key: &str, file: &Path) -> Result<u64> {
    text.parse()
        .map_err(|_| Error::corrupt(file, format!("{key} is not a number: {text:?}")))
}

/// What a generation's catalog says about it.
pub fn info(number: u64, catalog: &Catalog) -> GenerationInfo {
    let meta = catalog.metadata();
    let number_of = |key: &str| meta.get(key).and_then(|t| t.parse().ok()).unwrap_or(0);
    GenerationInfo {
        number,
        operation: meta
            .get(META_OPERATION)
            .cloned()
            .unwrap_or_else(|| "fold".to_owned()),
        time_ns: number_of(META_TIME) as i64,
        txn: meta.get(META_TXN).cloned().unwrap_or_default(),
        added: number_of(META_ADDED),
        removed: number_of(META_REMOVED),
        containers: catalog.rows().len() as u64,
        bytes: catalog.rows().iter().map(|r| r.file_len).sum(),
    }
}

/// The key generation `number` is stored under, when it exists: its generation file, or for
/// generation 0 of a dataset written before generations, the catalog.
fn existing_key(store: &dyn Store, number: u64) -> Result<Option<String>> {
    let key = generation_key(number);
    if store.len(&key)?.is_some() {
        return Ok(Some(key));
    }
    if number == 0 && store.len(CATALOG_KEY)?.is_some() {
        return Ok(Some(CATALOG_KEY.to_owned()));
    }
    Ok(None)
}

/// Every generation number with a file, ascending (generations `gc` deleted are gone).
pub fn numbers(store: &dyn Store) -> Result<Vec<u64>> {
    let listed = store.list_dir(GENERATIONS_PREFIX.trim_end_matches('/'))?;
    let mut numbers: Vec<u64> = listed
        .objects
        .iter()
        .filter_map(|o| number_of_key(&o.key))
        .collect();
    if !numbers.contains(&0) && store.len(CATALOG_KEY)?.is_some() {
        numbers.push(0);
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The generation number a key names, when it is a generation file's key.
fn number_of_key(key: &str) -> Option<u64> {
    let name = key
        .strip_prefix(GENERATIONS_PREFIX)?
        .strip_suffix(".sheaf")?;
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// The newest committed generation's number, or `None` when the store holds no dataset. A
/// listing may lag a commit on some stores, so the number after the newest listed is probed
/// until one is missing.
pub fn newest(store: &dyn Store) -> Result<Option<u64>> {
    let mut newest = numbers(store)?.last().copied();
    loop {
        let next = newest.map_or(0, |n| n + 1);
        if existing_key(store, next)?.is_none() {
            return Ok(newest);
        }
        newest = Some(next);
    }
}

/// Reads a generation. `NotADataset` (or `UnfinishedFold`) when the store holds none;
/// `NoSuchGeneration` when the one asked for does not exist.
pub fn read(store: &dyn Store, which: Which) -> Result<Snapshot> {
    let number = match which {
        Which::Number(n) => n,
        Which::Newest => match newest(store)? {
            Some(n) => n,
            None => return Err(not_a_dataset(store)),
        },
    };
    // Read at once (no length check first: one request fewer on a remote store).
    let mut keys = vec![generation_key(number)];
    if number == 0 {
        keys.push(CATALOG_KEY.to_owned());
    }
    for key in keys {
        match store.read(&key) {
            Ok(bytes) => return parse(bytes, number, Path::new(&store.uri(&key))),
            Err(Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(match newest(store)? {
        None => not_a_dataset(store),
        Some(newest) => Error::NoSuchGeneration {
            root: PathBuf::from(store.uri("")),
            asked: number,
            newest,
        },
    })
}

fn not_a_dataset(store: &dyn Store) -> Error {
    let root = PathBuf::from(store.uri(""));
    match store.len(crate::layout::FOLD_PARAMS_KEY) {
        Ok(Some(_)) => Error::UnfinishedFold { root },
        _ => Error::NotADataset { root },
    }
}

/// Every generation the store keeps, oldest first, with what each says about itself.
pub fn log(store: &dyn Store) -> Result<Vec<GenerationInfo>> {
    let mut numbers = numbers(store)?;
    if let Some(newest) = newest(store)? {
        let listed = numbers.last().copied();
        numbers.extend(listed.map_or(0, |n| n + 1)..=newest);
    }
    if numbers.is_empty() {
        return Err(not_a_dataset(store));
    }
    numbers
        .into_iter()
        .map(|n| read(store, Which::Number(n)).map(|s| info(n, &s.catalog)))
        .collect()
}

/// What a writer commits: the catalog of the next generation, made from the one it read.
#[derive(Clone, Debug)]
pub struct Commit {
    /// The operation's name (`fold`, `append`, `rm`, `compact`).
    pub operation: &'static str,
    /// The writer's transaction id.
    pub txn: String,
    /// Entries written, tombstones not counted.
    pub added: u64,
    /// Tombstones written.
    pub removed: u64,
    /// The fold threshold to record.
    pub threshold: Option<u64>,
    /// The folded tree's root directory, to record (a later generation carries its parent's).
    pub root: Option<RootMeta>,
}

impl Commit {
    /// The bytes of generation `number` holding `rows`.
    pub fn encode(&self, number: u64, rows: Vec<CatalogRow>) -> Result<Vec<u8>> {
        let mut meta = HashMap::from([
            (META_GENERATION.to_owned(), number.to_string()),
            (META_TXN.to_owned(), self.txn.clone()),
            (META_OPERATION.to_owned(), self.operation.to_owned()),
            (META_TIME.to_owned(), crate::time::now_ns().to_string()),
            (META_ADDED.to_owned(), self.added.to_string()),
            (META_REMOVED.to_owned(), self.removed.to_string()),
        ]);
        if let Some(parent) = number.checked_sub(1) {
            meta.insert(META_PARENT.to_owned(), parent.to_string());
        }
        if let Some(threshold) = self.threshold {
            meta.insert(META_THRESHOLD.to_owned(), threshold.to_string());
        }
        if let Some(root) = self.root {
            meta.insert(META_ROOT_MODE.to_owned(), root.mode.to_string());
            meta.insert(META_ROOT_MTIME_NS.to_owned(), root.mtime_ns.to_string());
        }
        Catalog::new(rows, meta).to_bytes()
    }
}

/// Commits generation `number` with put-if-absent. `Ok(true)`: this writer made it. `Ok(false)`:
/// another writer's generation holds that number (the caller re-reads and rebases, or gives
/// up), unless it carries this writer's transaction id (a commit whose acknowledgement was
/// lost), which counts as made.
pub fn commit(store: &dyn Store, number: u64, bytes: &[u8], txn: &str) -> Result<bool> {
    let key = generation_key(number);
    match store.create_new(&key, bytes) {
        Ok(true) => Ok(true),
        Ok(false) => holds_txn(store, number, txn),
        // The request may have landed although its answer did not arrive.
        Err(e) => match holds_txn(store, number, txn) {
            Ok(true) => Ok(true),
            _ => Err(e),
        },
    }
}

/// True when generation `number` exists and carries transaction id `txn`.
pub fn holds_txn(store: &dyn Store, number: u64, txn: &str) -> Result<bool> {
    match store.read(&generation_key(number)) {
        Ok(bytes) => {
            let file = PathBuf::from(store.uri(&generation_key(number)));
            let catalog = Catalog::from_buffer(Buffer::from_vec(bytes), &file)?;
            Ok(catalog.metadata().get(META_TXN).map(String::as_str) == Some(txn))
        }
        Err(Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A fresh transaction id: 32 hex digits from the clock, the process and a counter, hashed.
pub fn new_txn() -> String {
    let unique = format!(
        "{}-{}-{}",
        crate::time::now_ns(),
        crate::store::unique_suffix(),
        std::thread::current().name().unwrap_or("")
    );
    format!("{:032x}", crate::checksum::content_id(unique.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn row(name: &str, first: &str, last: &str, generation: u32) -> CatalogRow {
        CatalogRow {
            name: name.into(),
            first_path: first.into(),
            last_path: last.into(),
            entry_count: 1,
            file_len: 100,
            index_xxh3: 0,
            content_id: 0,
            generation,
            filter: Vec::new(),
        }
    }

    fn commit_of(txn: &str) -> Commit {
        Commit {
            operation: "append",
            txn: txn.into(),
            added: 1,
            removed: 0,
            threshold: None,
            root: None,
        }
    }

    #[test]
    fn generations_are_found_newest_first_and_by_number() {
        let store = MemoryStore::new();
        assert!(matches!(
            read(&store, Which::Newest),
            Err(Error::NotADataset { .. })
        ));
        for n in 0..3u64 {
            let rows = (0..=n as u32)
                .map(|g| row(&format!("c{g}"), "a", "b", g))
                .collect();
            let bytes = commit_of(&format!("t{n}")).encode(n, rows).unwrap();
            assert!(commit(&store, n, &bytes, &format!("t{n}")).unwrap());
        }
        let newest = read(&store, Which::Newest).unwrap();
        assert_eq!(newest.number, 2);
        assert_eq!(newest.catalog.rows().len(), 3);
        assert_eq!(
            read(&store, Which::Number(1)).unwrap().catalog.rows().len(),
            2
        );
        assert!(matches!(
            read(&store, Which::Number(7)),
            Err(Error::NoSuchGeneration {
                asked: 7,
                newest: 2,
                ..
            })
        ));
        assert_eq!(numbers(&store).unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn a_second_commit_of_one_number_loses_unless_it_is_the_same_transaction() {
        let store = MemoryStore::new();
        let first = commit_of("mine")
            .encode(0, vec![row("c", "a", "b", 0)])
            .unwrap();
        assert!(commit(&store, 0, &first, "mine").unwrap());
        let other = commit_of("theirs")
            .encode(0, vec![row("d", "a", "b", 0)])
            .unwrap();
        assert!(!commit(&store, 0, &other, "theirs").unwrap());
        // The same transaction again (its first answer lost): counted as made, not applied twice.
        assert!(commit(&store, 0, &first, "mine").unwrap());
        assert_eq!(
            read(&store, Which::Newest).unwrap().catalog.rows()[0].name,
            "c"
        );
    }

    /// A store whose conditional creates land but whose answers are lost.
    #[derive(Debug)]
    struct LostAnswers(MemoryStore);

    impl Store for LostAnswers {
        fn uri(&self, key: &str) -> String {
            self.0.uri(key)
        }
        fn read_range(&self, key: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
            self.0.read_range(key, range)
        }
        fn read(&self, key: &str) -> Result<Vec<u8>> {
            self.0.read(key)
        }
        fn len(&self, key: &str) -> Result<Option<u64>> {
            self.0.len(key)
        }
        fn create(&self, key: &str) -> Result<Box<dyn crate::store::ObjectWriter>> {
            self.0.create(key)
        }
        fn create_new(&self, key: &str, bytes: &[u8]) -> Result<bool> {
            self.0.create_new(key, bytes)?;
            Err(Error::Remote {
                uri: self.uri(key),
                cause: "connection reset before the answer".into(),
            })
        }
        fn list(&self, prefix: &str) -> Result<Vec<crate::store::ObjectInfo>> {
            self.0.list(prefix)
        }
        fn delete(&self, key: &str) -> Result<()> {
            self.0.delete(key)
        }
    }

    #[test]
    fn a_commit_whose_answer_was_lost_counts_once_and_another_writer_s_does_not() {
        let store = LostAnswers(MemoryStore::new());
        let mine = commit_of("mine")
            .encode(0, vec![row("c", "a", "b", 0)])
            .unwrap();
        assert!(
            commit(&store, 0, &mine, "mine").unwrap(),
            "landed, answer lost"
        );
        let theirs = commit_of("theirs")
            .encode(1, vec![row("c", "a", "b", 0)])
            .unwrap();
        store.0.put(&generation_key(1), theirs);
        let again = commit_of("mine")
            .encode(1, vec![row("c", "a", "b", 0)])
            .unwrap();
        assert!(
            commit(&store, 1, &again, "mine").is_err(),
            "another writer's generation is not this one's"
        );
        assert_eq!(numbers(&store).unwrap(), vec![0, 1]);
    }

    #[test]
    fn a_generation_file_under_the_wrong_number_or_parent_is_refused() {
        let store = MemoryStore::new();
        let bytes = commit_of("t")
            .encode(3, vec![row("c", "a", "b", 0)])
            .unwrap();
        store.put(&generation_key(0), bytes);
        let err = read(&store, Which::Newest).unwrap_err().to_string();
        assert!(err.contains("names itself generation 3"), "{err}");
        let store = MemoryStore::new();
        let mut meta = HashMap::from([(META_GENERATION.to_owned(), "1".to_owned())]);
        meta.insert(META_PARENT.to_owned(), "5".to_owned());
        let forged = Catalog::new(vec![row("c", "a", "b", 0)], meta)
            .to_bytes()
            .unwrap();
        store.put(&generation_key(1), forged);
        let err = read(&store, Which::Number(1)).unwrap_err().to_string();
        assert!(err.contains("names 5 as its parent"), "{err}");
    }

    #[test]
    fn a_container_from_a_later_generation_is_refused() {
        let store = MemoryStore::new();
        let bytes = commit_of("t")
            .encode(0, vec![row("c", "a", "b", 1)])
            .unwrap();
        store.put(&generation_key(0), bytes);
        let err = read(&store, Which::Newest).unwrap_err().to_string();
        assert!(err.contains("after the generation that lists it"), "{err}");
    }

    #[test]
    fn a_dataset_from_before_generations_is_generation_0() {
        let store = MemoryStore::new();
        let legacy = Catalog::new(vec![row("c", "a", "b", 0)], HashMap::new())
            .to_bytes()
            .unwrap();
        store.put(CATALOG_KEY, legacy);
        assert_eq!(newest(&store).unwrap(), Some(0));
        let bytes = commit_of("t")
            .encode(1, vec![row("c", "a", "b", 0), row("d", "a", "b", 1)])
            .unwrap();
        assert!(commit(&store, 1, &bytes, "t").unwrap());
        assert_eq!(read(&store, Which::Newest).unwrap().number, 1);
        assert_eq!(
            read(&store, Which::Number(0)).unwrap().catalog.rows().len(),
            1
        );
    }
}
