//! `sheaf route add|rm|ls` (change and show a routes table) and `ls`, `stat` and `cat` over
//! the routed tree (`--routes`).

use crate::{output, ReadCacheArgs};
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;
use sheaf::format::routes::{self, Change, Route};
use sheaf::{EntryKind, Routes};
use std::ffi::OsString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct RouteArgs {
    #[command(subcommand)]
    command: RouteCommand,
}

#[derive(Subcommand)]
enum RouteCommand {
    /// Route a path prefix to a dataset (created as a new version of the table; the table is
    /// created by its first rule).
    Add(AddArgs),
    /// Stop routing a prefix.
    Rm(RmArgs),
    /// List the rules of the newest version.
    Ls(LsArgs),
}

#[derive(Args)]
struct AddArgs {
    /// The routes table: a local directory or a store URI (s3://, hdfs://, ...) holding its
    /// versions.
    routes: PathBuf,
    /// The path prefix, absolute (`/images/2025`; `/` for the whole tree).
    prefix: String,
    /// The dataset serving it: a local path (stored absolute) or a store URI.
    dataset: OsString,
    /// A cache directory readers of this rule use (instead of their own --cache).
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Add the rule without opening the dataset first.
    #[arg(long)]
    no_check: bool,
    /// Print the new table as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RmArgs {
    /// The routes table.
    routes: PathBuf,
    /// The prefix to stop routing.
    prefix: String,
    /// Print the new table as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct LsArgs {
    /// The routes table.
    routes: PathBuf,
    /// Print the table as JSON.
    #[arg(long)]
    json: bool,
}

pub fn route(args: RouteArgs) -> Result<ExitCode> {
    match args.command {
        RouteCommand::Add(args) => add(args),
        RouteCommand::Rm(args) => rm(args),
        RouteCommand::Ls(args) => ls(args),
    }
}

fn open_table(location: &PathBuf) -> Result<std::sync::Arc<dyn sheaf::store::Store>> {
    sheaf::store::open(location)
        .with_context(|| format!("opening routes table {}", location.display()))
}

/// Where a rule's dataset lives, as the table keeps it: a URI as given, a local path made
/// absolute (readers run elsewhere) and required to be UTF-8 (the table is JSON).
fn stored_location(dataset: &OsString) -> Result<String> {
    match sheaf::store::locate(dataset)? {
        sheaf::store::Location::Uri(uri) => Ok(uri.trim_end_matches('/').to_owned()),
        sheaf::store::Location::Local(path) => {
            let absolute = std::path::absolute(&path)
                .with_context(|| format!("resolving {}", path.display()))?;
            match absolute.to_str() {
                Some(text) => Ok(text.to_owned()),
                None => bail!(
                    "{}: a routed dataset's path must be UTF-8",
                    absolute.display()
                ),
            }
        }
    }
}

/// A rule's cache directory as the table keeps it: a local directory (each reader's own SSD),
/// absolute and UTF-8.
fn cache_location(dir: &Path) -> Result<String> {
    if !matches!(sheaf::store::locate(dir)?, sheaf::store::Location::Local(_)) {
        bail!(
            "--cache {}: a cache is a local directory, not a URI",
            dir.display()
        );
    }
    stored_location(&dir.as_os_str().to_owned())
}

fn add(args: AddArgs) -> Result<ExitCode> {
    let prefix = routes::canonical_prefix(&args.prefix)?;
    let dataset = stored_location(&args.dataset)?;
    let cache = match &args.cache {
        Some(dir) => Some(cache_location(dir)?),
        None => None,
    };
    if !args.no_check {
        sheaf::Dataset::open_uri(&dataset).with_context(|| {
            format!("checking {dataset} (--no-check adds the rule without opening it)")
        })?;
    }
    let route = Route {
        prefix,
        dataset,
        cache,
    };
    let store = open_table(&args.routes)?;
    let changed = routes::change(store.as_ref(), &Change::Add(route.clone()))
        .with_context(|| format!("adding {} to {}", route.prefix, store.uri("")))?;
    report(
        &changed,
        args.json,
        &format!("routed {} to {}", route.prefix, route.dataset),
    )
}

fn rm(args: RmArgs) -> Result<ExitCode> {
    let store = open_table(&args.routes)?;
    let changed = routes::change(store.as_ref(), &Change::Remove(args.prefix.clone()))
        .with_context(|| format!("removing {} from {}", args.prefix, store.uri("")))?;
    let prefix = routes::canonical_prefix(&args.prefix)?;
    report(
        &changed,
        args.json,
        &format!("{prefix} is no longer routed"),
    )
}

fn report(changed: &routes::Changed, json: bool, done: &str) -> Result<ExitCode> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&table_json(&changed.table))?
        );
    } else if changed.committed {
        println!(
            "{done} (routes version {})",
            changed.table.number.unwrap_or(0)
        );
    } else {
        println!("{done} already: nothing changed");
    }
    Ok(ExitCode::SUCCESS)
}

fn table_json(table: &routes::Table) -> serde_json::Value {
    json!({ "version": table.number, "routes": table.routes })
}

fn ls(args: LsArgs) -> Result<ExitCode> {
    let store = open_table(&args.routes)?;
    let table = routes::read_existing(store.as_ref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table_json(&table))?);
        return Ok(ExitCode::SUCCESS);
    }
    let width = table
        .routes
        .iter()
        .map(|r| r.prefix.len())
        .max()
        .unwrap_or(0);
    let mut out = io::BufWriter::new(io::stdout().lock());
    for route in &table.routes {
        write!(out, "{:width$}  {}", route.prefix, route.dataset)?;
        if let Some(cache) = &route.cache {
            write!(out, "  (cache {cache})")?;
        }
        writeln!(out)?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Opens a routes table to read, with the reading flags of `ls`, `stat` and `cat`.
pub fn open_routes(location: &PathBuf, read: &ReadCacheArgs) -> Result<Routes> {
    if read.generation.generation.is_some() {
        bail!("--generation names one dataset's snapshot: it cannot be used with --routes");
    }
    let options = sheaf::ReadOptions {
        cache: crate::open_cache(read)?,
        fill: read.fill,
        ..Default::default()
    };
    Routes::open(location, options)
        .with_context(|| format!("opening routes table {}", location.display()))
}

/// A path of the routed tree as the CLI shows it: absolute.
fn shown(entry: &sheaf::Entry) -> sheaf::Entry {
    let mut path = b"/".to_vec();
    path.extend_from_slice(&entry.path);
    sheaf::Entry {
        path,
        ..entry.clone()
    }
}

fn link_of(routes: &Routes, entry: &sheaf::Entry) -> Result<Option<Vec<u8>>> {
    match entry.kind {
        EntryKind::Symlink => Ok(Some(routes.read_link(&entry.path)?.to_vec())),
        _ => Ok(None),
    }
}

/// `sheaf ls --routes`.
pub fn ls_routed(
    routes: &Routes,
    path: &[u8],
    long: bool,
    recursive: bool,
    json: bool,
) -> Result<ExitCode> {
    let target = routes.stat(path)?;
    let entries = if target.kind != EntryKind::Dir {
        vec![target.clone()]
    } else if recursive {
        routes.walk_under(path)?
    } else {
        routes.list(path)?
    };
    let mut out = io::BufWriter::new(io::stdout().lock());
    for entry in &entries {
        let link = link_of(routes, entry)?;
        let entry = shown(entry);
        if json {
            output::write_json_line(&mut out, &entry, link.as_deref())?;
        } else {
            let name = match recursive || target.kind != EntryKind::Dir {
                true => &entry.path[..],
                false => sheaf::format::path::file_name(&entry.path),
            };
            output::write_ls_line(&mut out, &entry, name, long, link.as_deref())?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `sheaf stat --routes`.
pub fn stat_routed(routes: &Routes, path: &[u8], json: bool) -> Result<ExitCode> {
    let entry = routes.stat(path)?;
    let link = link_of(routes, &entry)?;
    let dataset = match entry.kind {
        EntryKind::Dir if routes.routing().is_router_dir(&entry.path) => None,
        _ => Some(routes.locate(&entry.path)?.0.route().dataset.clone()),
    };
    let entry = shown(&entry);
    let mut value = output::entry_json(&entry, link.as_deref(), None);
    if let Some(dataset) = &dataset {
        value["dataset"] = json!(dataset);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        output::print_stat(&entry, link.as_deref(), None);
        if let Some(dataset) = dataset {
            println!("dataset: {dataset}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sheaf cat --routes`: each file's bytes checked before the first goes out.
pub fn cat_routed(routes: &Routes, paths: &[OsString]) -> Result<ExitCode> {
    let mut out = io::stdout().lock();
    let mut failed = false;
    for path in paths {
        if let Err(e) = cat_one(routes, path.as_bytes(), &mut out) {
            if crate::is_broken_pipe(&e) {
                return Err(e);
            }
            eprintln!("sheaf: cat: {e:#}");
            failed = true;
        }
    }
    out.flush()?;
    Ok(match failed {
        true => ExitCode::FAILURE,
        false => ExitCode::SUCCESS,
    })
}

fn cat_one(routes: &Routes, path: &[u8], out: &mut impl Write) -> Result<()> {
    let (rule, rel) = routes.locate(path)?;
    rule.with_dataset(|dataset| {
        let write_err = |e| sheaf::Error::io("write", "<stdout>", e);
        let (at, entry) = dataset.resolve(&rel)?;
        match entry.kind {
            EntryKind::External => {
                dataset.verify_external(&entry)?;
                dataset
                    .stream_external(&entry, &mut |chunk| out.write_all(chunk).map_err(write_err))
            }
            EntryKind::Dir => Err(sheaf::Error::WrongKind {
                path: sheaf::format::path::display(path),
                problem: sheaf::KindProblem::IsADirectory,
            }),
            _ => out.write_all(&dataset.read_at(at)?).map_err(write_err),
        }
    })?;
    Ok(())
}
