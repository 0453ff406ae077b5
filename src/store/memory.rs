//! Stores for tests and benchmarks: [`MemoryStore`], objects in memory with the whole store
//! contract (for unit tests of logic only: stores that tests claim are S3 or HDFS are real
//! servers), and [`Counting`], which counts the requests that reach a store it wraps.

use super::{ObjectInfo, ObjectWriter, Store};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What a [`MemoryStore`] was asked to do, for its hooks and counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Op {
    ReadRange,
    Read,
    Len,
    Create,
    CreateNew,
    List,
    Delete,
}

type Delay = dyn Fn(&str, &Range<u64>) -> Duration + Send + Sync;
type Fault = dyn Fn(Op, &str, &Range<u64>) -> Option<Error> + Send + Sync;

/// Objects in memory, keyed like any store (sorted listings, writes visible only once
/// finished), with optional delays and faults per request and counters of requests, of those
/// in flight and of the most ever in flight at once.
#[derive(Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<Objects>>,
    delay: Option<Box<Delay>>,
    fault: Option<Box<Fault>>,
    counts: Mutex<BTreeMap<Op, usize>>,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
}

type Objects = BTreeMap<String, Object>;

#[derive(Clone, Debug)]
struct Object {
    bytes: Arc<Vec<u8>>,
    mtime_ns: i64,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let objects = self.objects.lock().unwrap();
        write!(f, "MemoryStore({} objects)", objects.len())
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts an object (mtime 0), replacing any there.
    pub fn put(&self, key: &str, bytes: impl Into<Vec<u8>>) -> &Self {
        self.put_with_mtime(key, bytes, 0)
    }

    /// Puts an object with a modification time, replacing any there.
    pub fn put_with_mtime(&self, key: &str, bytes: impl Into<Vec<u8>>, mtime_ns: i64) -> &Self {
        let object = Object {
            bytes: Arc::new(bytes.into()),
            mtime_ns,
        };
        self.objects.lock().unwrap().insert(key.to_owned(), object);
        self
    }

    /// Makes every ranged read wait as `delay` says for its key and range first.
    pub fn with_delay(
        mut self,
        delay: impl Fn(&str, &Range<u64>) -> Duration + Send + Sync + 'static,
    ) -> Self {
        self.delay = Some(Box::new(delay));
        self
    }

    /// Makes a request fail with the error `fault` gives for it (ranges of whole reads and
    /// other requests are `0..0`).
    pub fn with_fault(
        mut self,
        fault: impl Fn(Op, &str, &Range<u64>) -> Option<Error> + Send + Sync + 'static,
    ) -> Self {
        self.fault = Some(Box::new(fault));
        self
    }

    /// Requests of one kind so far.
    pub fn count(&self, op: Op) -> usize {
        self.counts.lock().unwrap().get(&op).copied().unwrap_or(0)
    }

    /// The most requests that were ever in flight at once.
    pub fn most_in_flight(&self) -> usize {
        self.most_in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request, applies its delay and fault, and runs it.
    fn request<T>(
        &self,
        op: Op,
        key: &str,
        range: Range<u64>,
        run: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        *self.counts.lock().unwrap().entry(op).or_default() += 1;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        if let Some(delay) = &self.delay {
            std::thread::sleep(delay(key, &range));
        }
        let fault = self.fault.as_ref().and_then(|fault| fault(op, key, &range));
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        match fault {
            Some(error) => Err(error),
            None => run(),
        }
    }

    fn object(&self, key: &str) -> Result<Arc<Vec<u8>>> {
        let objects = self.objects.lock().unwrap();
        match objects.get(key) {
            Some(object) => Ok(object.bytes.clone()),
            None => Err(Error::NotFound {
                path: self.uri(key),
            }),
        }
    }
}

impl Store for MemoryStore {
    fn uri(&self, key: &str) -> String {
        format!("memory://{key}")
    }

    fn read_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.request(Op::ReadRange, key, range.clone(), || {
            let bytes = self.object(key)?;
            match bytes.get(range.start as usize..range.end as usize) {
                Some(slice) => Ok(slice.to_vec()),
                None => Err(Error::corrupt(
                    self.uri(key),
                    format!("is {} bytes, shorter than the range {range:?}", bytes.len()),
                )),
            }
        })
    }

    fn read(&self, key: &str) -> Result<Vec<u8>> {
        self.request(Op::Read, key, 0..0, || Ok(self.object(key)?.to_vec()))
    }

    fn len(&self, key: &str) -> Result<Option<u64>> {
        self.request(Op::Len, key, 0..0, || {
            let objects = self.objects.lock().unwrap();
            Ok(objects.get(key).map(|o| o.bytes.len() as u64))
        })
    }

    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        self.request(Op::Create, key, 0..0, || {
            Ok(Box::new(MemoryWriter {
                objects: self.objects.clone(),
                key: key.to_owned(),
                bytes: Vec::new(),
            }) as Box<dyn ObjectWriter>)
        })
    }

    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        self.request(Op::CreateNew, key, 0..0, || {
            let mut objects = self.objects.lock().unwrap();
            if objects.contains_key(key) {
                return Ok(false);
            }
            let object = Object {
                bytes: Arc::new(bytes.to_vec()),
                mtime_ns: 0,
            };
            objects.insert(key.to_owned(), object);
            Ok(true)
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.request(Op::List, prefix, 0..0, || {
            let objects = self.objects.lock().unwrap();
            Ok(objects
                .range(prefix.to_owned()..)
                .take_while(|(key, _)| key.starts_with(prefix))
                .map(|(key, object)| ObjectInfo {
                    key: key.clone(),
                    len: object.bytes.len() as u64,
                    mtime_ns: object.mtime_ns,
                })
                .collect())
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.request(Op::Delete, key, 0..0, || {
            self.objects.lock().unwrap().remove(key);
            Ok(())
        })
    }
}

/// A write to a [`MemoryStore`]: its bytes appear at the key when it finishes, not before;
/// dropped unfinished, it leaves nothing.
struct MemoryWriter {
    objects: Arc<Mutex<Objects>>,
    key: String,
    bytes: Vec<u8>,
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl ObjectWriter for MemoryWriter {
    fn finish(self: Box<Self>) -> Result<()> {
        let object = Object {
            bytes: Arc::new(self.bytes),
            mtime_ns: 0,
        };
        self.objects.lock().unwrap().insert(self.key, object);
        Ok(())
    }
}

/// A store that counts the requests reaching the one it wraps: reads, ranged reads, lengths
/// and listings (writes and deletes are not counted). It opens no [`super::RangeReader`] of its
/// own, so every ranged read of a container read through it is one counted `read_range`.
#[derive(Debug)]
pub struct Counting {
    inner: Arc<dyn Store>,
    requests: AtomicUsize,
}

impl Counting {
    /// Wraps `inner`, counting from zero.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Counting {
            inner,
            requests: AtomicUsize::new(0),
        }
    }

    /// The requests counted so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn tick(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
}

impl Store for Counting {
    fn uri(&self, key: &str) -> String {
        self.inner.uri(key)
    }
    fn read_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        self.tick();
        self.inner.read_range(key, range)
    }
    fn read(&self, key: &str) -> Result<Vec<u8>> {
        self.tick();
        self.inner.read(key)
    }
    fn len(&self, key: &str) -> Result<Option<u64>> {
        self.tick();
        self.inner.len(key)
    }
    fn create(&self, key: &str) -> Result<Box<dyn ObjectWriter>> {
        self.inner.create(key)
    }
    fn create_new(&self, key: &str, bytes: &[u8]) -> Result<bool> {
        self.inner.create_new(key, bytes)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.tick();
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_memory_store_keeps_the_store_contract() {
        let store = MemoryStore::new();
        store
            .put("a/x", b"hello".to_vec())
            .put("a/y/z", b"!".to_vec())
            .put("b", b"".to_vec());
        assert_eq!(store.read_range("a/x", 1..4).unwrap(), b"ell");
        assert!(matches!(
            store.read_range("a/x", 3..9),
            Err(Error::Corrupt { .. })
        ));
        assert!(matches!(store.read("nope"), Err(Error::NotFound { .. })));
        assert_eq!(store.len("a/x").unwrap(), Some(5));
        assert_eq!(store.len("nope").unwrap(), None);
        let keys: Vec<String> = store
            .list("a/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["a/x", "a/y/z"]);
        let level = store.list_dir("a").unwrap();
        assert_eq!(level.dirs, ["a/y"]);

        let mut out = store.create("c").unwrap();
        out.write_all(b"later").unwrap();
        assert_eq!(store.len("c").unwrap(), None, "invisible before finish");
        out.finish().unwrap();
        assert_eq!(store.read("c").unwrap(), b"later");
        let mut abandoned = store.create("d").unwrap();
        abandoned.write_all(b"never").unwrap();
        drop(abandoned);
        assert_eq!(
            store.len("d").unwrap(),
            None,
            "an abandoned write leaves nothing"
        );
        store.delete("c").unwrap();
        store.delete("c").unwrap();
        assert_eq!(store.len("c").unwrap(), None);
        assert_eq!(store.count(Op::Delete), 2);
    }

    #[test]
    fn faults_and_counts_are_per_request() {
        let store = MemoryStore::new().with_fault(|op, _, range| {
            (op == Op::ReadRange && range.contains(&7)).then(|| Error::NotFound {
                path: "injected".into(),
            })
        });
        store.put("k", vec![1u8; 10]);
        assert!(store.read_range("k", 0..5).is_ok());
        assert!(store.read_range("k", 5..10).is_err());
        assert_eq!(store.count(Op::ReadRange), 2);
        assert_eq!(store.most_in_flight(), 1);
        let counting = Counting::new(Arc::new(store));
        counting.read("k").unwrap();
        counting.len("k").unwrap();
        counting.create("n").unwrap().finish().unwrap();
        assert_eq!(counting.requests(), 2, "writes are not counted");
    }
}
