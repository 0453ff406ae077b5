//! Many datasets read as one tree: a routes table (`format::routes`) says which dataset serves
//! which path prefix, the longest prefix wins, and the directories above the prefixes list
//! the union of what the rules put under them.
//!
//! Routing a path costs a hash lookup of the path (is it a directory above some prefix?) and
//! one per depth at which prefixes exist (the longest prefix holding it), whatever the number
//! of rules. Datasets are opened on first use, so opening a table never waits on a dataset
//! nobody reads; a dataset whose store cannot be reached fails its reads at once for a short
//! while ([`RETRY_AFTER`]) instead of making every read wait out the store's retries, and is
//! tried again after it, so its prefixes recover by themselves.

use crate::cache::Cache;
use crate::error::{Error, KindProblem, Result};
use crate::format::path::{self, cmp_paths, display, normalize, SEPARATOR};
use crate::format::routes::{self, Route, Table};
use crate::format::{Entry, EntryKind};
use crate::read::{root_entry, Buffer, Dataset, ReadOptions};
use crate::store::Store;
use arc_swap::{ArcSwap, ArcSwapOption};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long a dataset whose store could not be reached fails at once before it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Hashes the byte-string keys of the routing map with xxh3 (a path is hashed once per
/// depth probed, so SipHash's cost showed in every routed read).
#[derive(Default)]
struct PathHasher(u64);

impl std::hash::Hasher for PathHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = self.0.rotate_left(29) ^ crate::checksum::xxh3_64(bytes);
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = self.0.rotate_left(29) ^ n as u64;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type PathMap<V> = HashMap<Vec<u8>, V, std::hash::BuildHasherDefault<PathHasher>>;

/// A routes table opened for reading, and the datasets its rules name (opened on first use).
#[derive(Debug)]
pub struct Routes {
    store: Arc<dyn Store>,
    options: ReadOptions,
    caches: Arc<Caches>,
    /// The routing in force, read without a lock by every operation.
    routing: ArcSwap<Routing>,
    /// Held while a reload swaps the routing, so two reloads never undo each other.
    reloading: Mutex<()>,
}

/// One version of the table, ready to route paths.
#[derive(Debug)]
pub struct Routing {
    table: Table,
    /// One per rule of the table, in its order.
    rules: Vec<Arc<Rule>>,
    /// Every prefix and every directory above one, by index-form path.
    nodes: PathMap<Node>,
    /// The depths (components) at which prefixes exist, deepest first.
    depths: Vec<usize>,
}

#[derive(Debug, Default)]
struct Node {
    /// The rule whose prefix this is.
    rule: Option<usize>,
    /// The names under this directory that lead to deeper prefixes, in path order.
    children: Vec<Vec<u8>>,
}

/// Where a path of the routed tree leads.
pub enum Target<'a> {
    /// A directory above some prefix (the root always is one): it lists `children`, which
    /// lead to deeper prefixes, merged with what `covering` holds at this path.
    Dir {
        children: &'a [Vec<u8>],
        covering: Option<(&'a Arc<Rule>, &'a [u8])>,
    },
    /// A path served by one dataset: `rel` is its path there.
    Inside { rule: &'a Arc<Rule>, rel: &'a [u8] },
}

/// One rule and its dataset.
#[derive(Debug)]
pub struct Rule {
    route: Route,
    /// How the dataset is read (a cache the rule names is added when it is opened).
    options: ReadOptions,
    caches: Arc<Caches>,
    /// The dataset once opened, read without a lock by every operation.
    dataset: ArcSwapOption<Dataset>,
    /// Until when (coarse clock, ns) operations fail at once; 0 while the store is up.
    down_until: AtomicU64,
    /// Why the store was last found unreachable.
    why_down: Mutex<String>,
    /// One operation is finding out whether a store that was down is back; the others fail
    /// at once meanwhile, so a dead cluster holds at most one caller at a time.
    probing: AtomicBool,
    /// One operation is opening the dataset; the others wait for it (up to [`OPEN_WAIT`]).
    opening: Mutex<bool>,
    /// Signalled when an open of the dataset ends.
    opened: Condvar,
}

/// How long an operation waits for another one's open of the same dataset before failing.
const OPEN_WAIT: Duration = Duration::from_secs(5);

/// Leave to use a rule's dataset, from [`Rule::admit`]; hand it back to [`Rule::settle`].
#[must_use]
pub struct Ticket {
    /// This operation finds out whether a store that was down is back.
    probe: bool,
}

/// The cache directories rules name, each opened once, on first use, and shared.
#[derive(Debug, Default)]
struct Caches(Mutex<HashMap<String, Arc<Cache>>>);

impl Caches {
    fn get(&self, dir: &str) -> Result<Arc<Cache>> {
        let mut caches = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cache) = caches.get(dir) {
            return Ok(Arc::clone(cache));
        }
        let cache = Arc::new(Cache::open(std::path::Path::new(dir))?);
        caches.insert(dir.to_owned(), Arc::clone(&cache));
        Ok(cache)
    }
}

impl Rule {
    fn new(route: Route, options: &ReadOptions, caches: &Arc<Caches>) -> Rule {
        Rule {
            route,
            options: options.clone(),
            caches: Arc::clone(caches),
            dataset: ArcSwapOption::empty(),
            down_until: AtomicU64::new(0),
            why_down: Mutex::default(),
            probing: AtomicBool::new(false),
            opening: Mutex::new(false),
            opened: Condvar::new(),
        }
    }

    /// The rule as the table holds it.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The prefix in index form (empty for `/`).
    pub fn key(&self) -> &[u8] {
        self.route.key()
    }

    /// Leave to use the dataset now: refused at once while its store is down (within
    /// [`RETRY_AFTER`] of the last failure to reach it, or while another operation probes
    /// whether it is back); after the pause, one operation is let through as the probe.
    pub fn admit(&self) -> Result<Ticket> {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return Ok(Ticket { probe: false });
        }
        if crate::time::coarse_monotonic_ns() < until || self.probing.swap(true, Ordering::AcqRel) {
            return Err(self.unavailable());
        }
        Ok(Ticket { probe: true })
    }

    /// Ends an operation [`Rule::admit`] let through. `unreachable` says why, when it failed
    /// to reach the store: the rule is then down for [`RETRY_AFTER`]. A probe that reached
    /// it ends the pause.
    pub fn settle(&self, ticket: Ticket, unreachable: Option<String>) {
        match unreachable {
            Some(why) => {
                *self.why_down.lock().unwrap_or_else(|p| p.into_inner()) = why;
                let until = crate::time::coarse_monotonic_ns() + RETRY_AFTER.as_nanos() as u64;
                self.down_until.store(until.max(1), Ordering::Release);
            }
            None if ticket.probe => self.down_until.store(0, Ordering::Release),
            None => {}
        }
        if ticket.probe {
            self.probing.store(false, Ordering::Release);
        }
    }

    /// The dataset, opened on first use by one operation (the others wait for it, up to
    /// 5 s). Call it between [`Rule::admit`] and [`Rule::settle`].
    pub fn dataset_of(&self, _admitted: &Ticket) -> Result<Arc<Dataset>> {
        if let Some(dataset) = self.dataset.load_full() {
            return Ok(dataset);
        }
        let mut opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + OPEN_WAIT;
        while *opening {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(
                    self.unavailable_because("another request has been opening it for too long")
                );
            }
            opening = self
                .opened
                .wait_timeout(opening, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if let Some(dataset) = self.dataset.load_full() {
            return Ok(dataset);
        }
        *opening = true;
        drop(opening);
        // Opened without a lock held: an open that waits on a dead store holds nothing the
        // rule's other operations need.
        let opened = self.open_newest().map(Arc::new);
        if let Ok(dataset) = &opened {
            self.dataset.store(Some(Arc::clone(dataset)));
        }
        *self.opening.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.opened.notify_all();
        opened
    }

    /// The rule's dataset (opened on first use), or why not.
    pub fn dataset(&self) -> Result<Arc<Dataset>> {
        self.with_dataset(|d| Ok(Arc::clone(d)))
    }

    /// The dataset, when it was opened already (nothing is opened).
    pub fn opened(&self) -> Option<Arc<Dataset>> {
        self.dataset.load_full()
    }

    /// Drops the rule's reference to its dataset (a mount serves it from then on, following
    /// its generations itself, so the first generation's files are not kept open here).
    pub fn release(&self) {
        self.dataset.store(None);
    }

    /// Runs `op` on the dataset, through [`Rule::admit`] and [`Rule::settle`]. The open
    /// dataset is read without a lock or a reference count taken (this is every routed
    /// read's path).
    pub fn with_dataset<T>(&self, op: impl FnOnce(&Arc<Dataset>) -> Result<T>) -> Result<T> {
        let ticket = self.admit()?;
        let loaded = self.dataset.load();
        let result = match &*loaded {
            Some(dataset) => op(dataset),
            None => {
                drop(loaded);
                self.dataset_of(&ticket).and_then(|d| op(&d))
            }
        };
        let unreachable = match &result {
            Err(e @ Error::Remote { .. }) => Some(e.to_string()),
            _ => None,
        };
        self.settle(ticket, unreachable);
        result.map_err(|e| self.in_tree(e))
    }

    /// An error about a path of the dataset, made to name the path in the routed tree.
    fn in_tree(&self, e: Error) -> Error {
        let routed = |path: String| format!("/{}", display(&join(self.key(), path.as_bytes())));
        match e {
            Error::NotFound { path } => Error::NotFound { path: routed(path) },
            Error::WrongKind { path, problem } => Error::WrongKind {
                path: routed(path),
                problem,
            },
            other => other,
        }
    }

    fn unavailable(&self) -> Error {
        let why = self
            .why_down
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.unavailable_because(&why)
    }

    fn unavailable_because(&self, why: &str) -> Error {
        Error::Remote {
            uri: self.route.dataset.clone(),
            cause: format!(
                "unavailable (tried again every {} s): {why}",
                RETRY_AFTER.as_secs()
            )
            .into(),
        }
    }

    /// The dataset's newest generation, opened as the rule opens it.
    pub fn open_newest(&self) -> Result<Dataset> {
        let mut options = self.options.clone();
        if let Some(dir) = &self.route.cache {
            options.cache = Some(self.caches.get(dir)?);
        }
        Dataset::open_uri_with(&self.route.dataset, options)
    }

    /// The dataset's newest generation when it is newer than `served` (one look at the
    /// store's generations when it is not).
    pub fn newer_than(&self, served: u64) -> Result<Option<Dataset>> {
        let store = crate::store::open(&self.route.dataset)?;
        match crate::format::generation::newest(store.as_ref())? {
            Some(newest) if newest > served => self.open_newest().map(Some),
            _ => Ok(None),
        }
    }

    /// Moves an opened dataset to its newest generation. `Ok(true)` when it moved. A failure
    /// here does not mark the rule down: reads may still be served (from a cache).
    fn follow(&self) -> Result<bool> {
        let Some(current) = self.opened() else {
            return Ok(false);
        };
        let Some(newer) = self.newer_than(current.generation())? else {
            return Ok(false);
        };
        self.dataset.store(Some(Arc::new(newer)));
        Ok(true)
    }
}

/// The depth (number of components) of an index-form path.
fn depth(path: &[u8]) -> usize {
    match path.is_empty() {
        true => 0,
        false => 1 + path.iter().filter(|&&b| b == SEPARATOR).count(),
    }
}

/// The first `n` components of `path` (which has at least `n`).
fn leading(path: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return b"";
    }
    let mut seen = 0;
    for (i, &b) in path.iter().enumerate() {
        if b == SEPARATOR {
            seen += 1;
            if seen == n {
                return &path[..i];
            }
        }
    }
    path
}

/// `prefix` and `rel` joined (either may be empty).
pub fn join(prefix: &[u8], rel: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + rel.len() + 1);
    out.extend_from_slice(prefix);
    if !prefix.is_empty() && !rel.is_empty() {
        out.push(SEPARATOR);
    }
    out.extend_from_slice(rel);
    out
}

impl Routing {
    /// Routing for `table`, keeping the rules (and their opened datasets) of `previous` whose
    /// route is unchanged.
    fn new(
        table: Table,
        previous: Option<&Routing>,
        options: &ReadOptions,
        caches: &Arc<Caches>,
    ) -> Routing {
        let kept: HashMap<&Route, &Arc<Rule>> = previous
            .map(|p| p.rules.iter().map(|r| (&r.route, r)).collect())
            .unwrap_or_default();
        let mut rules = Vec::with_capacity(table.routes.len());
        let mut nodes: PathMap<Node> = PathMap::default();
        nodes.insert(Vec::new(), Node::default());
        let mut children: PathMap<std::collections::HashSet<Vec<u8>>> = PathMap::default();
        let mut depths = Vec::new();
        for (i, route) in table.routes.iter().enumerate() {
            rules.push(match kept.get(route) {
                Some(rule) => Arc::clone(rule),
                None => Arc::new(Rule::new(route.clone(), options, caches)),
            });
            let key = route.key();
            nodes.entry(key.to_vec()).or_default().rule = Some(i);
            let d = depth(key);
            if !depths.contains(&d) {
                depths.push(d);
            }
            // Every directory above the prefix lists the next component on the way to it.
            for above in 0..d {
                let dir = leading(key, above);
                let child = path::file_name(leading(key, above + 1)).to_vec();
                nodes.entry(dir.to_vec()).or_default();
                children.entry(dir.to_vec()).or_default().insert(child);
            }
        }
        for (dir, names) in children {
            let node = nodes.entry(dir).or_default();
            node.children = names.into_iter().collect();
            node.children.sort_by(|a, b| cmp_paths(a, b));
        }
        depths.sort_unstable_by(|a, b| b.cmp(a));
        Routing {
            table,
            rules,
            nodes,
            depths,
        }
    }

    /// The table this routing follows.
    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Every rule, in the table's order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// The rule with the longest prefix at or above `path` (index form), and the path in its
    /// dataset.
    pub fn covering<'a>(&'a self, path: &'a [u8]) -> Option<(&'a Arc<Rule>, &'a [u8])> {
        self.covering_at(path, depth(path))
    }

    /// [`Routing::covering`] for a path of `path_depth` components.
    fn covering_at<'a>(
        &'a self,
        path: &'a [u8],
        path_depth: usize,
    ) -> Option<(&'a Arc<Rule>, &'a [u8])> {
        for &d in self.depths.iter().filter(|&&d| d <= path_depth) {
            let prefix = leading(path, d);
            if let Some(rule) = self.nodes.get(prefix).and_then(|n| n.rule) {
                let rel = match d {
                    0 => path,
                    _ if prefix.len() == path.len() => b"",
                    _ => &path[prefix.len() + 1..],
                };
                return Some((&self.rules[rule], rel));
            }
        }
        None
    }

    /// Where the index-form `path` leads, or `None` when no rule serves it.
    pub fn target<'a>(&'a self, path: &'a [u8]) -> Option<Target<'a>> {
        let path_depth = depth(path);
        // Directories above prefixes lie above the deepest prefix: a deeper path is not one,
        // and its lookup is skipped.
        let may_be_dir = path_depth < self.depths.first().copied().unwrap_or(0) || path.is_empty();
        if may_be_dir {
            if let Some(node) = self.nodes.get(path) {
                if !node.children.is_empty() || path.is_empty() {
                    return Some(Target::Dir {
                        children: &node.children,
                        covering: self.covering_at(path, path_depth),
                    });
                }
            }
        }
        self.covering_at(path, path_depth)
            .map(|(rule, rel)| Target::Inside { rule, rel })
    }

    /// True when the index-form `path` is a directory above some prefix (or the root).
    pub fn is_router_dir(&self, path: &[u8]) -> bool {
        path.is_empty() || self.nodes.get(path).is_some_and(|n| !n.children.is_empty())
    }
}

/// A directory the routes imply (above a prefix): read-only, dated by the table's version.
pub fn router_dir_entry(path: Vec<u8>, table: &Table) -> Entry {
    Entry {
        path,
        mode: 0o040555,
        mtime_ns: table.time_ns,
        ..root_entry()
    }
}

impl Routes {
    /// Opens the routes table at `location` (a local directory or a store's URI): its newest
    /// version is read now, datasets on first use. `options` (a cache, fill, read policy)
    /// serve every rule; a rule that names its own cache reads through that one instead.
    pub fn open(location: impl AsRef<std::ffi::OsStr>, options: ReadOptions) -> Result<Routes> {
        let store = crate::store::open(location)?;
        let table = routes::read_existing(store.as_ref())?;
        let caches = Arc::default();
        let routing = Routing::new(table, None, &options, &caches);
        Ok(Routes {
            store,
            options,
            caches,
            routing: ArcSwap::from_pointee(routing),
            reloading: Mutex::new(()),
        })
    }

    /// The routing in force now.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.load_full()
    }

    /// Reads the table again and routes by its newest version from now on; `Ok(None)` when
    /// it did not change, else the routing it replaced. A table that cannot be read or does
    /// not parse is an error and the last good one keeps serving.
    pub fn reload_table(&self) -> Result<Option<Arc<Routing>>> {
        let table = routes::read_existing(self.store.as_ref())?;
        let _reloading = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.routing();
        // Two reloads at once: the one that read the newer version wins, whatever the order.
        if table.number <= current.table.number {
            return Ok(None);
        }
        let routing = Routing::new(table, Some(&current), &self.options, &self.caches);
        self.routing.store(Arc::new(routing));
        Ok(Some(current))
    }

    /// [`Routes::reload_table`], then every opened dataset moved to its newest generation
    /// (also when the table could not be reloaded). Returns whether the table changed and
    /// how many datasets moved; a dataset that cannot be reached stays at the generation it
    /// serves. A table that could not be reloaded is the error, once the datasets moved.
    pub fn refresh(&self) -> Result<(bool, usize)> {
        let reloaded = self.reload_table();
        let moved = self
            .routing()
            .rules
            .iter()
            .filter(|rule| rule.follow().unwrap_or(false))
            .count();
        Ok((reloaded?.is_some(), moved))
    }

    /// Metadata of a path of the routed tree (a directory above the prefixes is a read-only
    /// directory). The entry's path is its path in the routed tree.
    pub fn stat(&self, user_path: &[u8]) -> Result<Entry> {
        let path = normalize(user_path)?;
        let routing = self.routing.load();
        match routing.target(&path) {
            Some(Target::Dir { .. }) => Ok(router_dir_entry(path, routing.table())),
            Some(Target::Inside { rule, rel }) => {
                let entry = rule.with_dataset(|d| d.stat(rel))?;
                Ok(Entry {
                    path: join(rule.key(), &entry.path),
                    ..entry
                })
            }
            None => Err(not_found(&path)),
        }
    }

    /// The bytes of a file of the routed tree, checked, symlinks followed inside its dataset.
    pub fn read(&self, user_path: &[u8]) -> Result<Buffer> {
        let path = index_form(user_path)?;
        let routing = self.routing.load();
        match routing.target(&path) {
            Some(Target::Dir { .. }) => Err(Error::WrongKind {
                path: display(&path),
                problem: KindProblem::IsADirectory,
            }),
            Some(Target::Inside { rule, rel }) => rule.with_dataset(|d| d.read(rel)),
            None => Err(not_found(&path)),
        }
    }

    /// The entry a path of the routed tree leads to, symlinks followed inside its dataset (a
    /// directory above the prefixes is itself). The entry's path is its routed path.
    pub fn resolve(&self, user_path: &[u8]) -> Result<Entry> {
        let path = normalize(user_path)?;
        let routing = self.routing.load();
        match routing.target(&path) {
            Some(Target::Dir { .. }) => Ok(router_dir_entry(path, routing.table())),
            Some(Target::Inside { rule, rel }) => {
                let (_, entry) = rule.with_dataset(|d| d.resolve(rel))?;
                Ok(Entry {
                    path: join(rule.key(), &entry.path),
                    ..entry
                })
            }
            None => Err(not_found(&path)),
        }
    }

    /// [`Dataset::read_placed`] on the routed tree: the file's bytes, checked, written into the
    /// memory `place` gives once it knows their length; returns the length.
    pub fn read_placed<'b>(
        &self,
        user_path: &[u8],
        place: impl FnOnce(usize) -> Option<&'b mut [u8]>,
    ) -> Result<usize> {
        let (rule, rel) = self.locate(user_path)?;
        rule.with_dataset(|d| d.read_placed(&rel, place))
    }

    /// The datasets opened so far (their counters, for a reader's statistics).
    pub fn opened(&self) -> Vec<Arc<Dataset>> {
        self.routing()
            .rules
            .iter()
            .filter_map(|rule| rule.opened())
            .collect()
    }

    /// Entries every routed dataset's catalog records (each dataset opened to count them).
    pub fn entry_count(&self) -> Result<u64> {
        let routing = self.routing.load();
        let mut total = 0u64;
        for rule in &routing.rules {
            total = total.saturating_add(rule.with_dataset(|d| Ok(d.entry_count()))?);
        }
        Ok(total)
    }

    /// The dataset serving a path, and the path there (resolving symlinks, reading external
    /// files and the like go to it).
    pub fn locate(&self, user_path: &[u8]) -> Result<(Arc<Rule>, Vec<u8>)> {
        let path = index_form(user_path)?;
        let routing = self.routing.load();
        match routing.target(&path) {
            Some(Target::Inside { rule, rel }) => Ok((Arc::clone(rule), rel.to_vec())),
            Some(Target::Dir { .. }) => Err(Error::WrongKind {
                path: display(&path),
                problem: KindProblem::IsADirectory,
            }),
            None => Err(not_found(&path)),
        }
    }

    /// The direct children of a directory of the routed tree, in path order, with their
    /// paths in the routed tree. A directory above the prefixes lists the next component of
    /// each prefix below it, merged with what a rule above it holds there (the deeper rule's
    /// name wins).
    pub fn list(&self, user_dir: &[u8]) -> Result<Vec<Entry>> {
        let dir = normalize(user_dir)?;
        let routing = self.routing.load();
        match routing.target(&dir) {
            Some(Target::Inside { rule, rel }) => {
                let listed = rule.with_dataset(|d| d.list(rel))?;
                Ok(listed
                    .into_iter()
                    .map(|e| Entry {
                        path: join(rule.key(), &e.path),
                        ..e
                    })
                    .collect())
            }
            Some(Target::Dir { children, covering }) => {
                let mut out: Vec<Entry> = children
                    .iter()
                    .map(|name| router_dir_entry(join(&dir, name), routing.table()))
                    .collect();
                if let Some((rule, rel)) = covering {
                    for entry in covering_listing(rule, rel)? {
                        let name = path::file_name(&entry.path);
                        if children.binary_search_by(|c| cmp_paths(c, name)).is_err() {
                            out.push(Entry {
                                path: join(&dir, name),
                                ..entry
                            });
                        }
                    }
                }
                out.sort_by(|a, b| cmp_paths(&a.path, &b.path));
                Ok(out)
            }
            None => Err(not_found(&dir)),
        }
    }

    /// Every entry below a directory of the routed tree, in path order (collected: for
    /// listings, not for walking a billion entries).
    pub fn walk_under(&self, user_dir: &[u8]) -> Result<Vec<Entry>> {
        let dir = normalize(user_dir)?;
        let routing = self.routing.load();
        let mut out = Vec::new();
        match routing.target(&dir) {
            Some(Target::Inside { rule, rel }) => {
                let below = rule.with_dataset(|dataset| {
                    dataset
                        .walk_under(rel)?
                        .map(|item| item.map(|(_, entry)| entry))
                        .collect::<Result<Vec<Entry>>>()
                })?;
                out.extend(below.into_iter().map(|entry| Entry {
                    path: join(rule.key(), &entry.path),
                    ..entry
                }));
            }
            Some(Target::Dir { .. }) => {
                for entry in self.list(&dir)? {
                    let is_dir = entry.kind == EntryKind::Dir;
                    let child = entry.path.clone();
                    out.push(entry);
                    if is_dir {
                        out.extend(self.walk_under(&child)?);
                    }
                }
            }
            None => return Err(not_found(&dir)),
        }
        Ok(out)
    }

    /// The target of a symlink of the routed tree, as stored.
    pub fn read_link(&self, user_path: &[u8]) -> Result<Buffer> {
        let (rule, rel) = self.locate(user_path)?;
        rule.with_dataset(|d| {
            let (at, _) = d.lookup(&rel)?.ok_or_else(|| not_found(&rel))?;
            d.read_link(at)
        })
    }
}

/// What a rule's dataset holds at a directory above deeper prefixes: nothing when it holds
/// no directory there.
fn covering_listing(rule: &Rule, rel: &[u8]) -> Result<Vec<Entry>> {
    match rule.with_dataset(|d| d.list(rel)) {
        Ok(listed) => Ok(listed),
        Err(Error::NotFound { .. }) => Ok(Vec::new()),
        Err(Error::WrongKind { .. }) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// A user's path in index form, borrowed when it already is (but for leading `/`s), so the
/// common case costs no allocation.
fn index_form(user_path: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>> {
    let start = user_path.iter().position(|&b| b != SEPARATOR);
    let trimmed = start.map_or(&b""[..], |i| &user_path[i..]);
    if trimmed.is_empty() || path::check_entry_path(trimmed).is_ok() {
        return Ok(std::borrow::Cow::Borrowed(trimmed));
    }
    normalize(user_path).map(std::borrow::Cow::Owned)
}

fn not_found(path: &[u8]) -> Error {
    Error::NotFound {
        path: format!("/{}", display(path)),
    }
}

/// Parses untrusted bytes as version 0 of a routes table and routes every prefix, a path
/// below each and the directories above each, checking that the longest prefix wins and that
/// every rule can be removed and re-added: the entry point of the routes fuzz target. Returns
/// the paths routed.
pub fn route_untrusted(bytes: &[u8]) -> usize {
    let Ok((table, _)) = routes::parse(bytes, 0, std::path::Path::new("<fuzz>")) else {
        return 0;
    };
    let routing = Routing::new(
        table.clone(),
        None,
        &ReadOptions::default(),
        &Arc::default(),
    );
    let mut routed = 0;
    for rule in &routing.rules {
        let key = rule.key();
        assert!(routing.target(key).is_some(), "a prefix routes nowhere");
        let below = join(key, b"fuzz-child");
        match routing.target(&below) {
            Some(Target::Inside { rule: deepest, .. }) => assert!(
                deepest.key() == key || path::is_inside(deepest.key(), key),
                "a shorter prefix won"
            ),
            Some(Target::Dir { .. }) => {}
            None => panic!("a path below a prefix routes nowhere"),
        }
        for above in 0..depth(key) {
            assert!(routing.is_router_dir(leading(key, above)));
        }
        let removed = table
            .with(&routes::Change::Remove(rule.route().prefix.clone()))
            .expect("every rule can be removed")
            .expect("removing changes the table");
        assert_eq!(removed.routes.len() + 1, table.routes.len());
        let again = table.with(&routes::Change::Add(rule.route().clone()));
        assert!(
            matches!(again, Ok(None)),
            "re-adding a rule changed the table"
        );
        routed += 2 + depth(key);
    }
    routed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(prefixes: &[&str]) -> Routing {
        let table = Table {
            number: Some(0),
            time_ns: 0,
            routes: prefixes
                .iter()
                .map(|p| Route {
                    prefix: p.to_string(),
                    dataset: format!("/data{p}"),
                    cache: None,
                })
                .collect(),
        };
        Routing::new(table, None, &ReadOptions::default(), &Arc::default())
    }

    fn inside(routing: &Routing, path: &str) -> Option<(String, String)> {
        match routing.target(path.as_bytes())? {
            Target::Inside { rule, rel } => Some((
                rule.route().prefix.clone(),
                String::from_utf8(rel.to_vec()).unwrap(),
            )),
            Target::Dir { .. } => Some(("dir".into(), String::new())),
        }
    }

    #[test]
    fn the_longest_prefix_wins_and_unrouted_paths_lead_nowhere() {
        let r = routing(&["/images", "/images/2026", "/labels/x/y"]);
        let got = |p| inside(&r, p);
        assert_eq!(
            got("images/a.jpg"),
            Some(("/images".into(), "a.jpg".into()))
        );
        assert_eq!(
            got("images/2026/b"),
            Some(("/images/2026".into(), "b".into()))
        );
        assert_eq!(
            got("images/2026"),
            Some(("/images/2026".into(), String::new()))
        );
        assert_eq!(
            got("images/20260"),
            Some(("/images".into(), "20260".into()))
        );
        assert_eq!(got("images"), Some(("dir".into(), String::new())));
        assert_eq!(got("labels/x"), Some(("dir".into(), String::new())));
        assert_eq!(
            got("labels/x/y/z"),
            Some(("/labels/x/y".into(), "z".into()))
        );
        assert_eq!(got("labels/q"), None);
        assert_eq!(got("other"), None);
        assert_eq!(got(""), Some(("dir".into(), String::new())));
    }

    #[test]
    fn directories_above_prefixes_list_the_way_to_each() {
        let r = routing(&["/images/2025", "/images/2026", "/labels"]);
        let Some(Target::Dir { children, covering }) = r.target(b"") else {
            panic!("root is not a directory");
        };
        assert_eq!(children, [b"images".to_vec(), b"labels".to_vec()]);
        assert!(covering.is_none());
        let Some(Target::Dir { children, .. }) = r.target(b"images") else {
            panic!("images is not a directory");
        };
        assert_eq!(children, [b"2025".to_vec(), b"2026".to_vec()]);
    }

    #[test]
    fn the_fuzz_seed_routes_and_every_one_byte_change_of_it_is_refused_or_routed() {
        let seed = include_bytes!("../../fuzz/seeds/routes-0.json");
        // Four rules at depths 0 to 3: two paths each, and the directories above them.
        assert_eq!(route_untrusted(seed), 4 * 2 + (1 + 2 + 3));
        let mut bytes = seed.to_vec();
        for i in 0..bytes.len() {
            for change in [0x01, 0x20, 0x80] {
                bytes[i] ^= change;
                route_untrusted(&bytes);
                bytes[i] ^= change;
            }
        }
    }

    #[test]
    fn a_rule_for_the_root_covers_what_no_deeper_rule_takes() {
        let r = routing(&["/", "/a/b"]);
        assert_eq!(inside(&r, "x/y"), Some(("/".into(), "x/y".into())));
        assert_eq!(inside(&r, "a/c"), Some(("/".into(), "a/c".into())));
        assert_eq!(inside(&r, "a/b/c"), Some(("/a/b".into(), "c".into())));
        let Some(Target::Dir { covering, .. }) = r.target(b"a") else {
            panic!("a is not a directory");
        };
        let (rule, rel) = covering.unwrap();
        assert_eq!((rule.route().prefix.as_str(), rel), ("/", &b"a"[..]));
    }
}
