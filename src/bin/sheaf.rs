//! The `sheaf` command line: parses flags, draws progress, prints results and maps errors to
//! exit codes. All the work is done by the library.

mod cache_cmd;
#[cfg(feature = "fuse")]
mod mount_cmd;
mod output;
mod progress;
mod route_cmd;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use sheaf::fold::parts::PlanKind;
use sheaf::fold::{self, Compression, ContainerLimits, FoldOptions, Target};
use sheaf::read::{unfold, verify};
use sheaf::{Dataset, EntryKind};
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit status when `verify` finds faults.
pub(crate) const EXIT_FAULTS: u8 = 3;

#[derive(Parser)]
#[command(
    name = "sheaf",
    version,
    about = "Fold small files into large indexed containers and read them back by their original paths",
    after_help = "Exit status: 0 success, 1 error, 2 usage error, 3 `verify` found faults.\n\n\
                  Example:\n  sheaf fold ./images ./images.sheaf\n  sheaf ls ./images.sheaf train -l\n  \
                  sheaf cat ./images.sheaf train/cat/0001.jpg > cat.jpg\n  sheaf verify ./images.sheaf"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fold a directory tree into a dataset: small files into containers, large ones kept as is.
    Fold(FoldArgs),
    /// List a directory of a dataset.
    Ls(LsArgs),
    /// Show the metadata of one entry.
    Stat(StatArgs),
    /// Write the original bytes of files to standard output.
    Cat(CatArgs),
    /// Check every checksum of a dataset and report every fault.
    Verify(VerifyArgs),
    /// Restore the plain tree of a dataset, byte-identical, modes and mtimes kept.
    Unfold(UnfoldArgs),
    /// Delete entries from a dataset, as a new generation (older generations keep them).
    Rm(RmArgs),
    /// List a dataset's generations: number, time, operation, what it added and removed.
    Log(LogArgs),
    /// Rewrite the newest generation as one level: shadowed entries and tombstones dropped,
    /// every lookup answered by one container.
    Compact(CompactArgs),
    /// Delete generations and containers no reader inside the retention window needs.
    Gc(GcArgs),
    /// Copy a dataset's containers (or those holding some prefixes) into a local cache.
    Preload(cache_cmd::PreloadArgs),
    /// Inspect and manage a cache directory: stats, ls, evict, pin, unpin, verify.
    Cache(cache_cmd::CacheCommandArgs),
    /// Mount a dataset read-only as the tree it was folded from (FUSE); unmount with
    /// `fusermount3 -u MOUNTPOINT`, or SIGINT/SIGTERM to a foreground mount.
    #[cfg(feature = "fuse")]
    Mount(mount_cmd::MountArgs),
    /// Join many datasets into one tree: route path prefixes to datasets (a routes table
    /// that `ls`, `stat`, `cat` and `mount` read with --routes).
    Route(route_cmd::RouteArgs),
}

/// Reading through an SSD cache.
#[derive(Args)]
pub(crate) struct ReadCacheArgs {
    /// Read containers from this cache directory when it holds them (see `sheaf preload`).
    #[arg(long, value_name = "DIR")]
    pub(crate) cache: Option<PathBuf>,
    /// With --cache: fetch containers that keep missing into the cache in the background.
    #[arg(long, requires = "cache")]
    pub(crate) fill: bool,
    #[command(flatten)]
    pub(crate) generation: GenerationArg,
}

/// Which snapshot of a dataset to read.
#[derive(Args)]
pub(crate) struct GenerationArg {
    /// Read this generation instead of the newest (`sheaf log` lists them).
    #[arg(long, value_name = "N")]
    pub(crate) generation: Option<u64>,
}

#[derive(Args)]
struct RmArgs {
    /// The dataset root.
    dataset: PathBuf,
    /// Entries to delete.
    #[arg(required = true)]
    paths: Vec<OsString>,
    /// Delete directories and everything under them.
    #[arg(short, long)]
    recursive: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct CompactArgs {
    /// The dataset root.
    dataset: PathBuf,
    /// Target size of one container.
    #[arg(long, default_value = "1GiB", value_parser = output::parse_positive_size)]
    container_size: u64,
    /// Most entries in one container.
    #[arg(long, default_value_t = fold::DEFAULT_MAX_ENTRIES, value_parser = output::parse_positive_count)]
    max_entries: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct GcArgs {
    /// The dataset root.
    dataset: PathBuf,
    /// Keep every generation a reader may have opened within this long (s, m, h, d; 0 keeps
    /// only the newest).
    #[arg(long, default_value = "7d", value_parser = output::parse_duration)]
    keep: std::time::Duration,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct LogArgs {
    /// The dataset root.
    dataset: PathBuf,
    /// One JSON object per generation, newest first.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct FoldArgs {
    /// The tree to fold (with --part or --commit: the plan's location, as --plan printed it).
    src: PathBuf,
    /// The new dataset root (must be missing or empty), or with --append a published one.
    /// Omit with --in-place, --part and --commit.
    #[arg(required_unless_present_any = ["in_place", "part", "commit"], conflicts_with_all = ["in_place", "part", "commit"])]
    dst: Option<PathBuf>,
    /// Plan the fold for a cluster instead of folding: cut SRC into --partitions parts of
    /// about equal bytes, write the plan into DST's staging area (with --in-place, SRC's) and
    /// print where it is. Each part is then folded anywhere with --part, and all of them
    /// published with --commit (which, with --remove-originals, then deletes the originals).
    #[arg(long, requires = "partitions", conflicts_with_all = ["part", "commit"])]
    plan: bool,
    /// With --plan: the most parts to cut the tree into (a small tree gets fewer).
    #[arg(long, value_name = "N", requires = "plan", value_parser = clap::value_parser!(u32).range(1..))]
    partitions: Option<u32>,
    /// Fold part K of the plan at SRC (its containers and a result file go to the plan's
    /// dataset; a part that already finished is not folded again).
    #[arg(long, value_name = "K", conflicts_with_all = ["in_place", "commit", "append"])]
    part: Option<u32>,
    /// Publish the plan at SRC once all its parts have finished, as one generation.
    #[arg(long, conflicts_with_all = ["in_place", "append"])]
    commit: bool,
    /// Add SRC's files to the published dataset DST as a new generation; a path already
    /// there is replaced.
    #[arg(long, requires = "dst")]
    append: bool,
    /// With --append: put SRC's files under this directory of the dataset.
    #[arg(long, requires = "append", value_name = "P", default_value = "")]
    prefix: OsString,
    /// Fold SRC where it lies: containers go into SRC/.sheaf/, large files stay.
    #[arg(long)]
    in_place: bool,
    /// With --in-place: delete folded originals once their containers are written, synced and
    /// verified.
    #[arg(long, requires = "in_place")]
    remove_originals: bool,
    /// Files smaller than this are folded; others are kept as ordinary files (B, KiB, MiB, GiB).
    #[arg(long, default_value = "4MiB", value_parser = output::parse_threshold)]
    threshold: u64,
    /// Target size of one container.
    #[arg(long, default_value = "1GiB", value_parser = output::parse_positive_size)]
    container_size: u64,
    /// Most entries in one container.
    #[arg(long, default_value_t = fold::DEFAULT_MAX_ENTRIES, value_parser = output::parse_positive_count)]
    max_entries: usize,
    /// Per-entry compression: none, zstd[:LEVEL] or auto[:LEVEL] (zstd only where it saves space).
    #[arg(long, default_value = "none")]
    compress: Compression,
    /// Worker threads (default: all cores).
    #[arg(short, long, value_parser = output::parse_positive_count)]
    jobs: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct LsArgs {
    /// The dataset root (omitted with --routes: the one argument is then PATH).
    #[arg(required_unless_present = "routes")]
    dataset: Option<PathBuf>,
    #[command(flatten)]
    read: ReadCacheArgs,
    /// A directory or file inside the dataset (default: the root).
    #[arg(default_value = "")]
    path: OsString,
    /// Read the tree a routes table joins (see `sheaf route`) instead of one dataset.
    #[arg(long, value_name = "ROUTES")]
    routes: Option<PathBuf>,
    /// Long listing: mode, size, mtime.
    #[arg(short, long)]
    long: bool,
    /// Everything below PATH, as full paths.
    #[arg(short = 'R', long)]
    recursive: bool,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct StatArgs {
    /// The dataset root (omitted with --routes: the one argument is then PATH).
    #[arg(required_unless_present = "routes")]
    dataset: Option<PathBuf>,
    #[command(flatten)]
    read: ReadCacheArgs,
    /// The entry.
    #[arg(required_unless_present = "routes")]
    path: Option<OsString>,
    /// Read the tree a routes table joins (see `sheaf route`) instead of one dataset.
    #[arg(long, value_name = "ROUTES")]
    routes: Option<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CatArgs {
    /// The dataset root (omitted with --routes: every argument is then a path).
    #[arg(required_unless_present = "routes")]
    dataset: Option<PathBuf>,
    #[command(flatten)]
    read: ReadCacheArgs,
    /// Files to print, in order.
    #[arg(required_unless_present = "routes")]
    paths: Vec<OsString>,
    /// Read the tree a routes table joins (see `sheaf route`) instead of one dataset.
    #[arg(long, value_name = "ROUTES")]
    routes: Option<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    /// The dataset root.
    dataset: PathBuf,
    #[command(flatten)]
    generation: GenerationArg,
    /// Worker threads (default: all cores).
    #[arg(short, long, value_parser = output::parse_positive_count)]
    jobs: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct UnfoldArgs {
    /// The dataset root.
    dataset: PathBuf,
    /// Where to restore the tree (must be missing or empty).
    out: PathBuf,
    #[command(flatten)]
    generation: GenerationArg,
    /// Worker threads (default: all cores).
    #[arg(short, long, value_parser = output::parse_positive_count)]
    jobs: Option<usize>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sheaf: {}", cli_message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error's chain as `{:#}` prints it, with the library's settings named by their flags.
fn cli_message(e: &anyhow::Error) -> String {
    let parts: Vec<String> = e
        .chain()
        .map(|cause| match cause.downcast_ref::<sheaf::Error>() {
            Some(error) => in_cli_words(error),
            None => cause.to_string(),
        })
        .collect();
    parts.join(": ")
}

/// A library error as the CLI says it: where the library names a setting, the CLI names the
/// flag that sets it.
fn in_cli_words(error: &sheaf::Error) -> String {
    match error {
        sheaf::Error::InvalidSetting { setting, reason } => {
            let flag = match setting {
                sheaf::Setting::Threshold => "--threshold",
                sheaf::Setting::ContainerLimits => "--container-size",
                sheaf::Setting::RemoveOriginals => "--remove-originals",
                sheaf::Setting::Jobs => "--jobs",
                sheaf::Setting::Compression => "--compress",
                sheaf::Setting::Partitions => "--partitions/--part",
                sheaf::Setting::Listing => "the plan's listing",
                sheaf::Setting::Order => "--shard/--window",
            };
            format!("{flag}: {reason}")
        }
        sheaf::Error::CacheFull { .. } => format!("{error} (--quota, --prefix)"),
        sheaf::Error::CacheIncompatible { .. } => format!("{error} (--cache)"),
        _ => error.to_string(),
    }
}

fn is_remote_failure(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<sheaf::Error>()
            .is_some_and(|e| matches!(e, sheaf::Error::Remote { .. }))
    })
}

pub(crate) fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        let io_pipe = cause
            .downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe);
        let sheaf_pipe = cause
            .downcast_ref::<sheaf::Error>()
            .is_some_and(sheaf::Error::is_broken_pipe);
        io_pipe || sheaf_pipe
    })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Fold(args) => fold(args),
        Command::Ls(args) => ls(args),
        Command::Stat(args) => stat(args),
        Command::Cat(args) => cat(args),
        Command::Verify(args) => verify(args),
        Command::Unfold(args) => unfold(args),
        Command::Rm(args) => rm(args),
        Command::Log(args) => log(args),
        Command::Compact(args) => compact(args),
        Command::Gc(args) => gc(args),
        Command::Preload(args) => cache_cmd::preload(args),
        Command::Cache(args) => cache_cmd::cache_command(args),
        #[cfg(feature = "fuse")]
        Command::Mount(args) => mount_cmd::mount(args),
        Command::Route(args) => route_cmd::route(args),
    }
}

fn set_jobs(jobs: Option<usize>) -> Result<()> {
    if let Some(n) = jobs {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .context("starting worker threads")?;
    }
    Ok(())
}

/// Opens a dataset named by a local path or a store URI (`scheme://...`), read as `options`
/// say. A local path is used as it is, so a name that is not UTF-8 works.
fn open_dataset(dataset: &PathBuf, options: sheaf::ReadOptions) -> sheaf::Result<Dataset> {
    Dataset::open_in_with(sheaf::store::open(dataset)?, options)
}

/// The cache `--cache` names, opened.
pub(crate) fn open_cache(
    read: &ReadCacheArgs,
) -> Result<Option<std::sync::Arc<sheaf::cache::Cache>>> {
    let Some(dir) = &read.cache else {
        return Ok(None);
    };
    let cache = sheaf::cache::Cache::open(dir)
        .with_context(|| format!("opening cache {}", dir.display()))?;
    Ok(Some(std::sync::Arc::new(cache)))
}

/// Opens a dataset to read, through a cache when one is given.
fn open_reading(dataset: &PathBuf, read: &ReadCacheArgs) -> Result<Dataset> {
    let options = sheaf::ReadOptions {
        cache: open_cache(read)?,
        fill: read.fill,
        generation: read.generation.generation,
        ..Default::default()
    };
    open_dataset(dataset, options).with_context(|| format!("opening dataset {}", dataset.display()))
}

fn fold(args: FoldArgs) -> Result<ExitCode> {
    set_jobs(args.jobs)?;
    if args.plan || args.part.is_some() || args.commit {
        return planned_fold(args);
    }
    let options = fold_options(&args);
    let target = match args.dst {
        Some(dst) => Target::NewRoot { src: args.src, dst },
        None => Target::InPlace { dir: args.src },
    };
    let bars = progress::Bars::new(args.quiet);
    let summary = match (&target, args.append) {
        (Target::NewRoot { src, dst }, true) => {
            fold::append(src, dst, args.prefix.as_bytes(), &options, &bars)
                .context("append failed")?
        }
        _ => fold::fold(&target, &options, &bars).context("fold failed")?,
    };
    bars.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        output::print_fold_summary(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn fold_options(args: &FoldArgs) -> FoldOptions {
    FoldOptions {
        threshold: args.threshold,
        limits: ContainerLimits {
            bytes: args.container_size,
            entries: args.max_entries,
        },
        compression: args.compress,
        remove_originals: args.remove_originals,
    }
}

/// `fold --plan`, `fold --part K` and `fold --commit`: a fold split for a cluster.
fn planned_fold(args: FoldArgs) -> Result<ExitCode> {
    let bars = progress::Bars::new(args.quiet);
    if let Some(part) = args.part {
        let done = fold::parts::fold_part(&args.src, part, &bars)
            .with_context(|| format!("folding part {part} failed"))?;
        bars.finish();
        match args.json {
            true => println!("{}", serde_json::to_string_pretty(&done)?),
            false => output::print_part_summary(&done),
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.commit {
        let summary = fold::parts::commit(&args.src, &bars).context("commit failed")?;
        bars.finish();
        match args.json {
            true => println!("{}", serde_json::to_string_pretty(&summary)?),
            false => output::print_fold_summary(&summary),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let options = fold_options(&args);
    let (dst, kind) = match (&args.dst, args.in_place, args.append) {
        (_, true, _) => (args.src.as_path(), PlanKind::InPlace),
        (Some(dst), _, true) => (
            dst.as_path(),
            PlanKind::Append {
                prefix: args.prefix.as_bytes(),
            },
        ),
        (Some(dst), _, false) => (dst.as_path(), PlanKind::NewRoot),
        (None, false, _) => unreachable!("clap requires DST without --in-place"),
    };
    let partitions = args
        .partitions
        .expect("clap requires --partitions with --plan");
    let listing = fold::parts::Listing::Walk;
    let planned = fold::parts::plan(&args.src, dst, kind, &options, partitions, listing, &bars)
        .context("planning failed")?;
    bars.finish();
    if args.json {
        let mut value = serde_json::to_value(&planned.plan)?;
        value["location"] = serde_json::Value::String(planned.location);
        value["resumed"] = serde_json::Value::Bool(planned.resumed);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        output::print_plan(&planned);
    }
    Ok(ExitCode::SUCCESS)
}

/// With --routes the dataset argument is absent and every positional argument is a path of
/// the routed tree: clap puts the first one where the dataset goes.
fn routed_paths(dataset: Option<PathBuf>, rest: Vec<OsString>) -> Vec<OsString> {
    dataset
        .map(PathBuf::into_os_string)
        .into_iter()
        .chain(rest)
        .filter(|p| !p.is_empty())
        .collect()
}

fn ls(args: LsArgs) -> Result<ExitCode> {
    if let Some(location) = &args.routes {
        let routes = route_cmd::open_routes(location, &args.read)?;
        let paths = routed_paths(args.dataset, vec![args.path]);
        if paths.len() > 1 {
            bail!("with --routes, give one PATH of the routed tree (not a dataset)");
        }
        let path = paths.first().map_or(&b""[..], |p| p.as_bytes());
        return route_cmd::ls_routed(&routes, path, args.long, args.recursive, args.json);
    }
    let dataset = open_reading(args.dataset.as_ref().expect("clap requires it"), &args.read)?;
    let path = args.path.as_bytes();
    let target = dataset.stat(path)?;
    let entries = if target.kind != EntryKind::Dir {
        vec![target]
    } else if args.recursive {
        dataset
            .walk_under(path)?
            .map(|item| item.map(|(_, e)| e))
            .collect::<sheaf::Result<_>>()?
    } else {
        dataset.list(path)?
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    for entry in &entries {
        let link = output::symlink_target(&dataset, entry)?;
        if args.json {
            output::write_json_line(&mut out, entry, link.as_deref())?;
        } else {
            let name = if args.recursive || entry.kind != EntryKind::Dir && entry.path == path {
                &entry.path[..]
            } else {
                sheaf::format::path::file_name(&entry.path)
            };
            output::write_ls_line(&mut out, entry, name, args.long, link.as_deref())?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn stat(args: StatArgs) -> Result<ExitCode> {
    if let Some(location) = &args.routes {
        let routes = route_cmd::open_routes(location, &args.read)?;
        let paths = routed_paths(args.dataset, args.path.into_iter().collect());
        if paths.len() != 1 {
            bail!("with --routes, give one PATH of the routed tree (not a dataset)");
        }
        return route_cmd::stat_routed(&routes, paths[0].as_bytes(), args.json);
    }
    let dataset = open_reading(args.dataset.as_ref().expect("clap requires it"), &args.read)?;
    let path = args.path.as_ref().expect("clap requires it").as_bytes();
    let entry = dataset.stat(path)?;
    let location = dataset.lookup(&entry.path)?.map(|(at, _)| at);
    let container = location.map(|at| dataset.catalog().rows()[at.container].name.clone());
    let link = output::symlink_target(&dataset, &entry)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&output::entry_json(
                &entry,
                link.as_deref(),
                container.as_deref()
            ))?
        );
    } else {
        output::print_stat(&entry, link.as_deref(), container.as_deref());
    }
    Ok(ExitCode::SUCCESS)
}

fn cat(args: CatArgs) -> Result<ExitCode> {
    if let Some(location) = &args.routes {
        let routes = route_cmd::open_routes(location, &args.read)?;
        let paths = routed_paths(args.dataset, args.paths);
        if paths.is_empty() {
            bail!("give the paths to print");
        }
        return route_cmd::cat_routed(&routes, &paths);
    }
    if args.paths.is_empty() {
        bail!("give the files to print after the dataset");
    }
    let dataset = open_reading(args.dataset.as_ref().expect("clap requires it"), &args.read)?;
    let mut out = io::stdout().lock();
    let mut failed = false;
    for path in &args.paths {
        if let Err(e) = cat_one(&dataset, path.as_bytes(), &mut out) {
            if is_broken_pipe(&e) {
                return Err(e);
            }
            eprintln!("sheaf: cat: {e:#}");
            failed = true;
            if is_remote_failure(&e) {
                // The origin is unreachable: every further file would wait out the same
                // retries and fail the same way.
                break;
            }
        }
    }
    out.flush()?;
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes one file; its bytes are checked before the first byte goes out.
fn cat_one(dataset: &Dataset, path: &[u8], out: &mut impl Write) -> Result<()> {
    let (at, entry) = dataset.resolve(path)?;
    match entry.kind {
        EntryKind::External => {
            dataset.verify_external(&entry)?;
            dataset.stream_external(&entry, &mut |chunk| {
                out.write_all(chunk)
                    .map_err(|e| sheaf::Error::io("write", "<stdout>", e))
            })?;
        }
        EntryKind::Dir => bail!("{}: is a directory", sheaf::format::path::display(path)),
        _ => out.write_all(&dataset.read_at(at)?)?,
    }
    Ok(())
}

fn verify(args: VerifyArgs) -> Result<ExitCode> {
    set_jobs(args.jobs)?;
    let options = sheaf::ReadOptions {
        generation: args.generation.generation,
        ..Default::default()
    };
    let report = match open_dataset(&args.dataset, options) {
        Ok(dataset) => {
            let bars = progress::Bars::new(args.quiet);
            let report = verify::verify(&dataset, &bars);
            bars.finish();
            report
        }
        // A damaged catalog is a finding of verify, not a failure to run it.
        Err(e) if e.is_data_fault() => verify::VerifyReport::unreadable_catalog(&args.dataset, &e),
        Err(e) => {
            return Err(e).with_context(|| format!("opening dataset {}", args.dataset.display()))
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        output::print_verify_report(&report);
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAULTS)
    })
}

/// Refuses an unfold into the local dataset's own directory or into one that holds it: the
/// restored tree would mix with the dataset's files (as a fold refuses overlapping roots).
fn refuse_overlap(dataset: &Dataset, out: &std::path::Path) -> Result<()> {
    let out_store = sheaf::store::LocalStore::new(out);
    if sheaf::store::overlaps(dataset.store().as_ref(), &out_store)? {
        bail!(
            "{} overlaps the dataset {}: unfold into a directory outside it that does not hold it",
            out.display(),
            dataset.store().uri("").trim_end_matches('/')
        );
    }
    Ok(())
}

fn unfold(args: UnfoldArgs) -> Result<ExitCode> {
    set_jobs(args.jobs)?;
    // Every container is read whole, in order on each thread: the kernel's read-ahead serves
    // that better than reads of exactly each entry.
    let options = sheaf::ReadOptions {
        policy: sheaf::store::ReadPolicy::SEQUENTIAL,
        generation: args.generation.generation,
        ..Default::default()
    };
    let dataset = open_dataset(&args.dataset, options)
        .with_context(|| format!("opening dataset {}", args.dataset.display()))?;
    refuse_overlap(&dataset, &args.out)?;
    let bars = progress::Bars::new(args.quiet);
    let summary = unfold::unfold(&dataset, &args.out, &bars)
        .with_context(|| format!("unfold into {} failed", args.out.display()))?;
    bars.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "restored {} files ({}), {} directories, {} symlinks into {}",
            summary.files,
            output::human_bytes(summary.bytes),
            summary.dirs,
            summary.symlinks,
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn rm(args: RmArgs) -> Result<ExitCode> {
    let paths: Vec<Vec<u8>> = args.paths.iter().map(|p| p.as_bytes().to_vec()).collect();
    let bars = progress::Bars::new(args.quiet);
    let summary = fold::remove(&args.dataset, &paths, args.recursive, &bars)
        .with_context(|| format!("rm in {} failed", args.dataset.display()))?;
    bars.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "removed {} entries: generation {}",
            summary.removed, summary.generation
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn log(args: LogArgs) -> Result<ExitCode> {
    let store = sheaf::store::open(&args.dataset)?;
    let generations = sheaf::format::generation::log(store.as_ref())
        .with_context(|| format!("reading the generations of {}", args.dataset.display()))?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    for info in generations.iter().rev() {
        if args.json {
            serde_json::to_writer(&mut out, info)?;
            writeln!(out)?;
        } else {
            output::write_log_line(&mut out, info)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn compact(args: CompactArgs) -> Result<ExitCode> {
    let limits = ContainerLimits {
        bytes: args.container_size,
        entries: args.max_entries,
    };
    let bars = progress::Bars::new(args.quiet);
    let summary = fold::compact(&args.dataset, limits, &bars)
        .with_context(|| format!("compacting {} failed", args.dataset.display()))?;
    bars.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "generation {} compacted into generation {}: {} entries, {} containers ({}) now {} ({})",
            summary.from_generation,
            summary.generation,
            summary.entries,
            summary.containers_before,
            output::human_bytes(summary.bytes_before),
            summary.containers_after,
            output::human_bytes(summary.bytes_after)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn gc(args: GcArgs) -> Result<ExitCode> {
    let bars = progress::Bars::new(args.quiet);
    let summary = fold::gc(&args.dataset, args.keep, &bars)
        .with_context(|| format!("gc of {} failed", args.dataset.display()))?;
    bars.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "deleted {} generations, {} containers ({}) and {} plans; kept generations {:?}",
            summary.generations_deleted,
            summary.containers_deleted,
            output::human_bytes(summary.bytes_deleted),
            summary.plans_deleted,
            summary.kept
        );
    }
    Ok(ExitCode::SUCCESS)
}
