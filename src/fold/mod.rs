//! Folding: walk the source, plan containers over the sorted paths, write them in parallel,
//! publish the catalog atomically, and (in place, when asked) remove the folded originals.

mod change;
mod compact;
pub mod parts;
mod plan;
mod publish;
mod walk;
mod write;

pub use change::{append, remove, RemoveSummary};
pub use compact::{compact, gc, CompactSummary, GcSummary};
pub use plan::ContainerLimits;
use walk::Walked;
pub use walk::{PathRange, SourceEntry};

use crate::error::{Error, Result, Setting};
use crate::format::{CatalogRow, EntryKind, MAX_ENTRY_LEN};
use crate::layout::{container_key, container_name, part_container_name, txn_container_name};
use crate::progress::Progress;
use crate::store::{Location, Store};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::thread::Scope;
use std::time::Instant;

/// Default fold threshold: files below it are folded.
pub const DEFAULT_THRESHOLD: u64 = 4 << 20;

/// Default target size of a container.
pub const DEFAULT_CONTAINER_SIZE: u64 = 1 << 30;

/// Default most entries per container.
pub const DEFAULT_MAX_ENTRIES: usize = 1 << 20;

/// Per-entry compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Compression {
    /// Store bytes as they are.
    None,
    /// Compress every entry with zstd at this level.
    Zstd(i32),
    /// Compress with zstd at this level and keep it only where it saves space.
    Auto(i32),
}

/// zstd level used when none is given.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

impl FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let (name, level) = match text.split_once(':') {
            Some((name, level)) => {
                let level: i32 = level
                    .parse()
                    .map_err(|_| format!("invalid zstd level {level:?}"))?;
                if !(1..=22).contains(&level) {
                    return Err(format!("zstd level {level} is outside 1..=22"));
                }
                (name, level)
            }
            None => (text, DEFAULT_ZSTD_LEVEL),
        };
        match name {
            "none" if !text.contains(':') => Ok(Compression::None),
            "zstd" => Ok(Compression::Zstd(level)),
            "auto" => Ok(Compression::Auto(level)),
            _ => Err(format!(
                "unknown compression {text:?}: use none, zstd[:LEVEL] or auto[:LEVEL]"
            )),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Compression::None => write!(f, "none"),
            Compression::Zstd(level) => write!(f, "zstd:{level}"),
            Compression::Auto(level) => write!(f, "auto:{level}"),
        }
    }
}

/// How to fold.
#[derive(Clone, Debug)]
pub struct FoldOptions {
    /// Regular files smaller than this are folded; the rest are kept as ordinary files.
    pub threshold: u64,
    /// Container size and entry limits.
    pub limits: ContainerLimits,
    /// Per-entry compression.
    pub compression: Compression,
    /// In place only: delete folded originals once their containers are written, synced and
    /// verified.
    pub remove_originals: bool,
}

impl Default for FoldOptions {
    fn default() -> Self {
        FoldOptions {
            threshold: DEFAULT_THRESHOLD,
            limits: ContainerLimits {
                bytes: DEFAULT_CONTAINER_SIZE,
                entries: DEFAULT_MAX_ENTRIES,
            },
            compression: Compression::None,
            remove_originals: false,
        }
    }
}

/// Where to fold from and to.
#[derive(Clone, Debug)]
pub enum Target {
    /// Fold `src` into a new dataset root `dst`.
    NewRoot { src: PathBuf, dst: PathBuf },
    /// Fold `dir` where it lies: containers under `dir/.sheaf/`, large files stay.
    InPlace { dir: PathBuf },
}

/// What a fold did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct FoldSummary {
    /// The dataset root written (in JSON, bytes that are not UTF-8 shown as U+FFFD).
    #[serde(serialize_with = "path_for_display")]
    pub dataset: PathBuf,
    /// Regular files folded into containers.
    pub files_folded: u64,
    /// Symbolic links folded.
    pub symlinks: u64,
    /// Directories recorded.
    pub dirs: u64,
    /// Files at or above the threshold, kept as ordinary files.
    pub files_kept: u64,
    /// Sockets, FIFOs and devices skipped (they hold no data).
    pub special_skipped: u64,
    /// Containers in the dataset.
    pub containers: u64,
    /// Containers a resumed fold found complete and kept.
    pub containers_reused: u64,
    /// Original bytes of the folded files.
    pub bytes_folded: u64,
    /// Bytes stored in containers (after compression).
    pub bytes_stored: u64,
    /// Bytes of the files kept as they are.
    pub bytes_kept: u64,
    /// Files and symlinks the storage system tracked before: every non-directory object.
    pub objects_before: u64,
    /// Files it tracks after: containers, the catalog, kept files and originals left in place.
    pub objects_after: u64,
    /// `1 - objects_after / objects_before`, in percent.
    pub reduction_percent: f64,
    /// In place: folded originals deleted.
    pub originals_removed: u64,
    /// In place: originals kept because they changed after they were folded.
    pub originals_changed: u64,
    /// The generation committed (0 for a dataset's first fold).
    pub generation: u64,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
}

/// Folds a tree into a dataset. Nothing is visible as a dataset until the catalog is
/// published, the last step; an interrupted fold is completed by running it again.
pub fn fold(
    target: &Target,
    options: &FoldOptions,
    progress: &dyn Progress,
) -> Result<FoldSummary> {
    let started = Instant::now();
    check_options(options)?;
    let (src, root) = match target {
        Target::NewRoot { src, dst } => (src.as_path(), dst.as_path()),
        Target::InPlace { dir } => (dir.as_path(), dir.as_path()),
    };
    // Every refusal comes before the first write.
    let (src_store, src_dir) = open_source(src)?;
    let in_place = matches!(target, Target::InPlace { .. });
    if options.remove_originals && !in_place {
        return Err(Error::InvalidSetting {
            setting: Setting::RemoveOriginals,
            reason: "only applies to an in-place fold".into(),
        });
    }
    let store = root_store(root)?;
    if in_place && crate::format::generation::newest(store.as_ref())?.is_some() {
        // A published dataset folded in place again: what is new or changed since.
        return change::fold_changes(src, &store, src_dir.as_deref(), options, progress);
    }
    publish::refuse_published(store.as_ref())?;
    if !in_place {
        if let Some(dir) = &src_dir {
            refuse_reserved_name(dir)?;
        }
        publish::check_new_root(src_store.as_ref(), store.as_ref())?;
    }
    let _lock = publish::lock_root(store.as_ref())?;
    let root_meta = publish::source_root_meta(src_dir.as_deref());
    publish::prepare_staging(store.as_ref(), options)?;
    // Entries stream from the walk straight into containers: the fold holds the container
    // being filled, never the whole tree (see `plan`).
    progress.phase("fold", 0, 0);
    let sources = write::Sources {
        src: write::SourceTree::of(src_dir.as_deref(), src_store.as_ref()),
        copy_externals_to: (!in_place).then_some(store.as_ref()),
    };
    let mut folding = Folding::new(&store, &sources, options, progress, Naming::FirstFold);
    if let Some(dir) = &src_dir {
        let walk = walk::SortedWalk::new(dir, options.threshold, in_place)?;
        folding.consume_in_background(walk)?;
    } else {
        let walk = walk::StoreWalk::new(src_store.as_ref(), options.threshold, in_place)?;
        folding.consume_in_background(walk)?;
    }
    let Folding {
        rows,
        reused,
        mut summary,
        ..
    } = folding;
    publish::remove_unlisted_containers(store.as_ref(), &rows)?;
    let entries = summary.files_folded + summary.symlinks + summary.dirs + summary.files_kept;
    let catalog = publish::publish_catalog(store.as_ref(), rows, options, entries, root_meta)?;
    summary.containers = catalog.len() as u64;
    summary.bytes_stored = catalog.iter().map(|r| r.file_len).sum();
    summary.objects_before = summary.files_folded + summary.symlinks + summary.files_kept;
    summary.containers_reused = reused;
    summary.dataset = root.to_path_buf();
    if options.remove_originals {
        let (removed, changed) = publish::remove_originals(&store, progress)?;
        summary.originals_removed = removed;
        summary.originals_changed = changed;
    }
    summary.objects_after = objects_after(&summary, in_place);
    summary.reduction_percent = reduction(summary.objects_before, summary.objects_after);
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// A path as text for a report: serde refuses paths that are not UTF-8.
fn path_for_display<S: serde::Serializer>(
    path: &Path,
    to: S,
) -> std::result::Result<S::Ok, S::Error> {
    to.serialize_str(&path.to_string_lossy())
}

/// The tree a fold reads: its store, and its directory when it is local (walked with the
/// filesystem's own calls). A local source must be a directory.
fn open_source(src: &Path) -> Result<(Arc<dyn Store>, Option<PathBuf>)> {
    let dir = match crate::store::locate(src)? {
        Location::Local(dir) => Some(dir),
        Location::Uri(_) => None,
    };
    if dir.as_ref().is_some_and(|dir| !dir.is_dir()) {
        return Err(Error::Refused {
            path: src.to_path_buf(),
            reason: "the source is not a directory".into(),
        });
    }
    Ok((root_store(src)?, dir))
}

/// The store a dataset root lives in: a URI (`scheme://...`) or a local directory.
fn root_store(root: &Path) -> Result<Arc<dyn Store>> {
    crate::store::open(root)
}

/// A tree folded to a new root may not hold its own top-level `.sheaf`: that name is where a
/// dataset keeps its containers.
fn refuse_reserved_name(src: &Path) -> Result<()> {
    let reserved = src.join(crate::layout::SHEAF_DIR);
    if reserved.symlink_metadata().is_ok() {
        return Err(Error::Refused {
            path: reserved,
            reason:
                "the source holds a top-level `.sheaf`, a name sheaf reserves for its own files"
                    .into(),
        });
    }
    Ok(())
}

fn check_options(options: &FoldOptions) -> Result<()> {
    if options.threshold == 0 || options.threshold > MAX_ENTRY_LEN {
        return Err(invalid(
            Setting::Threshold,
            format!(
                "the threshold must be between 1 byte and {} MiB",
                MAX_ENTRY_LEN >> 20
            ),
        ));
    }
    if options.limits.bytes == 0 || options.limits.entries == 0 {
        return Err(invalid(
            Setting::ContainerLimits,
            "container limits must be positive".into(),
        ));
    }
    Ok(())
}

fn invalid(setting: Setting, reason: String) -> Error {
    Error::InvalidSetting { setting, reason }
}

/// Entries in path order, turned into containers one batch at a time.
struct Folding<'a> {
    store: &'a Arc<dyn Store>,
    sources: &'a write::Sources<'a>,
    options: &'a FoldOptions,
    progress: &'a dyn Progress,
    /// What the containers are called and which level of the catalog they form.
    naming: Naming<'a>,
    rows: Vec<CatalogRow>,
    reused: u64,
    summary: FoldSummary,
}

/// Walked entries cross from the walk's thread to the writer in bundles of this many: one
/// hand-over (and at most one wake-up) per bundle rather than per entry, which on a tree of
/// tiny files was a wake-up per file.
const WALK_BUNDLE: usize = 512;

/// Bundles queued between the walk's thread and the writer: enough to keep the walk ahead of
/// the writer (16,384 entries), few enough to stay small (about 100 bytes an entry).
const WALK_AHEAD: usize = 32;

impl<'a> Folding<'a> {
    /// Nothing folded yet: containers go to `store`, named as `naming` says.
    fn new(
        store: &'a Arc<dyn Store>,
        sources: &'a write::Sources<'a>,
        options: &'a FoldOptions,
        progress: &'a dyn Progress,
        naming: Naming<'a>,
    ) -> Self {
        Folding {
            store,
            sources,
            options,
            progress,
            naming,
            rows: Vec::new(),
            reused: 0,
            summary: FoldSummary::default(),
        }
    }

    /// Walks on a thread of its own, so entries are read and written while the walk goes on
    /// (a container's first entries are read before its last are found).
    fn consume_in_background(
        &mut self,
        walk: impl Iterator<Item = Result<Walked>> + Send,
    ) -> Result<()> {
        std::thread::scope(|scope| {
            let (found, queued) = std::sync::mpsc::sync_channel::<Vec<_>>(WALK_AHEAD);
            scope.spawn(move || {
                let mut bundle = Vec::with_capacity(WALK_BUNDLE);
                for item in walk {
                    bundle.push(item);
                    if bundle.len() == WALK_BUNDLE {
                        let full = std::mem::replace(&mut bundle, Vec::with_capacity(WALK_BUNDLE));
                        // A closed queue means the fold stopped: stop walking too.
                        if found.send(full).is_err() {
                            return;
                        }
                    }
                }
                let _ = found.send(bundle);
            });
            // `queued` is dropped when this returns, which stops the walk on an error.
            self.consume(scope, queued.into_iter().flatten())
        })
    }

    fn consume<'scope>(
        &mut self,
        scope: &'scope Scope<'scope, '_>,
        walked: impl IntoIterator<Item = Result<Walked>>,
    ) -> Result<()>
    where
        'a: 'scope,
    {
        let mut cutter = plan::Cutter::new(self.options.limits);
        let mut filling = None;
        for item in walked {
            let entry = match item? {
                Walked::Special(path) => {
                    self.summary.special_skipped += 1;
                    self.progress.warn(&format!(
                        "skipped {} (not a file, directory or symlink)",
                        path.display()
                    ));
                    continue;
                }
                Walked::Entry(entry) => entry,
            };
            tally(&mut self.summary, &entry);
            if cutter.starts_group(&entry) {
                if let Some(full) = filling.take() {
                    self.close(full)?;
                }
            }
            let current = match &mut filling {
                Some(current) => current,
                None => filling.insert(self.open(scope)?),
            };
            if !current.push(entry) {
                // The container's writer stopped on an error: closing it returns the error.
                return self.close(filling.take().expect("a container is open"));
            }
        }
        match filling {
            Some(last) => self.close(last),
            None => Ok(()),
        }
    }

    /// The next container's name.
    fn next_name(&self) -> String {
        let seq = self.rows.len() as u32;
        match self.naming {
            Naming::FirstFold => container_name(0, seq),
            Naming::Change { txn } => txn_container_name(txn, seq),
            Naming::Part { txn, part, .. } => part_container_name(txn, part, seq),
        }
    }

    /// Starts the next container: written as its entries arrive, unless an interrupted run of
    /// this fold left one of the same name, which is kept if it holds exactly the same entries.
    fn open<'scope>(&self, scope: &'scope Scope<'scope, '_>) -> Result<Filling<'scope>>
    where
        'a: 'scope,
    {
        let key = container_key(&self.next_name());
        if matches!(self.store.len(&key), Ok(Some(_))) {
            return Ok(Filling::Held(Vec::new()));
        }
        write::ContainerStream::start(
            scope,
            self.store.as_ref(),
            key,
            self.sources,
            self.options,
            self.progress,
        )
        .map(Filling::Streaming)
    }

    /// Finishes the container being filled and lists it.
    fn close(&mut self, filling: Filling) -> Result<()> {
        let name = self.next_name();
        let written = match filling {
            Filling::Streaming(stream) => stream.finish()?,
            Filling::Held(planned) => {
                if let Some(row) = publish::reusable_container(
                    self.store,
                    &name,
                    &planned,
                    self.sources,
                    self.options,
                ) {
                    self.reused += 1;
                    self.progress
                        .advance(planned.len() as u64, planned.iter().map(|e| e.len).sum());
                    self.rows.push(row);
                    return Ok(());
                }
                write::write_container(
                    self.store.as_ref(),
                    container_key(&name),
                    planned,
                    self.sources,
                    self.options,
                    self.progress,
                )?
            }
        };
        self.rows
            .push(written.catalog_row(&name, self.naming.level()));
        Ok(())
    }
}

/// How a fold names its containers, and whether they form the bottom level of a catalog (a
/// dataset's first fold) or one above it (a change, whose containers keep their path filters).
#[derive(Clone, Copy)]
enum Naming<'a> {
    FirstFold,
    /// A change to a published dataset, by transaction `txn`.
    Change {
        txn: &'a str,
    },
    /// Part `part` of a planned fold, by the plan's transaction `txn`.
    Part {
        txn: &'a str,
        part: u32,
        above: bool,
    },
}

impl Naming<'_> {
    fn level(&self) -> u32 {
        match self {
            Naming::FirstFold => 0,
            Naming::Change { .. } => 1,
            Naming::Part { above, .. } => u32::from(*above),
        }
    }
}

/// Where the entries of the container being filled go.
enum Filling<'scope> {
    /// Straight to a new container, as they arrive.
    Streaming(write::ContainerStream<'scope>),
    /// Held until the container is complete, to compare with the container of the same name
    /// an interrupted run left.
    Held(Vec<SourceEntry>),
}

impl Filling<'_> {
    /// Adds the next entry; false when the container's writer has stopped on an error.
    fn push(&mut self, entry: SourceEntry) -> bool {
        match self {
            Filling::Streaming(stream) => stream.push(entry),
            Filling::Held(planned) => {
                planned.push(entry);
                true
            }
        }
    }
}

/// Counts one entry into the summary.
fn tally(s: &mut FoldSummary, e: &SourceEntry) {
    match e.kind {
        EntryKind::File => {
            s.files_folded += 1;
            s.bytes_folded += e.len;
        }
        EntryKind::Symlink => s.symlinks += 1,
        EntryKind::Dir => s.dirs += 1,
        EntryKind::External => {
            s.files_kept += 1;
            s.bytes_kept += e.len;
        }
        EntryKind::Tombstone => {}
    }
}

/// Non-directory objects the storage system tracks after the fold.
fn objects_after(s: &FoldSummary, in_place: bool) -> u64 {
    let sheaf_files = s.containers + 1;
    let left_in_place = if in_place {
        s.files_folded + s.symlinks - s.originals_removed
    } else {
        0
    };
    sheaf_files + s.files_kept + left_in_place
}

fn reduction(before: u64, after: u64) -> f64 {
    if before == 0 {
        return 0.0;
    }
    100.0 * (1.0 - after as f64 / before as f64)
}
