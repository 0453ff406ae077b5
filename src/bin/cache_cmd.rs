//! `sheaf preload` and `sheaf cache ...`: fill, inspect and manage an SSD cache directory.

use crate::{output, progress};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sheaf::cache::{self, Cache, Counter, Latency, PreloadOptions};
use sheaf::read::order::{self, OrderSettings, Shard};
use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the cache lives and how big it may grow, shared by every command that uses one.
#[derive(Args, Clone)]
pub struct CacheArgs {
    /// The cache directory (on a local SSD); created when missing.
    #[arg(long, value_name = "DIR")]
    pub cache: PathBuf,
    /// Set the cache's byte quota (kept for later runs; e.g. 500GiB, 2TiB). Least recently used
    /// containers of unpinned datasets are evicted to stay under it.
    #[arg(long, value_parser = output::parse_positive_size)]
    pub quota: Option<u64>,
}

impl CacheArgs {
    /// Opens the cache and applies `--quota`.
    pub fn open(&self) -> Result<Cache> {
        let cache = Cache::open(&self.cache)
            .with_context(|| format!("opening cache {}", self.cache.display()))?;
        if let Some(quota) = self.quota {
            cache.set_quota(Some(quota))?;
        }
        Ok(cache)
    }
}

#[derive(Args)]
pub struct PreloadArgs {
    /// The dataset (a path or a store URI).
    dataset: PathBuf,
    #[command(flatten)]
    cache: CacheArgs,
    /// Only the containers holding paths under this prefix (repeatable).
    #[arg(long, value_name = "PATH")]
    prefix: Vec<std::ffi::OsString>,
    /// Pin the dataset: its containers are never evicted.
    #[arg(long)]
    pin: bool,
    /// Preload this generation instead of the newest (readers through the cache then open it).
    #[arg(long, value_name = "N")]
    generation: Option<u64>,
    /// Ranged requests in flight at once (containers side by side, and several ranges of
    /// each when there are fewer containers than jobs).
    #[arg(short, long, default_value_t = 8, value_parser = output::parse_positive_count)]
    jobs: usize,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bars.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    shard: ShardArgs,
}

/// A node's share of an epoch (what `sheaf.torch.ShuffledSampler` gives one rank).
#[derive(Args)]
#[command(next_help_heading = "Sharding by epoch (training clusters)")]
struct ShardArgs {
    /// Copy only the containers rank RANK of WORLD reads first in the epoch, so a cluster
    /// copies each container once (the files below --prefix, or all, in the sampler's order).
    #[arg(long, value_name = "RANK/WORLD", value_parser = parse_shard)]
    shard: Option<(u64, u64)>,
    /// The sampler's seed.
    #[arg(long, default_value_t = 0, requires = "shard")]
    seed: u64,
    /// The epoch coming next.
    #[arg(long, default_value_t = 0, requires = "shard")]
    epoch: u64,
    /// Containers per shuffling window, as the sampler's `window`.
    #[arg(long, default_value_t = OrderSettings::default().window, requires = "shard")]
    window: u64,
}

/// `RANK/WORLD`, with RANK below WORLD.
fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (rank, world) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not RANK/WORLD (such as 0/8)"))?;
    let number = |t: &str| {
        t.trim()
            .parse::<u64>()
            .map_err(|_| format!("{t:?} is not a whole number"))
    };
    let (rank, world) = (number(rank)?, number(world)?);
    if world == 0 || rank >= world {
        return Err(format!(
            "rank {rank} of {world}: ranks count from 0 and stay below the world size"
        ));
    }
    Ok((rank, world))
}

/// The containers `--shard` selects, and the generation they belong to.
fn shard_selection(args: &PreloadArgs) -> Result<Option<Shard>> {
    let Some((rank, world)) = args.shard.shard else {
        return Ok(None);
    };
    let under = match args.prefix.as_slice() {
        [] => Vec::new(),
        [one] => one.as_bytes().to_vec(),
        _ => anyhow::bail!("--shard takes at most one --prefix: the directory the sampler reads"),
    };
    let settings = OrderSettings {
        seed: args.shard.seed,
        epoch: args.shard.epoch,
        window: args.shard.window,
        part: rank,
        parts: world,
        drop_last: false,
    };
    let shard =
        order::shard(&args.dataset, args.generation, &under, settings).with_context(|| {
            format!(
                "ordering epoch {} of {}",
                settings.epoch,
                args.dataset.display()
            )
        })?;
    Ok(Some(shard))
}

pub fn preload(args: PreloadArgs) -> Result<ExitCode> {
    let cache = args.cache.open()?;
    let shard = shard_selection(&args)?;
    let options = PreloadOptions {
        prefixes: args.prefix.iter().map(|p| p.as_bytes().to_vec()).collect(),
        pin: args.pin,
        jobs: args.jobs,
        generation: shard
            .as_ref()
            .map_or(args.generation, |s| Some(s.generation)),
        containers: shard.map(|s| s.containers),
    };
    let bars = progress::Bars::new(args.quiet);
    let summary = cache::preload(&args.dataset, &cache, &options, &bars).with_context(|| {
        format!(
            "preloading {} into {}",
            args.dataset.display(),
            args.cache.cache.display()
        )
    })?;
    bars.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{}: {} ({}) in the cache: {} copied ({}, {:.1} MiB/s), {} already there{}",
            summary.dataset,
            output::count(summary.containers, "container"),
            output::human_bytes(summary.bytes),
            summary.fetched,
            output::human_bytes(summary.bytes_fetched),
            summary.mib_per_sec,
            summary.already_cached,
            if summary.pinned { "; pinned" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct CacheCommandArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Subcommand)]
enum CacheCommand {
    /// Counters summed over every process that used the cache, and what it holds.
    Stats(StatsArgs),
    /// The datasets the cache knows and how much of each it holds.
    Ls(LsArgs),
    /// Evict the containers of a dataset, or of every unpinned dataset with --all.
    Evict(EvictArgs),
    /// Pin a preloaded dataset: its containers are never evicted.
    Pin(PinArgs),
    /// Unpin a dataset.
    Unpin(PinArgs),
    /// Re-hash every cached container; quarantine those that changed.
    Verify(StatsArgs),
}

#[derive(Args)]
struct StatsArgs {
    #[command(flatten)]
    cache: CacheArgs,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LsArgs {
    #[command(flatten)]
    cache: CacheArgs,
    /// Print as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct EvictArgs {
    /// The dataset whose containers to evict.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    dataset: Option<PathBuf>,
    /// Evict every container of every unpinned dataset.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    cache: CacheArgs,
}

#[derive(Args)]
struct PinArgs {
    /// The dataset (as it was given to preload).
    dataset: PathBuf,
    #[command(flatten)]
    cache: CacheArgs,
}

pub fn cache_command(args: CacheCommandArgs) -> Result<ExitCode> {
    match args.command {
        CacheCommand::Stats(args) => stats(args),
        CacheCommand::Ls(args) => ls(args),
        CacheCommand::Evict(args) => evict(args),
        CacheCommand::Pin(args) => pin(args, true),
        CacheCommand::Unpin(args) => pin(args, false),
        CacheCommand::Verify(args) => verify(args),
    }
}

fn stats(args: StatsArgs) -> Result<ExitCode> {
    let cache = args.cache.open()?;
    let snapshot = cache.counters().snapshot();
    let held = cache.containers()?;
    let bytes: u64 = held.iter().map(|c| c.len).sum();
    let quota = cache.quota()?;
    if args.json {
        let mut value = serde_json::Map::new();
        for (counter, n) in &snapshot.counters {
            value.insert(counter.name().into(), (*n).into());
        }
        value.insert("containers".into(), held.len().into());
        value.insert("bytes_cached".into(), bytes.into());
        value.insert("quota".into(), quota.into());
        for kind in Latency::ALL {
            for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
                value.insert(
                    format!("{}_latency_{name}_ns", kind.name()),
                    snapshot.quantile(kind, q).into(),
                );
            }
        }
        println!("{}", serde_json::Value::Object(value));
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: {} holding {} (quota {})",
        args.cache.cache.display(),
        output::count(held.len() as u64, "container"),
        output::human_bytes(bytes),
        quota.map_or("none".into(), output::human_bytes)
    );
    for (counter, n) in &snapshot.counters {
        let shown = match counter {
            Counter::OriginBytes
            | Counter::CacheBytes
            | Counter::EvictedBytes
            | Counter::FetchedBytes => output::human_bytes(*n),
            _ => n.to_string(),
        };
        println!("  {:<18} {shown}", counter.name());
    }
    for kind in Latency::ALL {
        if let (Some(p50), Some(p99)) =
            (snapshot.quantile(kind, 0.5), snapshot.quantile(kind, 0.99))
        {
            println!(
                "  {:<18} p50 < {}, p99 < {}",
                format!("{} latency", kind.name()),
                human_nanos(p50),
                human_nanos(p99)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn human_nanos(nanos: u64) -> String {
    match nanos {
        n if n < 10_000 => format!("{n} ns"),
        n if n < 10_000_000 => format!("{} us", n / 1000),
        n => format!("{} ms", n / 1_000_000),
    }
}

fn ls(args: LsArgs) -> Result<ExitCode> {
    let cache = args.cache.open()?;
    let held: HashSet<u128> = cache.containers()?.iter().map(|c| c.id).collect();
    for (record, catalog) in cache.datasets()? {
        let rows = catalog.rows();
        let cached: Vec<_> = rows
            .iter()
            .filter(|r| held.contains(&r.content_id))
            .collect();
        let cached_bytes: u64 = cached.iter().map(|r| r.file_len).sum();
        let total_bytes: u64 = rows.iter().map(|r| r.file_len).sum();
        if args.json {
            println!(
                "{}",
                serde_json::json!({
                    "dataset": record.uri,
                    "pinned": record.pinned,
                    "containers": rows.len(),
                    "containers_cached": cached.len(),
                    "bytes": total_bytes,
                    "bytes_cached": cached_bytes,
                })
            );
        } else {
            println!(
                "{}  {}/{} containers, {} of {}{}",
                record.uri,
                cached.len(),
                rows.len(),
                output::human_bytes(cached_bytes),
                output::human_bytes(total_bytes),
                if record.pinned { "  pinned" } else { "" }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The key a cache knows a dataset by, however the user spelled it.
fn dataset_key(dataset: &std::path::Path) -> Result<String> {
    let store = sheaf::store::open(dataset)?;
    Ok(cache::dataset_key(store.as_ref()))
}

fn evict(args: EvictArgs) -> Result<ExitCode> {
    let cache = args.cache.open()?;
    let (count, bytes) = match &args.dataset {
        None => cache.evict(|_| true)?,
        Some(dataset) => {
            let key = dataset_key(dataset)?;
            let catalog = cache
                .dataset_catalog(&key)?
                .with_context(|| format!("the cache has no record of {key}"))?;
            let ids: HashSet<u128> = catalog.rows().iter().map(|r| r.content_id).collect();
            cache.evict(|id| ids.contains(&id))?
        }
    };
    println!(
        "evicted {} ({}); pinned datasets were kept",
        output::count(count, "container"),
        output::human_bytes(bytes)
    );
    Ok(ExitCode::SUCCESS)
}

fn pin(args: PinArgs, pinned: bool) -> Result<ExitCode> {
    let cache = args.cache.open()?;
    let key = dataset_key(&args.dataset)?;
    cache.set_pinned(&key, pinned)?;
    println!("{key}: {}", if pinned { "pinned" } else { "unpinned" });
    Ok(ExitCode::SUCCESS)
}

fn verify(args: StatsArgs) -> Result<ExitCode> {
    let cache = args.cache.open()?;
    let (checked, bad) = cache.verify()?;
    if args.json {
        let bad: Vec<String> = bad.iter().map(|id| format!("{id:032x}")).collect();
        println!(
            "{}",
            serde_json::json!({"checked": checked, "quarantined": bad})
        );
    } else {
        for id in &bad {
            println!("quarantined {id:032x}: its bytes no longer match its content id");
        }
        println!(
            "checked {}, {} quarantined",
            output::count(checked, "container"),
            bad.len()
        );
    }
    Ok(if bad.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(crate::EXIT_FAULTS)
    })
}
