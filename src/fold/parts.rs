//! A fold split for a cluster: a plan cuts the tree into contiguous path ranges of about equal
//! weight, each part folds its range wherever it runs (a Spark task, a Kubernetes indexed Job,
//! a Slurm array task), and one commit publishes every part's containers as one generation.
//!
//! Parts name their containers after the plan's transaction and their part number, so a part
//! that is retried, or run twice at once, writes the same bytes under the same names: only the
//! commit decides what is live, and `gc` removes what a failed attempt left.

use super::change::{self, commit_folded};
use super::walk::{self, PathRange, SourceEntry, Walked};
use super::write::{SourceTree, Sources};
use super::{
    check_options, open_source, publish, root_store, Compression, ContainerLimits, FoldOptions,
    FoldSummary, Folding, Naming,
};
use crate::error::{Error, IoContext, Result, Setting};
use crate::format::catalog::{Catalog, RootMeta};
use crate::format::generation::{self, Commit};
use crate::format::path::{cmp_paths, display, normalize};
use crate::format::{CatalogRow, EntryKind};
use crate::layout::{container_key, PLANS_KEY, STAGING_KEY};
use crate::progress::Progress;
use crate::read::Dataset;
use crate::store::Store;
use arrow_buffer::Buffer;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The version of the plan file this build writes and reads.
pub const PLAN_VERSION: u32 = 1;

/// A file or symlink costs a part about as much as this many bytes of data (opening,
/// listing and indexing it), so a range of many tiny files is not given as much of the tree
/// as a range of large ones.
const ENTRY_WEIGHT: u64 = 8 << 10;

/// Cut candidates the planner keeps per part asked for: with more, the parts come out closer
/// to equal; the planner's memory stays this many paths whatever the tree's size.
const CANDIDATES_PER_PART: usize = 64;

/// A planned fold: what to fold where, with which settings, cut into parts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    /// The transaction the generation is committed as; parts name their containers after it.
    pub txn: String,
    /// When the plan was made (nanoseconds since the epoch).
    pub created_ns: i64,
    /// The tree to fold, as given (a local path or a store URI).
    pub src: String,
    /// The dataset root, as given.
    pub dst: String,
    /// True: the parts add to the published dataset `dst` (as `sheaf fold --append`).
    pub append: bool,
    /// True: the tree is folded where it lies (`src` is `dst`): containers go under its
    /// `.sheaf/`, large files stay.
    #[serde(default)]
    pub in_place: bool,
    /// With `in_place`: once the generation is committed and re-reads clean, delete every
    /// folded original unchanged since it was listed.
    #[serde(default)]
    pub remove_originals: bool,
    /// With `append`: the dataset directory the tree goes under, hex (paths need not be UTF-8).
    pub prefix_hex: String,
    pub threshold: u64,
    pub container_size: u64,
    pub max_entries: usize,
    pub compress: String,
    /// The most parts asked for.
    pub partitions: u32,
    /// The source root directory's mode and time when it is local (recorded as the dataset's
    /// root), taken when the plan was made.
    #[serde(default)]
    pub root_mode: Option<u32>,
    #[serde(default)]
    pub root_mtime_ns: Option<i64>,
    /// What the planner found: every entry, and the bytes of the files among them.
    pub entries: u64,
    pub bytes: u64,
    pub parts: Vec<PlannedPart>,
}

/// One part: the run of the tree's path order it folds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlannedPart {
    pub part: u32,
    /// The first path of the range (hex; none: from the start), and as text for people.
    pub from_hex: Option<String>,
    pub from: Option<String>,
    /// The first path after the range (hex; none: to the end), and as text for people.
    pub until_hex: Option<String>,
    pub until: Option<String>,
    /// The planner's estimate of the part's work, in bytes (see `ENTRY_WEIGHT`).
    pub weight: u64,
}

impl PlannedPart {
    fn range(&self) -> Result<PathRange> {
        range_of_hex(self.from_hex.as_deref(), self.until_hex.as_deref())
    }
}

impl Plan {
    fn options(&self) -> Result<FoldOptions> {
        Ok(FoldOptions {
            threshold: self.threshold,
            limits: ContainerLimits {
                bytes: self.container_size,
                entries: self.max_entries,
            },
            compression: self.compress.parse::<Compression>().map_err(|reason| {
                Error::InvalidSetting {
                    setting: Setting::Compression,
                    reason,
                }
            })?,
            remove_originals: self.remove_originals,
        })
    }

    fn dir_key(&self) -> String {
        format!("{PLANS_KEY}/{}", self.txn)
    }

    fn part_key(&self, part: u32) -> String {
        format!("{}/part-{part:06}.sheaf", self.dir_key())
    }

    fn prefix(&self) -> Result<Vec<u8>> {
        unhex(&self.prefix_hex)
    }
}

/// What one part did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PartSummary {
    pub part: u32,
    /// True when an earlier run had finished this part: nothing was folded again.
    pub already_done: bool,
    pub files_folded: u64,
    pub bytes_folded: u64,
    pub symlinks: u64,
    pub dirs: u64,
    pub files_kept: u64,
    pub bytes_kept: u64,
    pub special_skipped: u64,
    pub containers: u64,
    pub bytes_stored: u64,
    pub containers_reused: u64,
    pub elapsed_secs: f64,
}

/// Key of the part summary in a part's result file.
const META_PART_SUMMARY: &str = "sheaf.part_summary";

/// A plan and where it is.
#[derive(Clone, Debug)]
pub struct Planned {
    pub plan: Plan,
    /// What `fold_part` and `commit` take: the plan file's path or URI.
    pub location: String,
    /// True when an unfinished plan of the same fold was found and is continued (its finished
    /// parts are not folded again) instead of a new one.
    pub resumed: bool,
}

/// What a plan makes of its tree.
#[derive(Clone, Copy, Debug)]
pub enum PlanKind<'a> {
    /// A new dataset at `dst` (missing or empty).
    NewRoot,
    /// A generation of the published dataset `dst`, the tree under `prefix`.
    Append { prefix: &'a [u8] },
    /// The tree's own dataset, folded where it lies (`dst` is `src`); with
    /// `FoldOptions::remove_originals` the commit then deletes the folded originals.
    InPlace,
}

/// Where the planner learns the tree's paths and sizes from, to cut it into parts of about
/// equal weight. The cuts decide only how evenly the work is shared: each part lists its own
/// range when it runs, so a plan is right (every entry folded once) whichever is used.
#[derive(Clone, Debug, Default)]
pub enum Listing {
    /// The planner lists the whole tree itself, one listing after another.
    #[default]
    Walk,
    /// Surveys of consecutive ranges of the tree, in path order, made apart (a Spark task
    /// each: see [`branch_points`] and [`survey`]), so the planner lists nothing.
    Surveys(Vec<Survey>),
    /// A uniform sample of a manifest's rows (an S3 inventory, a `hdfs dfs -ls -R` dump),
    /// with its totals: the planner lists nothing and estimates the weights.
    Sample(RowSample),
}

/// What a listing of one range of the tree found: its counts, and a bounded sample of its
/// paths in path order, each with the weight (see `ENTRY_WEIGHT`) of the range before it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Survey {
    /// The range surveyed (hex paths; none: from the start, to the end).
    pub from_hex: Option<String>,
    pub until_hex: Option<String>,
    pub entries: u64,
    pub bytes: u64,
    pub weight: u64,
    /// `(path in hex, weight before it in the range)`, in path order.
    pub samples: Vec<(String, u64)>,
}

/// A uniform random sample of the files a manifest lists (paths relative to the source, as
/// hex, and sizes), with the manifest's totals: what a caller that reads the manifest (the
/// Python package reads Parquet and CSV) gives the planner.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowSample {
    /// Files the manifest lists, and their bytes.
    pub rows: u64,
    pub bytes: u64,
    /// `(path in hex, size)` of the sampled rows, in any order.
    pub sample: Vec<(String, u64)>,
}

/// How deep below the source's root [`branch_points`] lists at most.
const BRANCH_DEPTH: usize = 3;

/// Paths that cut the tree, in path order, into at most `wanted` ranges that can be surveyed
/// apart ([`survey`]): the names of the top level, and of the levels under it while they are
/// fewer than `wanted` (three levels at most), evenly thinned. Lists a few directories,
/// never the tree.
pub fn branch_points(src: &Path, wanted: usize) -> Result<Vec<Vec<u8>>> {
    let (store, dir) = open_source(src)?;
    let list = |path: &[u8]| walk::list_level(store.as_ref(), dir.as_deref(), path);
    // Each point, and whether its directory may still be listed.
    let mut points: Vec<(Vec<u8>, bool)> = list(b"")?;
    for _ in 1..BRANCH_DEPTH {
        if points.len() >= wanted || !points.iter().any(|(_, open)| *open) {
            break;
        }
        let mut deeper = Vec::with_capacity(points.len());
        for (path, open) in points {
            let children = match open {
                true => list(&path)?,
                false => Vec::new(),
            };
            deeper.push((path, false));
            deeper.extend(children);
        }
        points = deeper;
    }
    let wanted = wanted.max(1);
    let cuts = points.len().min(wanted - 1);
    Ok((1..=cuts)
        .map(|k| points[k * points.len() / (cuts + 1)].0.clone())
        .collect())
}

/// The ranges between `points` (from [`branch_points`]): the first from the start of the tree,
/// the last to its end.
pub fn ranges_between(points: &[Vec<u8>]) -> Vec<PathRange> {
    let bounds: Vec<Option<Vec<u8>>> = std::iter::once(None)
        .chain(points.iter().cloned().map(Some))
        .chain(std::iter::once(None))
        .collect();
    bounds
        .windows(2)
        .map(|pair| PathRange {
            from: pair[0].clone(),
            until: pair[1].clone(),
        })
        .collect()
}

/// A range's bounds as hex (none: from the start, to the end), as plans and surveys give them.
pub fn range_hex(range: &PathRange) -> (Option<String>, Option<String>) {
    (
        range.from.as_deref().map(hex),
        range.until.as_deref().map(hex),
    )
}

/// The range between two hex bounds (see [`range_hex`]).
pub fn range_of_hex(from: Option<&str>, until: Option<&str>) -> Result<PathRange> {
    Ok(PathRange {
        from: from.map(unhex).transpose()?,
        until: until.map(unhex).transpose()?,
    })
}

/// Lists the range `range` of `src` (a task's share of a plan's listing) and returns what it
/// found, with at most `limit` sampled paths. `in_place`: the source's own top-level `.sheaf`
/// is skipped (an in-place fold's staging area) rather than refused.
pub fn survey(
    src: &Path,
    range: PathRange,
    threshold: u64,
    in_place: bool,
    limit: usize,
    progress: &dyn Progress,
) -> Result<Survey> {
    let (store, dir) = open_source(src)?;
    let sources = (store.as_ref(), dir.as_deref());
    let cuts = walk_cuts(sources, range.clone(), threshold, in_place, limit, progress)?;
    Ok(cuts.survey(&range))
}

/// The cut candidates of a walk of `range`.
fn walk_cuts(
    (store, dir): (&dyn Store, Option<&Path>),
    range: PathRange,
    threshold: u64,
    in_place: bool,
    limit: usize,
    progress: &dyn Progress,
) -> Result<Cuts> {
    progress.phase("plan", 0, 0);
    let mut cuts = Cuts::new(limit);
    let mut tally = |walked: Result<Walked>| -> Result<()> {
        if let Walked::Entry(entry) = walked? {
            let weight = entry_weight(&entry);
            progress.advance(1, weight);
            cuts.offer(&entry.path, weight, file_bytes(&entry));
        }
        Ok(())
    };
    match dir {
        Some(dir) => {
            walk::SortedWalk::within(dir, threshold, in_place, range)?.try_for_each(&mut tally)?
        }
        None => {
            walk::StoreWalk::within(store, threshold, in_place, range)?.try_for_each(&mut tally)?
        }
    }
    Ok(cuts)
}

/// Plans a fold of `src` into `dst` (see [`PlanKind`]) in at most `partitions` parts of about equal weight, writes the
/// plan into `dst`'s staging area and returns it with its location (what `fold_part` and
/// `commit` take). The planner lists the whole tree once, keeping a bounded sample of cut
/// points, never the listing. When `dst` holds an unfinished plan of the same fold (same
/// source, settings and partitions), that plan is continued instead: a job that failed is
/// re-run without folding again the parts it finished (they hold the tree as it was then).
pub fn plan(
    src: &Path,
    dst: &Path,
    kind: PlanKind,
    options: &FoldOptions,
    partitions: u32,
    listing: Listing,
    progress: &dyn Progress,
) -> Result<Planned> {
    check_options(options)?;
    if partitions == 0 {
        return Err(Error::InvalidSetting {
            setting: Setting::Partitions,
            reason: "at least one partition".into(),
        });
    }
    let in_place = matches!(kind, PlanKind::InPlace);
    if options.remove_originals && !in_place {
        return Err(Error::InvalidSetting {
            setting: Setting::RemoveOriginals,
            reason: "only applies to an in-place fold".into(),
        });
    }
    let (src_store, src_dir) = open_source(src)?;
    let store = root_store(dst)?;
    let prefix = match kind {
        PlanKind::Append { prefix } => normalize(prefix)?,
        _ => Vec::new(),
    };
    if !in_place {
        let src_dir = src_dir.as_deref();
        change::refuse_unfit_source(src, src_store.as_ref(), src_dir, &store, &prefix)?;
    }
    match kind {
        PlanKind::Append { .. } => drop(Dataset::open_in(Arc::clone(&store))?),
        PlanKind::NewRoot => {
            publish::refuse_published(store.as_ref())?;
            publish::check_new_root(src_store.as_ref(), store.as_ref())?;
        }
        PlanKind::InPlace => {
            if src_store.uri("") != store.uri("") {
                return Err(Error::Refused {
                    path: dst.to_path_buf(),
                    reason: "an in-place fold's dataset is its source".into(),
                });
            }
            if generation::newest(store.as_ref())?.is_some() {
                return Err(Error::Refused {
                    path: dst.to_path_buf(),
                    reason: "already holds a published dataset: fold what changed with `sheaf fold --in-place` on one machine, or add a tree with `--append`".into(),
                });
            }
        }
    }
    let root_meta = publish::source_root_meta(src_dir.as_deref());
    let wanted = Plan {
        version: PLAN_VERSION,
        txn: generation::new_txn(),
        created_ns: crate::time::now_ns(),
        src: src.to_string_lossy().into_owned(),
        dst: dst.to_string_lossy().into_owned(),
        append: matches!(kind, PlanKind::Append { .. }),
        in_place,
        remove_originals: options.remove_originals,
        prefix_hex: hex(&prefix),
        threshold: options.threshold,
        container_size: options.limits.bytes,
        max_entries: options.limits.entries,
        compress: options.compression.to_string(),
        partitions,
        root_mode: root_meta.map(|r| r.mode),
        root_mtime_ns: root_meta.map(|r| r.mtime_ns),
        entries: 0,
        bytes: 0,
        parts: Vec::new(),
    };
    if let Some((plan, location)) = unfinished_plan(store.as_ref(), &wanted)? {
        return Ok(Planned {
            plan,
            location,
            resumed: true,
        });
    }
    let limit = partitions as usize * CANDIDATES_PER_PART;
    let cuts = match listing {
        Listing::Walk => {
            let range = PathRange::ALL;
            let sources = (src_store.as_ref(), src_dir.as_deref());
            walk_cuts(sources, range, options.threshold, in_place, limit, progress)?
        }
        Listing::Surveys(surveys) => Cuts::merged(&surveys, limit)?,
        Listing::Sample(sample) => Cuts::estimated(sample, limit)?,
    };
    let plan = Plan {
        entries: cuts.entries,
        bytes: cuts.bytes,
        parts: cuts.parts(partitions as usize),
        ..wanted
    };
    let key = plan_key(&plan.txn);
    let json = serde_json::to_vec_pretty(&plan).expect("a plan serializes");
    let mut out = store.create(&key)?;
    out.write_all(&json).ctx("write", store.uri(&key))?;
    out.finish()?;
    Ok(Planned {
        plan,
        location: store.uri(&key),
        resumed: false,
    })
}

fn plan_key(txn: &str) -> String {
    format!("{PLANS_KEY}/{txn}/plan.json")
}

/// An unfinished plan in `store` of the same fold as `wanted`, and its location.
fn unfinished_plan(store: &dyn Store, wanted: &Plan) -> Result<Option<(Plan, String)>> {
    let same = |p: &Plan| {
        (&p.src, &p.dst, p.append, &p.prefix_hex, &p.compress)
            == (
                &wanted.src,
                &wanted.dst,
                wanted.append,
                &wanted.prefix_hex,
                &wanted.compress,
            )
            && (p.threshold, p.container_size, p.max_entries, p.partitions)
                == (
                    wanted.threshold,
                    wanted.container_size,
                    wanted.max_entries,
                    wanted.partitions,
                )
    };
    let mut found: Vec<Plan> = Vec::new();
    for object in store.list(&format!("{PLANS_KEY}/"))? {
        if !object.key.ends_with("/plan.json") {
            continue;
        }
        let location = PathBuf::from(store.uri(&object.key));
        // A plan this build cannot read is someone else's business, not a reason to fail.
        if let Ok(plan) = read_plan(&location) {
            if same(&plan) && committed_as(store, &plan)?.is_none() {
                found.push(plan);
            }
        }
    }
    // The newest, should there be several.
    Ok(found.into_iter().max_by_key(|p| p.created_ns).map(|plan| {
        let location = store.uri(&plan_key(&plan.txn));
        (plan, location)
    }))
}

/// Reads the plan at `location` (a local path or a store URI).
pub fn read_plan(location: &Path) -> Result<Plan> {
    let (dir, name) = match (location.parent(), location.file_name()) {
        (Some(dir), Some(name)) => (dir, name.to_string_lossy().into_owned()),
        _ => {
            return Err(Error::Refused {
                path: location.to_path_buf(),
                reason: "is not the location of a plan file".into(),
            })
        }
    };
    let bytes = match crate::store::open(dir)?.read(&name) {
        Err(Error::NotFound { .. }) => {
            return Err(Error::Refused {
                path: location.to_path_buf(),
                reason: "no plan is there: it was never made, or it was committed (a commit removes its plan)".into(),
            })
        }
        read => read?,
    };
    let plan: Plan = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        file: location.to_path_buf(),
        reason: format!("not a sheaf plan: {e}"),
    })?;
    if plan.version != PLAN_VERSION {
        return Err(Error::Refused {
            path: location.to_path_buf(),
            reason: format!(
                "is a plan of version {}; this sheaf reads version {PLAN_VERSION}",
                plan.version
            ),
        });
    }
    check_plan(&plan, location)?;
    Ok(plan)
}

/// A plan's parts must be numbered in order and tile the path order without gaps.
fn check_plan(plan: &Plan, location: &Path) -> Result<()> {
    let corrupt = |reason: &str| Error::Corrupt {
        file: location.to_path_buf(),
        reason: reason.into(),
    };
    if !plan.txn.bytes().all(|b| b.is_ascii_hexdigit()) || plan.txn.len() != 32 {
        return Err(corrupt("its transaction id is not 32 hex digits"));
    }
    let Some(first) = plan.parts.first() else {
        return Err(corrupt("it lists no parts"));
    };
    if first.from_hex.is_some()
        || plan
            .parts
            .last()
            .and_then(|p| p.until_hex.as_ref())
            .is_some()
    {
        return Err(corrupt("its parts do not cover the whole tree"));
    }
    for (i, pair) in plan.parts.windows(2).enumerate() {
        if pair[0].part as usize != i || pair[0].until_hex != pair[1].from_hex {
            return Err(corrupt("its parts are not contiguous and in order"));
        }
    }
    Ok(())
}

/// Folds part `part` of the plan at `location`: the entries of its range go into containers
/// named after the plan and the part, and the rows of those containers into the part's result
/// file in the staging area. A part an earlier run finished is not folded again.
pub fn fold_part(location: &Path, part: u32, progress: &dyn Progress) -> Result<PartSummary> {
    let started = Instant::now();
    let plan = read_plan(location)?;
    let Some(planned) = plan.parts.get(part as usize) else {
        return Err(Error::InvalidSetting {
            setting: Setting::Partitions,
            reason: format!(
                "part {part} is not in the plan (its parts are 0 to {})",
                plan.parts.len() - 1
            ),
        });
    };
    let store = root_store(Path::new(&plan.dst))?;
    if let Some(mut done) = finished_part(store.as_ref(), &plan, part)? {
        done.already_done = true;
        return Ok(done);
    }
    let options = plan.options()?;
    let src = PathBuf::from(&plan.src);
    let (src_store, src_dir) = open_source(&src)?;
    let prefix = plan.prefix()?;
    // Directories on the way to an append's prefix come first in the path order: part 0's.
    let above = match (plan.append, part) {
        (true, 0) => {
            let base = Dataset::open_in(Arc::clone(&store))?;
            change::dirs_to_prefix(&base, &prefix, src_dir.as_deref(), plan.created_ns)?
        }
        _ => Vec::new(),
    };
    progress.phase("fold", 0, 0);
    let sources = Sources {
        src: SourceTree::of(src_dir.as_deref(), src_store.as_ref()),
        // In place, large files stay where they are.
        copy_externals_to: (!plan.in_place).then_some(store.as_ref()),
    };
    let naming = Naming::Part {
        txn: &plan.txn,
        part,
        above: plan.append,
    };
    let mut folding = Folding::new(&store, &sources, &options, progress, naming);
    let range = planned.range()?;
    let under = |walked: Result<Walked>| change::under_prefix(walked, &prefix);
    let ahead = above.into_iter().map(|e| Ok(Walked::Entry(e)));
    match &src_dir {
        Some(dir) => {
            let walk = walk::SortedWalk::within(dir, options.threshold, plan.in_place, range)?;
            folding.consume_in_background(ahead.chain(walk.map(under)))?;
        }
        None => {
            let walk = walk::StoreWalk::within(
                src_store.as_ref(),
                options.threshold,
                plan.in_place,
                range,
            )?;
            folding.consume_in_background(ahead.chain(walk.map(under)))?;
        }
    }
    let Folding {
        rows,
        reused,
        summary,
        ..
    } = folding;
    let done = PartSummary {
        part,
        already_done: false,
        files_folded: summary.files_folded,
        bytes_folded: summary.bytes_folded,
        symlinks: summary.symlinks,
        dirs: summary.dirs,
        files_kept: summary.files_kept,
        bytes_kept: summary.bytes_kept,
        special_skipped: summary.special_skipped,
        containers: rows.len() as u64,
        bytes_stored: rows.iter().map(|r| r.file_len).sum(),
        containers_reused: reused,
        elapsed_secs: started.elapsed().as_secs_f64(),
    };
    let meta = HashMap::from([(
        META_PART_SUMMARY.to_owned(),
        serde_json::to_string(&done).expect("a summary serializes"),
    )]);
    let key = plan.part_key(part);
    let bytes = Catalog::new(rows, meta).to_bytes()?;
    let mut out = store.create(&key)?;
    out.write_all(&bytes).ctx("write", store.uri(&key))?;
    out.finish()?;
    Ok(done)
}

/// The result of a part an earlier run finished, if its file is there and every container it
/// lists is too, at its length.
fn finished_part(store: &dyn Store, plan: &Plan, part: u32) -> Result<Option<PartSummary>> {
    match read_part(store, plan, part) {
        Ok((rows, summary)) => {
            for row in &rows {
                if store.len(&container_key(&row.name))? != Some(row.file_len) {
                    return Ok(None);
                }
            }
            Ok(Some(summary))
        }
        Err(Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_part(store: &dyn Store, plan: &Plan, part: u32) -> Result<(Vec<CatalogRow>, PartSummary)> {
    let key = plan.part_key(part);
    let file = PathBuf::from(store.uri(&key));
    let catalog = Catalog::from_buffer(Buffer::from_vec(store.read(&key)?), &file)?;
    let summary = catalog
        .metadata()
        .get(META_PART_SUMMARY)
        .and_then(|json| serde_json::from_str::<PartSummary>(json).ok())
        .ok_or_else(|| Error::Corrupt {
            file: file.clone(),
            reason: "the part's summary is missing or unreadable".into(),
        })?;
    if summary.part != part {
        return Err(Error::Corrupt {
            file,
            reason: format!("holds the result of part {}, not {part}", summary.part),
        });
    }
    Ok((catalog.rows().to_vec(), summary))
}

/// Commits the plan at `location`: once every part has finished, their containers, in part
/// order, become the dataset's first generation (or, for an append, the next generation on
/// top of the newest), committed as the plan's transaction, so a commit run twice commits
/// once. Then the plan's staging files go.
pub fn commit(location: &Path, progress: &dyn Progress) -> Result<FoldSummary> {
    let started = Instant::now();
    let plan = read_plan(location)?;
    let store = root_store(Path::new(&plan.dst))?;
    progress.phase("commit", plan.parts.len() as u64, 0);
    let mut rows = Vec::new();
    let mut missing = Vec::new();
    let mut summary = FoldSummary {
        dataset: PathBuf::from(&plan.dst),
        ..FoldSummary::default()
    };
    for part in 0..plan.parts.len() as u32 {
        match finished_part(store.as_ref(), &plan, part)? {
            None => missing.push(part),
            Some(done) => {
                let (part_rows, _) = read_part(store.as_ref(), &plan, part)?;
                add_part(&mut summary, &done);
                rows.extend(part_rows);
                progress.advance(1, 0);
            }
        }
    }
    if let Some(number) = committed_as(store.as_ref(), &plan)? {
        summary.generation = number;
        remove_plan(store.as_ref(), &plan)?;
        return Ok(summary);
    }
    if !missing.is_empty() {
        return Err(Error::Refused {
            path: location.to_path_buf(),
            reason: format!(
                "{} of {} parts have not finished (parts {}): run `sheaf fold --part K PLAN` for each, then commit again",
                missing.len(),
                plan.parts.len(),
                list_numbers(&missing)
            ),
        });
    }
    summary.objects_before = summary.files_folded + summary.symlinks + summary.files_kept;
    if plan.append {
        let base = Dataset::open_in(Arc::clone(&store))?;
        commit_folded(&base, &store, rows, plan.txn.clone(), &mut summary)?;
    } else {
        summary.containers = rows.len() as u64;
        summary.bytes_stored = rows.iter().map(|r| r.file_len).sum();
        let commit = Commit {
            operation: "fold",
            txn: plan.txn.clone(),
            added: summary.files_folded + summary.symlinks + summary.dirs + summary.files_kept,
            removed: 0,
            threshold: Some(plan.threshold),
            root: plan
                .root_mode
                .zip(plan.root_mtime_ns)
                .map(|(mode, mtime_ns)| RootMeta { mode, mtime_ns }),
        };
        let bytes = commit.encode(0, rows)?;
        if !generation::commit(store.as_ref(), 0, &bytes, &commit.txn)? {
            return Err(Error::Refused {
                path: PathBuf::from(store.uri("")),
                reason: "another fold published a dataset here first; this plan's containers were not published".into(),
            });
        }
    }
    remove_plan(store.as_ref(), &plan)?;
    if plan.remove_originals {
        let (removed, changed) = publish::remove_originals(&store, progress)?;
        summary.originals_removed = removed;
        summary.originals_changed = changed;
    }
    summary.objects_after = super::objects_after(&summary, plan.in_place);
    summary.reduction_percent = super::reduction(summary.objects_before, summary.objects_after);
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The generation the plan's transaction was committed as, if it was: only generations
/// committed since the plan was made are looked at.
fn committed_as(store: &dyn Store, plan: &Plan) -> Result<Option<u64>> {
    let Some(newest) = generation::newest(store)? else {
        return Ok(None);
    };
    for number in (0..=newest).rev() {
        let snapshot = match generation::read(store, generation::Which::Number(number)) {
            Ok(snapshot) => snapshot,
            // Collected by `gc`: older than anything this plan could have committed.
            Err(Error::NoSuchGeneration { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let info = generation::info(number, &snapshot.catalog);
        if info.txn == plan.txn {
            return Ok(Some(number));
        }
        if info.time_ns < plan.created_ns {
            return Ok(None);
        }
    }
    Ok(None)
}

/// Deletes the plan's files, then the plans' directory and the staging area when nothing else
/// is left in them (another plan may be under way beside this one).
fn remove_plan(store: &dyn Store, plan: &Plan) -> Result<()> {
    remove_plan_dir(store, &plan.dir_key())
}

/// [`remove_plan`] by the plan's directory.
fn remove_plan_dir(store: &dyn Store, dir: &str) -> Result<()> {
    for object in store.list(&format!("{dir}/"))? {
        store.delete(&object.key)?;
    }
    store.remove_dir(dir)?;
    if store.list(&format!("{PLANS_KEY}/"))?.is_empty() {
        store.remove_dir(PLANS_KEY)?;
    }
    if store.list(&format!("{STAGING_KEY}/"))?.is_empty() {
        store.remove_dir(STAGING_KEY)?;
    }
    Ok(())
}

/// Deletes the plans `gc` finds finished or given up: a plan whose transaction was committed
/// (the commit was stopped before it removed its plan), or one none of whose files changed
/// since `cutoff` (a job abandoned; the containers its parts wrote go with the other unused
/// containers older than the window). A plan being folded now has newer files and stays.
/// Returns how many plans were deleted.
pub(crate) fn remove_stale_plans(store: &dyn Store, cutoff: i64) -> Result<u64> {
    let mut newest_file: HashMap<String, i64> = HashMap::new();
    for object in store.list(&format!("{PLANS_KEY}/"))? {
        let rest = &object.key[PLANS_KEY.len() + 1..];
        let Some((txn, _)) = rest.split_once('/') else {
            continue;
        };
        let newest = newest_file.entry(txn.to_owned()).or_insert(i64::MIN);
        *newest = (*newest).max(object.mtime_ns);
    }
    let mut removed = 0;
    for (txn, newest) in newest_file {
        let dir = format!("{PLANS_KEY}/{txn}");
        let location = PathBuf::from(store.uri(&plan_key(&txn)));
        let committed = match read_plan(&location) {
            Ok(plan) => committed_as(store, &plan)?.is_some(),
            Err(_) => false,
        };
        if committed || newest < cutoff {
            remove_plan_dir(store, &dir)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn add_part(summary: &mut FoldSummary, part: &PartSummary) {
    summary.files_folded += part.files_folded;
    summary.bytes_folded += part.bytes_folded;
    summary.symlinks += part.symlinks;
    summary.dirs += part.dirs;
    summary.files_kept += part.files_kept;
    summary.bytes_kept += part.bytes_kept;
    summary.special_skipped += part.special_skipped;
    summary.containers_reused += part.containers_reused;
}

/// `0-3, 7` for [0, 1, 2, 3, 7].
fn list_numbers(numbers: &[u32]) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &n in numbers {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == n => *end = n,
            _ => runs.push((n, n)),
        }
    }
    let text: Vec<String> = runs
        .iter()
        .map(|&(a, b)| match a == b {
            true => a.to_string(),
            false => format!("{a}-{b}"),
        })
        .collect();
    text.join(", ")
}

/// The bytes of data an entry brings (files only).
fn file_bytes(entry: &SourceEntry) -> u64 {
    match entry.kind {
        EntryKind::File | EntryKind::External => entry.len,
        _ => 0,
    }
}

fn entry_weight(entry: &SourceEntry) -> u64 {
    match entry.kind {
        EntryKind::File | EntryKind::External => entry.len + ENTRY_WEIGHT,
        EntryKind::Symlink => ENTRY_WEIGHT,
        EntryKind::Dir | EntryKind::Tombstone => 0,
    }
}

/// A bounded sample of the walk's paths with the weight before each: every `stride`-th entry,
/// the stride doubling (and every other sample dropped) whenever the sample outgrows `limit`.
struct Cuts {
    limit: usize,
    stride: u64,
    entries: u64,
    bytes: u64,
    weight: u64,
    samples: Vec<(Vec<u8>, u64)>,
}

impl Cuts {
    fn new(limit: usize) -> Cuts {
        Cuts {
            limit: limit.max(2),
            stride: 1,
            entries: 0,
            bytes: 0,
            weight: 0,
            samples: Vec::new(),
        }
    }

    fn offer(&mut self, path: &[u8], weight: u64, bytes: u64) {
        if self.entries % self.stride == 0 {
            self.samples.push((path.to_vec(), self.weight));
            if self.samples.len() > self.limit {
                self.halve();
            }
        }
        self.entries += 1;
        self.weight += weight;
        self.bytes += bytes;
    }

    /// Drops every other sample (the first is kept).
    fn halve(&mut self) {
        let mut i = 0;
        self.samples.retain(|_| {
            i += 1;
            i % 2 == 1
        });
        self.stride *= 2;
    }

    /// What a task returns of its range: the counts and the samples.
    fn survey(self, range: &PathRange) -> Survey {
        let (from_hex, until_hex) = range_hex(range);
        Survey {
            from_hex,
            until_hex,
            entries: self.entries,
            bytes: self.bytes,
            weight: self.weight,
            samples: self
                .samples
                .into_iter()
                .map(|(path, before)| (hex(&path), before))
                .collect(),
        }
    }

    /// The surveys of consecutive ranges, in path order, as one: each one's weights moved by
    /// the weight of the ranges before it, thinned to `limit` samples. Refuses surveys out of
    /// order (their cuts would not be in path order).
    fn merged(surveys: &[Survey], limit: usize) -> Result<Cuts> {
        let mut cuts = Cuts::new(limit);
        for survey in surveys {
            for (path, before) in &survey.samples {
                let path = unhex(path)?;
                if cuts
                    .samples
                    .last()
                    .is_some_and(|(last, _)| cmp_paths(last, &path) != Ordering::Less)
                {
                    return Err(Error::InvalidSetting {
                        setting: Setting::Listing,
                        reason: format!(
                            "the surveys are not in path order ({:?} after {:?})",
                            display(&path),
                            display(&cuts.samples.last().expect("checked").0)
                        ),
                    });
                }
                cuts.samples
                    .push((path, cuts.weight.saturating_add(*before)));
            }
            cuts.entries = cuts.entries.saturating_add(survey.entries);
            cuts.bytes = cuts.bytes.saturating_add(survey.bytes);
            cuts.weight = cuts.weight.saturating_add(survey.weight);
        }
        while cuts.samples.len() > cuts.limit {
            cuts.halve();
        }
        Ok(cuts)
    }

    /// Cut candidates estimated from a uniform sample of a manifest's rows: the sample in path
    /// order, each row's weight before it scaled from the sample's weight to the manifest's.
    fn estimated(sample: RowSample, limit: usize) -> Result<Cuts> {
        let mut rows = sample
            .sample
            .iter()
            .map(|(path, len)| Ok((unhex(path)?, *len)))
            .collect::<Result<Vec<_>>>()?;
        rows.sort_unstable_by(|a, b| cmp_paths(&a.0, &b.0));
        rows.dedup_by(|a, b| a.0 == b.0);
        let weight_of = |len: u64| len.saturating_add(ENTRY_WEIGHT);
        let total = sample
            .bytes
            .saturating_add(sample.rows.saturating_mul(ENTRY_WEIGHT));
        let sampled: u128 = rows
            .iter()
            .map(|(_, len)| u128::from(weight_of(*len)))
            .sum();
        let mut cuts = Cuts::new(limit);
        let mut before: u128 = 0;
        for (path, len) in rows {
            let scaled = before * u128::from(total) / sampled.max(1);
            cuts.samples.push((path, scaled as u64));
            before += u128::from(weight_of(len));
        }
        while cuts.samples.len() > cuts.limit {
            cuts.halve();
        }
        cuts.entries = sample.rows;
        cuts.bytes = sample.bytes;
        cuts.weight = total;
        Ok(cuts)
    }

    /// At most `wanted` parts: part k starts at the first sampled path with at least k/wanted
    /// of the weight before it. Fewer when the tree is too small to cut that often.
    fn parts(&self, wanted: usize) -> Vec<PlannedPart> {
        let mut starts: Vec<(Vec<u8>, u64)> = Vec::new();
        for k in 1..wanted as u64 {
            let target = (u128::from(self.weight) * u128::from(k) / wanted as u128) as u64;
            let Some(found) = self.samples.iter().find(|(_, before)| *before >= target) else {
                break;
            };
            let is_new = starts.last().is_none_or(|(path, _)| path != &found.0);
            if found.1 > 0 && is_new {
                starts.push(found.clone());
            }
        }
        let mut parts = Vec::with_capacity(starts.len() + 1);
        let mut from: Option<(Vec<u8>, u64)> = None;
        for next in starts.into_iter().map(Some).chain([None]) {
            let begin = from.as_ref().map_or(0, |(_, w)| *w);
            let end = next.as_ref().map_or(self.weight, |(_, w)| *w);
            parts.push(PlannedPart {
                part: parts.len() as u32,
                from_hex: from.as_ref().map(|(p, _)| hex(p)),
                from: from.as_ref().map(|(p, _)| display(p)),
                until_hex: next.as_ref().map(|(p, _)| hex(p)),
                until: next.as_ref().map(|(p, _)| display(p)),
                weight: end - begin,
            });
            from = next;
        }
        parts
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>> {
    let bad = || Error::Corrupt {
        file: PathBuf::from("plan"),
        reason: format!("{text:?} is not a path in hex"),
    };
    if text.len() % 2 != 0 {
        return Err(bad());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, len: u64) -> SourceEntry {
        SourceEntry::test_file(path, len)
    }

    #[test]
    fn parts_tile_the_tree_in_about_equal_weights() {
        let mut cuts = Cuts::new(4 * CANDIDATES_PER_PART);
        for i in 0..10_000 {
            let e = entry(&format!("f{i:05}"), 10_000);
            cuts.offer(&e.path, entry_weight(&e), file_bytes(&e));
        }
        let parts = cuts.parts(4);
        assert_eq!(parts.len(), 4);
        assert!(parts[0].from_hex.is_none() && parts[3].until_hex.is_none());
        for pair in parts.windows(2) {
            assert_eq!(pair[0].until_hex, pair[1].from_hex);
        }
        let total: u64 = parts.iter().map(|p| p.weight).sum();
        assert_eq!(total, cuts.weight);
        for part in &parts {
            let share = part.weight as f64 / total as f64;
            assert!((0.23..0.27).contains(&share), "{share}");
        }
        assert!(cuts.samples.len() <= 4 * CANDIDATES_PER_PART);
    }

    #[test]
    fn a_tree_smaller_than_the_parts_asked_for_gets_fewer() {
        let mut cuts = Cuts::new(100);
        for name in ["a", "b"] {
            let e = entry(name, 1);
            cuts.offer(&e.path, entry_weight(&e), file_bytes(&e));
        }
        let parts = cuts.parts(10);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[1].from.as_deref(), Some("b"));
        assert_eq!(Cuts::new(10).parts(3).len(), 1);
    }

    /// Cuts of `names` (files of `len` bytes each) in path order.
    fn cuts_of(names: impl Iterator<Item = String>, len: u64, limit: usize) -> Cuts {
        let mut cuts = Cuts::new(limit);
        for name in names {
            let e = entry(&name, len);
            cuts.offer(&e.path, entry_weight(&e), file_bytes(&e));
        }
        cuts
    }

    fn shares(parts: &[PlannedPart]) -> Vec<f64> {
        let total: u64 = parts.iter().map(|p| p.weight).sum();
        parts
            .iter()
            .map(|p| p.weight as f64 / total as f64)
            .collect()
    }

    #[test]
    fn surveys_of_consecutive_ranges_cut_as_one_walk_does() {
        let names = |range: std::ops::Range<u32>| range.map(|i| format!("d{i:05}"));
        let whole = cuts_of(names(0..10_000), 10_000, 4 * CANDIDATES_PER_PART);
        // Three unequal ranges, each surveyed apart with the same sample bound.
        let surveys: Vec<Survey> = [0..1_000, 1_000..7_000, 7_000..10_000]
            .into_iter()
            .map(|r| cuts_of(names(r), 10_000, 4 * CANDIDATES_PER_PART))
            .map(|c| c.survey(&PathRange::ALL))
            .collect();
        let merged = Cuts::merged(&surveys, 4 * CANDIDATES_PER_PART).unwrap();
        assert_eq!(
            (merged.entries, merged.bytes, merged.weight),
            (whole.entries, whole.bytes, whole.weight)
        );
        assert!(merged.samples.len() <= 4 * CANDIDATES_PER_PART);
        for share in shares(&merged.parts(4)) {
            assert!((0.22..0.28).contains(&share), "{share}");
        }
        // Out of order, the cuts would be too: refused.
        let reversed: Vec<Survey> = surveys.into_iter().rev().collect();
        assert!(Cuts::merged(&reversed, 100).is_err());
    }

    #[test]
    fn a_manifest_sample_estimates_cuts_of_about_equal_weight() {
        // 100,000 files: the first half small, the second half ten times larger, so equal
        // weights are not equal counts. A 1-in-50 sample, shuffled (manifests are in any order).
        let len = |i: u64| if i < 50_000 { 1_000 } else { 100_000 };
        let bytes: u64 = (0..100_000).map(len).sum();
        let mut sample: Vec<(String, u64)> = (0..100_000)
            .step_by(50)
            .map(|i| (hex(format!("f{i:06}").as_bytes()), len(i)))
            .collect();
        sample.reverse();
        let rows = RowSample {
            rows: 100_000,
            bytes,
            sample,
        };
        let cuts = Cuts::estimated(rows, 10 * CANDIDATES_PER_PART).unwrap();
        assert_eq!(cuts.entries, 100_000);
        let parts = cuts.parts(10);
        assert_eq!(parts.len(), 10);
        // Each part's true weight, from the rows it covers: about a tenth of the whole.
        for part in &parts {
            let from: u64 = part
                .from
                .as_deref()
                .map_or(0, |f| f.trim_start_matches('f').parse().unwrap());
            let until: u64 = part
                .until
                .as_deref()
                .map_or(100_000, |f| f.trim_start_matches('f').parse().unwrap());
            let weight: u64 = (from..until).map(|i| len(i) + ENTRY_WEIGHT).sum();
            let share = weight as f64 / (bytes + 100_000 * ENTRY_WEIGHT) as f64;
            assert!((0.08..0.12).contains(&share), "{from}..{until}: {share}");
        }
    }

    #[test]
    fn hex_round_trips_any_bytes_and_refuses_what_is_not_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&bytes)).unwrap(), bytes);
        assert!(unhex("abc").is_err());
        assert!(unhex("zz").is_err());
    }

    #[test]
    fn missing_parts_are_named_in_runs() {
        assert_eq!(list_numbers(&[0, 1, 2, 3, 7, 9, 10]), "0-3, 7, 9-10");
    }
}
