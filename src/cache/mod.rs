//! The SSD cache tier: whole containers copied from their origin into a local directory,
//! named by content id, with a byte quota, least-recently-used eviction, pinned datasets and
//! quarantine for faulty files. Several processes may share one cache directory.
//!
//! Layout (see ARCHITECTURE.md, "The cache directory"):
//!
//! ```text
//! DIR/VERSION                      "sheaf-cache 1"
//! DIR/config.json                  {"quota": BYTES} when a quota is set
//! DIR/lock                         flock taken to make room, evict or write records
//! DIR/counters                     shared counters (memory-mapped, atomics)
//! DIR/containers/<id>.sheaf        complete, verified containers (id: xxh3-128, 32 hex digits)
//! DIR/datasets/<key>.catalog       the catalog of a preloaded dataset (key: xxh3-64 of its URI)
//! DIR/datasets/<key>.json          {"uri": ..., "pinned": bool}
//! DIR/tmp/<id>.lock                held while one process fetches that container
//! DIR/tmp/<id>.<pid>.partial       a fetch in progress (full length from the start)
//! DIR/quarantine/<id>.<secs>.sheaf faulty files moved aside
//! ```

pub mod counters;
pub mod preload;

pub use counters::{Counter, Counters, Latency, Snapshot};
pub use preload::{preload, PreloadOptions, PreloadSummary};

use crate::error::{Error, IoContext, Result};
use crate::format::{Catalog, Container};
use crate::store::{MappedFile, Place, ReadPolicy};
use arrow_buffer::Buffer;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

const VERSION_TEXT: &str = "sheaf-cache 1\n";

/// A cache directory opened for use.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    counters: Counters,
}

/// One cached container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedContainer {
    /// Its content id.
    pub id: u128,
    /// Its length in bytes.
    pub len: u64,
    /// When a reader or a preload last used it.
    pub last_used: SystemTime,
}

/// What the cache knows of a dataset that was preloaded or pinned.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DatasetRecord {
    /// The dataset's URI as given.
    pub uri: String,
    /// Pinned datasets' containers are never evicted.
    pub pinned: bool,
}

/// How a fetch ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The container was already in the cache (perhaps put there by another process while this
    /// one waited).
    AlreadyCached,
    /// This call copied it: bytes fetched.
    Copied(u64),
}

/// How long a cached file found whole is trusted to stay so before its length is checked
/// again. The check is a system call (`fstat`) that cost a small cached read about a fifth
/// of its time when it was made on every read; sheaf never truncates a cache file (eviction
/// and quarantine unlink or rename it), so only something else cutting one short is guarded
/// against, and that is noticed this long after at most (plus the coarse clock's tick).
pub const LENGTH_TRUSTED_FOR: Duration = Duration::from_millis(2);

/// A cached container mapped for reading, whose file's length is checked now and then to
/// notice it being cut short.
#[derive(Debug)]
pub struct MappedContainer {
    /// The parsed container over the mapping.
    pub container: Arc<Container>,
    len: u64,
    /// When the file was last found whole, in nanoseconds of the coarse monotonic clock; 0
    /// before the first check.
    whole_at: AtomicU64,
}

impl MappedContainer {
    fn new(container: Container, len: u64) -> Self {
        MappedContainer {
            container: Arc::new(container),
            len,
            whole_at: AtomicU64::new(0),
        }
    }

    /// False when the file was cut shorter than it was when mapped: reading the mapping past
    /// its new end faults. Checked with a system call at most once every
    /// [`LENGTH_TRUSTED_FOR`], by whichever thread reads first after that; a read in between
    /// that goes past the new end is given zeros by the fault guard, which marks the mapping
    /// (`Container::faulted`), and this is false from then on.
    pub fn is_whole(&self) -> bool {
        // A read found it cut short already (an atomic load: checked every time).
        if self.container.faulted() {
            return false;
        }
        let now = crate::time::coarse_monotonic_ns();
        let checked = self.whole_at.load(Ordering::Relaxed);
        if checked != 0 && now.saturating_sub(checked) < LENGTH_TRUSTED_FOR.as_nanos() as u64 {
            return true;
        }
        let whole = self
            .container
            .local_file()
            .is_some_and(|file| file.current_len().is_ok_and(|len| len >= self.len));
        if whole {
            self.whole_at.store(now.max(1), Ordering::Relaxed);
        }
        whole
    }
}

impl Cache {
    /// Opens (creating when needed) the cache directory `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Cache> {
        let dir = dir.as_ref().to_path_buf();
        for sub in ["containers", "datasets", "tmp", "quarantine"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).ctx("create directory", &path)?;
        }
        check_version(&dir)?;
        let counters = Counters::shared(&dir.join("counters"))?;
        Ok(Cache { dir, counters })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The counters every process using this cache adds to.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The byte quota, if one is set.
    pub fn quota(&self) -> Result<Option<u64>> {
        let path = self.dir.join("config.json");
        match fs::read(&path) {
            Ok(bytes) => {
                let config: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::corrupt(&path, e.to_string()))?;
                Ok(config.get("quota").and_then(|q| q.as_u64()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Sets (or with `None` clears) the byte quota, then evicts down to it.
    pub fn set_quota(&self, quota: Option<u64>) -> Result<()> {
        let config = serde_json::json!({ "quota": quota });
        self.locked(|| {
            write_atomically(&self.dir.join("config.json"), config.to_string().as_bytes())
        })?;
        self.make_room(0, &HashSet::new())
    }

    fn container_path(&self, id: u128) -> PathBuf {
        self.dir.join("containers").join(format!("{id:032x}.sheaf"))
    }

    /// True when the cache holds the container `id`.
    pub fn contains(&self, id: u128) -> bool {
        self.container_path(id).is_file()
    }

    /// Maps the cached container `id`, if the cache holds it, to be read as `policy` says, and
    /// marks it used. A file that is there but not a sound container is quarantined and
    /// reported as the error; one this process cannot open or map is reported and left alone.
    pub fn map(&self, id: u128, policy: ReadPolicy) -> Result<Option<MappedContainer>> {
        let path = self.container_path(id);
        match Container::open_with(&path, policy) {
            Ok(container) => {
                let len = container.local_file().map_or(0, |file| file.len());
                self.touch(id);
                Ok(Some(MappedContainer::new(container, len)))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) if e.is_data_fault() => Err(self.quarantine_after(id, e)),
            // Out of descriptors, no permission: the process's trouble, not the file's.
            Err(e) => Err(e),
        }
    }

    /// Marks the container `id` as just used, for eviction order.
    pub fn touch(&self, id: u128) {
        let _ = filetime::set_file_mtime(self.container_path(id), filetime::FileTime::now());
    }

    /// Moves the cached container `id` aside so no reader uses it again, counting the event.
    /// Readers that already mapped it keep their mapping. A file already gone is not an error.
    pub fn quarantine(&self, id: u128) {
        let from = self.container_path(id);
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let to = self
            .dir
            .join("quarantine")
            .join(format!("{id:032x}.{secs}.sheaf"));
        if fs::rename(&from, &to).is_ok() {
            self.counters.add(Counter::Quarantined, 1);
        }
    }

    fn quarantine_after(&self, id: u128, error: Error) -> Error {
        self.quarantine(id);
        error
    }

    /// Copies the container `id` of `len` bytes into the cache unless it is there already.
    /// `copy` hands every byte of the origin to the two targets it is given: its `Place` (the
    /// bytes and their offset, in any order, from any thread: written into the file) and, after
    /// that, the in-order sink (hashed and counted). The bytes must hash to
    /// `id` and parse as a container before the file gets its name, so readers never see a
    /// partial or wrong file. `protect` lists containers that making room must not evict.
    pub fn fetch(
        &self,
        id: u128,
        len: u64,
        protect: &HashSet<u128>,
        copy: impl FnOnce(Place<'_>, &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
    ) -> Result<Fetched> {
        let _fetching = self.lock_file(&self.dir.join("tmp").join(format!("{id:032x}.lock")))?;
        if self.contains(id) {
            self.touch(id);
            return Ok(Fetched::AlreadyCached);
        }
        self.remove_partials_of(id)?;
        let partial = self
            .dir
            .join("tmp")
            .join(format!("{id:032x}.{}.partial", std::process::id()));
        let written = (|| {
            let out = File::create(&partial).ctx("create", &partial)?;
            // Full length from the start: quota accounting counts fetches in flight.
            out.set_len(len).ctx("reserve", &partial)?;
            self.make_room(0, protect)?;
            let mut hasher = crate::checksum::ContentId::new();
            let mut copied = 0u64;
            let mut writeback = crate::store::Writeback::default();
            let place = |at: u64, chunk: &[u8]| out.write_all_at(chunk, at).ctx("write", &partial);
            copy(&place, &mut |chunk: &[u8]| {
                hasher.update(chunk);
                copied += chunk.len() as u64;
                // Everything up to here is placed: its writeback can start.
                writeback.wrote(&out, chunk.len());
                Ok(())
            })?;
            if copied != len {
                return Err(Error::corrupt(
                    &partial,
                    format!("the origin gave {copied} bytes, the catalog says {len}"),
                ));
            }
            if hasher.digest() != id {
                return Err(Error::corrupt(
                    &partial,
                    "the copied bytes do not hash to the container's content id (changed at the origin?)",
                ));
            }
            out.sync_all().ctx("sync", &partial)?;
            Container::open(&partial)?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
        let target = self.container_path(id);
        fs::rename(&partial, &target).ctx("rename into the cache", &target)?;
        sync_dir(&self.dir.join("containers"));
        self.counters.add(Counter::Fetches, 1);
        self.counters.add(Counter::FetchedBytes, len);
        Ok(Fetched::Copied(len))
    }

    /// Partial files of `id` left by a fetch that died (the caller holds `id`'s fetch lock, so
    /// no live fetch owns them).
    fn remove_partials_of(&self, id: u128) -> Result<()> {
        let prefix = format!("{id:032x}.");
        let tmp = self.dir.join("tmp");
        for child in fs::read_dir(&tmp).ctx("read directory", &tmp)?.flatten() {
            let name = child.file_name().to_string_lossy().into_owned();
            if name.starts_with(&prefix) && name.ends_with(".partial") {
                let _ = fs::remove_file(child.path());
            }
        }
        Ok(())
    }

    /// Every cached container.
    pub fn containers(&self) -> Result<Vec<CachedContainer>> {
        let dir = self.dir.join("containers");
        let mut out = Vec::new();
        for child in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let child = child.ctx("read directory", &dir)?;
            let name = child.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".sheaf"))
                .and_then(|hex| u128::from_str_radix(hex, 16).ok())
            else {
                continue;
            };
            let Ok(meta) = child.metadata() else { continue };
            out.push(CachedContainer {
                id,
                len: meta.len(),
                last_used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
        Ok(out)
    }

    /// Bytes held by fetches in progress.
    fn bytes_in_flight(&self) -> u64 {
        fs::read_dir(self.dir.join("tmp"))
            .map(|children| {
                children
                    .flatten()
                    .filter(|c| c.file_name().to_string_lossy().ends_with(".partial"))
                    .filter_map(|c| c.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Evicts least-recently-used unpinned containers (never those in `protect`) until
    /// `need` more bytes fit under the quota. Fails, evicting nothing, when they cannot fit.
    pub fn make_room(&self, need: u64, protect: &HashSet<u128>) -> Result<()> {
        let Some(quota) = self.quota()? else {
            return Ok(());
        };
        self.locked(|| {
            let mut cached = self.containers()?;
            let used: u64 = cached.iter().map(|c| c.len).sum::<u64>() + self.bytes_in_flight();
            if used + need <= quota {
                return Ok(());
            }
            let pinned = self.pinned_ids()?;
            let keep = |c: &CachedContainer| pinned.contains(&c.id) || protect.contains(&c.id);
            let evictable: u64 = cached.iter().filter(|c| !keep(c)).map(|c| c.len).sum();
            let excess = used + need - quota;
            if evictable < excess {
                return Err(Error::CacheFull {
                    cache: self.dir.clone(),
                    needed: need,
                    quota,
                    kept: used - evictable,
                });
            }
            cached.retain(|c| !keep(c));
            cached.sort_by_key(|c| (c.last_used, c.id));
            let mut freed = 0;
            for victim in cached {
                if freed >= excess {
                    break;
                }
                if fs::remove_file(self.container_path(victim.id)).is_ok() {
                    freed += victim.len;
                    self.counters.add(Counter::Evictions, 1);
                    self.counters.add(Counter::EvictedBytes, victim.len);
                }
            }
            Ok(())
        })
    }

    /// Evicts every unpinned container matching `select`; returns (containers, bytes).
    pub fn evict(&self, select: impl Fn(u128) -> bool) -> Result<(u64, u64)> {
        self.locked(|| {
            let pinned = self.pinned_ids()?;
            let (mut count, mut bytes) = (0, 0);
            for c in self.containers()? {
                if select(c.id)
                    && !pinned.contains(&c.id)
                    && fs::remove_file(self.container_path(c.id)).is_ok()
                {
                    count += 1;
                    bytes += c.len;
                    self.counters.add(Counter::Evictions, 1);
                    self.counters.add(Counter::EvictedBytes, c.len);
                }
            }
            Ok((count, bytes))
        })
    }

    fn record_paths(&self, uri: &str) -> (PathBuf, PathBuf) {
        let key = format!("{:016x}", crate::checksum::xxh3_64(uri.as_bytes()));
        let dir = self.dir.join("datasets");
        (
            dir.join(format!("{key}.json")),
            dir.join(format!("{key}.catalog")),
        )
    }

    /// Records a dataset and its catalog, keeping its pin unless `pinned` says otherwise.
    pub fn record_dataset(&self, uri: &str, catalog: &[u8], pinned: Option<bool>) -> Result<()> {
        let (record_path, catalog_path) = self.record_paths(uri);
        self.locked(|| {
            let was_pinned = self.dataset(uri)?.is_some_and(|r| r.pinned);
            let record = DatasetRecord {
                uri: uri.to_owned(),
                pinned: pinned.unwrap_or(was_pinned),
            };
            write_atomically(&catalog_path, catalog)?;
            let json = serde_json::to_vec(&record).expect("a record serializes");
            write_atomically(&record_path, &json)
        })
    }

    /// The record of a dataset, if the cache has one.
    pub fn dataset(&self, uri: &str) -> Result<Option<DatasetRecord>> {
        read_record(&self.record_paths(uri).0)
    }

    /// The catalog the cache keeps for a dataset, if any.
    pub fn cached_catalog(&self, uri: &str) -> Result<Option<Vec<u8>>> {
        let path = self.record_paths(uri).1;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// The parsed catalog the cache keeps for a dataset, if any.
    pub fn dataset_catalog(&self, uri: &str) -> Result<Option<Catalog>> {
        let path = self.record_paths(uri).1;
        self.cached_catalog(uri)?
            .map(|bytes| Catalog::from_buffer(Buffer::from_vec(bytes), &path))
            .transpose()
    }

    /// Every dataset the cache has a record of, with its parsed catalog.
    pub fn datasets(&self) -> Result<Vec<(DatasetRecord, Catalog)>> {
        let dir = self.dir.join("datasets");
        let mut out = Vec::new();
        for child in fs::read_dir(&dir).ctx("read directory", &dir)? {
            let path = child.ctx("read directory", &dir)?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let Some(record) = read_record(&path)? else {
                continue;
            };
            let catalog_path = path.with_extension("catalog");
            let bytes = fs::read(&catalog_path).ctx("read", &catalog_path)?;
            let catalog = Catalog::from_buffer(Buffer::from_vec(bytes), &catalog_path)?;
            out.push((record, catalog));
        }
        out.sort_by(|a, b| a.0.uri.cmp(&b.0.uri));
        Ok(out)
    }

    /// Content ids of every pinned dataset's containers.
    pub fn pinned_ids(&self) -> Result<HashSet<u128>> {
        Ok(self
            .datasets()?
            .into_iter()
            .filter(|(record, _)| record.pinned)
            .flat_map(|(_, catalog)| {
                catalog
                    .rows()
                    .iter()
                    .map(|r| r.content_id)
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    /// Pins or unpins a dataset the cache has a record of.
    pub fn set_pinned(&self, uri: &str, pinned: bool) -> Result<()> {
        let catalog = self.cached_catalog(uri)?.ok_or_else(|| Error::Refused {
            path: self.dir.clone(),
            reason: format!("the cache has no record of {uri}: preload it first"),
        })?;
        self.record_dataset(uri, &catalog, Some(pinned))
    }

    /// Re-reads every cached container and quarantines those whose bytes no longer hash to
    /// their name. Returns (checked, quarantined ids).
    pub fn verify(&self) -> Result<(u64, Vec<u128>)> {
        let mut bad = Vec::new();
        let cached = self.containers()?;
        for c in &cached {
            let path = self.container_path(c.id);
            let whole = MappedFile::open(&path, ReadPolicy::SEQUENTIAL)
                .is_ok_and(|file| crate::checksum::content_id(file.bytes()) == c.id);
            if !whole {
                self.quarantine(c.id);
                bad.push(c.id);
            }
        }
        Ok((cached.len() as u64, bad))
    }

    /// Runs `f` holding the cache's exclusive lock.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _lock = self.lock_file(&self.dir.join("lock"))?;
        f()
    }

    /// Takes an exclusive flock on `path` (created if missing), waiting for other holders.
    fn lock_file(&self, path: &Path) -> Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .ctx("open", path)?;
        loop {
            // SAFETY: flock on a descriptor we own; closing the file releases the lock.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(file);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(Error::io("lock", path, e));
            }
        }
    }
}

/// Lays untrusted bytes out as the files of the cache directory `dir` (emptied first) and
/// reads them the way readers and `sheaf cache` do: the entry point of the cache fuzz target.
/// `bytes` holds, each after its length (4 bytes, little-endian; cut short at the end), the
/// `VERSION` file, `config.json`, a dataset's record and catalog, the counters file (padded
/// or cut to its length when 8 bytes or more, so the counters are reached) and a container
/// file's name. Returns what was read, counted.
pub fn open_untrusted(dir: &Path, bytes: &[u8]) -> usize {
    let _ = fs::remove_dir_all(dir);
    let mut rest = bytes;
    let mut part = || {
        let (len, after) = rest.split_at(rest.len().min(4));
        let mut len_bytes = [0u8; 4];
        len_bytes[..len.len()].copy_from_slice(len);
        let len = (u32::from_le_bytes(len_bytes) as usize).min(after.len());
        let (part, after) = after.split_at(len);
        rest = after;
        part
    };
    let (version, config, record, catalog) = (part(), part(), part(), part());
    let (counters, container) = (part(), part());
    let laid_out = (|| {
        for sub in ["containers", "datasets"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        fs::write(dir.join("VERSION"), version)?;
        fs::write(dir.join("config.json"), config)?;
        fs::write(dir.join("datasets/0000000000000000.json"), record)?;
        fs::write(dir.join("datasets/0000000000000000.catalog"), catalog)?;
        let mut counters = counters.to_vec();
        if counters.len() >= 8 {
            counters.resize(counters::FILE_LEN as usize, 0);
        }
        fs::write(dir.join("counters"), counters)?;
        let name = String::from_utf8_lossy(container);
        if !name.is_empty() && !name.contains(['/', '\0']) && name != "." && name != ".." {
            fs::write(dir.join("containers").join(&*name), b"")?;
        }
        std::io::Result::Ok(())
    })();
    let Ok(()) = laid_out else { return 0 };
    let Ok(cache) = Cache::open(dir) else {
        return 0;
    };
    let mut seen = cache.quota().map_or(0, |q| usize::from(q.is_some()));
    seen += cache.containers().map_or(0, |c| c.len());
    seen += cache.datasets().map_or(0, |d| d.len());
    seen += cache.pinned_ids().map_or(0, |p| p.len());
    let snapshot = cache.counters().snapshot();
    for kind in Latency::ALL {
        for quantile in [0.0, 0.5, 0.99, 1.0] {
            seen += usize::from(snapshot.quantile(kind, quantile).is_some());
        }
    }
    seen + snapshot.prometheus().len()
}

fn check_version(dir: &Path) -> Result<()> {
    let path = dir.join("VERSION");
    match fs::read_to_string(&path) {
        Ok(text) if text == VERSION_TEXT => Ok(()),
        Ok(text) => Err(Error::CacheIncompatible {
            dir: dir.to_path_buf(),
            found: text.trim().to_owned(),
            expected: VERSION_TEXT.trim().to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomically(&path, VERSION_TEXT.as_bytes())?;
            let tag = dir.join("CACHEDIR.TAG");
            let _ = fs::write(
                tag,
                "Signature: 8a477f597d28d172789f06886806bc55\n# sheaf's container cache: it can be rebuilt with `sheaf preload`.\n",
            );
            Ok(())
        }
        Err(e) => Err(Error::io("read", path, e)),
    }
}

fn read_record(path: &Path) -> Result<Option<DatasetRecord>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::corrupt(path, e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path, e)),
    }
}

/// Writes a small file under a temporary name, syncs it and renames it into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let written = (|| {
        let mut out = File::create(&tmp).ctx("create", &tmp)?;
        out.write_all(bytes).ctx("write", &tmp)?;
        out.sync_all().ctx("sync", &tmp)?;
        fs::rename(&tmp, path).ctx("rename", path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The name a cache knows a dataset by: the canonical root directory of a local dataset, the
/// URI without a trailing `/` otherwise, so `preload` and readers agree however it is spelled.
pub fn dataset_key(store: &dyn crate::store::Store) -> String {
    crate::store::root_name(store)
}

/// How long a reader waits before looking again for a container the cache lacked.
pub const RECHECK_AFTER: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn laid_out(parts: &[&[u8]]) -> Vec<u8> {
        parts
            .iter()
            .flat_map(|part| [&(part.len() as u32).to_le_bytes()[..], part].concat())
            .collect()
    }

    #[test]
    fn untrusted_cache_files_are_read_as_a_cache_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("cache");
        let mut counters = vec![0u8; 64];
        counters[..8].copy_from_slice(b"SHFCNT01");
        counters[8..16].copy_from_slice(&5u64.to_le_bytes());
        let sound = laid_out(&[
            VERSION_TEXT.as_bytes(),
            br#"{"quota": 4096}"#,
            br#"{"uri": "s3://b/d", "pinned": false}"#,
            b"",
            &counters,
            b"0123456789abcdef0123456789abcdef.sheaf",
        ]);
        // The quota, one container, and no latencies recorded, then the metrics text.
        let seen = open_untrusted(&scratch, &sound);
        assert!(seen > 2, "{seen}");
        assert_eq!(
            Cache::open(&scratch)
                .unwrap()
                .counters()
                .snapshot()
                .get(Counter::Hits),
            5
        );
        // A wrong version, or bytes that are no cache at all, are refused.
        assert_eq!(
            open_untrusted(&scratch, &laid_out(&[b"sheaf-cache 9\n"])),
            0
        );
        assert_eq!(open_untrusted(&scratch, &[0xff; 3]), 0);
    }
}
