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
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
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
    routing: RwLock<Arc<Routing>>,
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
    options: ReadOptions,
    /// Read on every operation, written only when the dataset is opened or found down.
    state: RwLock<RuleState>,
}

#[derive(Debug, Default)]
struct RuleState {
    dataset: Option<Arc<Dataset>>,
    /// Until when reads fail at once, and why: the dataset's store could not be reached.
    down: Option<(Instant, String)>,
}

impl Rule {
    fn new(route: Route, defaults: &ReadOptions) -> Result<Rule> {
        let mut options = defaults.clone();
        if let Some(dir) = &route.cache {
            options.cache = Some(Arc::new(Cache::open(std::path::Path::new(dir))?));
        }
        Ok(Rule {
            route,
            options,
            state: RwLock::default(),
        })
    }

    /// The rule as the table holds it.
    pub fn route(&self) -> &Route {
        &self.route
    }

    /// The prefix in index form (empty for `/`).
    pub fn key(&self) -> &[u8] {
        self.route.key()
    }

    /// The rule's dataset, opened on first use. While its store is down (an earlier attempt
    /// or read failed to reach it within the last [`RETRY_AFTER`]) this fails at once.
    pub fn dataset(&self) -> Result<Arc<Dataset>> {
        {
            let state = self.read_state();
            match (&state.down, &state.dataset) {
                (Some((until, why)), _) if Instant::now() < *until => {
                    return Err(self.unavailable(why))
                }
                (None, Some(dataset)) => return Ok(Arc::clone(dataset)),
                _ => {}
            }
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        if state
            .down
            .as_ref()
            .is_some_and(|(until, _)| Instant::now() >= *until)
        {
            state.down = None;
        }
        if let Some((_, why)) = &state.down {
            return Err(self.unavailable(why));
        }
        if let Some(dataset) = &state.dataset {
            return Ok(Arc::clone(dataset));
        }
        match Dataset::open_uri_with(&self.route.dataset, self.options.clone()) {
            Ok(dataset) => {
                let dataset = Arc::new(dataset);
                state.dataset = Some(Arc::clone(&dataset));
                Ok(dataset)
            }
            Err(e) => {
                if matches!(e, Error::Remote { .. }) {
                    state.down = Some((Instant::now() + RETRY_AFTER, e.to_string()));
                }
                Err(e)
            }
        }
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, RuleState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The dataset, when it was opened already (nothing is opened).
    pub fn opened(&self) -> Option<Arc<Dataset>> {
        self.read_state().dataset.clone()
    }

    /// Runs `op` on the dataset; a store found unreachable makes the rule fail at once for
    /// [`RETRY_AFTER`].
    pub fn with_dataset<T>(&self, op: impl FnOnce(&Dataset) -> Result<T>) -> Result<T> {
        let result = {
            let state = self.read_state();
            match (&state.down, &state.dataset) {
                // The common case: open and up; run under the read lock, no reference taken.
                (None, Some(dataset)) => op(dataset),
                _ => {
                    drop(state);
                    op(self.dataset()?.as_ref())
                }
            }
        };
        if let Err(e @ Error::Remote { .. }) = &result {
            self.mark_down(e.to_string());
        }
        result
    }

    /// Makes reads fail at once for [`RETRY_AFTER`] (the store was found unreachable).
    pub fn mark_down(&self, why: String) {
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.down = Some((Instant::now() + RETRY_AFTER, why));
    }

    /// True while reads fail at once (see [`Rule::dataset`]).
    pub fn is_down(&self) -> bool {
        self.read_state()
            .down
            .as_ref()
            .is_some_and(|(until, _)| Instant::now() < *until)
    }

    /// The error reads get while the rule is down.
    fn down_error(&self) -> Option<Error> {
        let state = self.read_state();
        match &state.down {
            Some((until, why)) if Instant::now() < *until => Some(self.unavailable(why)),
            _ => None,
        }
    }

    fn unavailable(&self, why: &str) -> Error {
        Error::Remote {
            uri: self.route.dataset.clone(),
            cause: format!(
                "unavailable (tried again every {} s): {why}",
                RETRY_AFTER.as_secs()
            )
            .into(),
        }
    }

    /// The dataset's newest generation, opened as the rule opens it (for a reader that
    /// follows new generations); a store found unreachable marks the rule down.
    pub fn open_newest(&self) -> Result<Dataset> {
        if let Some(e) = self.down_error() {
            return Err(e);
        }
        let newest = Dataset::open_uri_with(&self.route.dataset, self.options.clone());
        if let Err(e @ Error::Remote { .. }) = &newest {
            self.mark_down(e.to_string());
        }
        newest
    }

    /// Moves an opened dataset to its newest generation. `Ok(true)` when it moved.
    fn follow(&self) -> Result<bool> {
        let Some(current) = self.opened() else {
            return Ok(false);
        };
        let newer = self.open_newest()?;
        if newer.generation() <= current.generation() {
            return Ok(false);
        }
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.dataset = Some(Arc::new(newer));
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
    fn new(table: Table, previous: Option<&Routing>, options: &ReadOptions) -> Result<Routing> {
        let mut rules = Vec::with_capacity(table.routes.len());
        let mut nodes: PathMap<Node> = PathMap::default();
        nodes.insert(Vec::new(), Node::default());
        let mut depths = Vec::new();
        for (i, route) in table.routes.iter().enumerate() {
            let kept = previous.and_then(|p| p.rules.iter().find(|r| r.route == *route));
            rules.push(match kept {
                Some(rule) => Arc::clone(rule),
                None => Arc::new(Rule::new(route.clone(), options)?),
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
                let node = nodes.entry(dir.to_vec()).or_default();
                if !node.children.contains(&child) {
                    node.children.push(child);
                }
            }
        }
        for node in nodes.values_mut() {
            node.children.sort_by(|a, b| cmp_paths(a, b));
        }
        depths.sort_unstable_by(|a, b| b.cmp(a));
        Ok(Routing {
            table,
            rules,
            nodes,
            depths,
        })
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
        let path_depth = depth(path);
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
        if let Some(node) = self.nodes.get(path) {
            if !node.children.is_empty() || path.is_empty() {
                return Some(Target::Dir {
                    children: &node.children,
                    covering: self.covering(path),
                });
            }
        }
        self.covering(path)
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
        let routing = Routing::new(table, None, &options)?;
        Ok(Routes {
            store,
            options,
            routing: RwLock::new(Arc::new(routing)),
        })
    }

    /// The routing in force now.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Where the table lives.
    pub fn uri(&self) -> String {
        self.store.uri("")
    }

    /// Reads the table again and routes by its newest version from now on; `Ok(None)` when
    /// it did not change, else the routing it replaced. A table that cannot be read or does
    /// not parse is an error and the last good one keeps serving.
    pub fn reload_table(&self) -> Result<Option<Arc<Routing>>> {
        let table = routes::read_existing(self.store.as_ref())?;
        let current = self.routing();
        if table.number == current.table.number {
            return Ok(None);
        }
        let routing = Arc::new(Routing::new(table, Some(&current), &self.options)?);
        let mut slot = self.routing.write().unwrap_or_else(|p| p.into_inner());
        Ok(Some(std::mem::replace(&mut *slot, routing)))
    }

    /// [`Routes::reload_table`], then every opened dataset moved to its newest generation.
    /// Returns whether the table changed and how many datasets moved; a dataset that cannot
    /// be reached stays at the generation it serves.
    pub fn refresh(&self) -> Result<(bool, usize)> {
        let changed = self.reload_table()?.is_some();
        let moved = self
            .routing()
            .rules
            .iter()
            .filter(|rule| rule.follow().unwrap_or(false))
            .count();
        Ok((changed, moved))
    }

    /// Metadata of a path of the routed tree (a directory above the prefixes is a read-only
    /// directory). The entry's path is its path in the routed tree.
    pub fn stat(&self, user_path: &[u8]) -> Result<Entry> {
        let path = normalize(user_path)?;
        let routing = self.routing();
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
        let routing = self.routing();
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
        let routing = self.routing();
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
        let routing = self.routing();
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
        let routing = self.routing();
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
        let routing = self.routing();
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
                        if !children.iter().any(|c| c == name) {
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
        let routing = self.routing();
        let mut out = Vec::new();
        match routing.target(&dir) {
            Some(Target::Inside { rule, rel }) => {
                let dataset = rule.dataset()?;
                for item in dataset.walk_under(rel)? {
                    let (_, entry) = item?;
                    out.push(Entry {
                        path: join(rule.key(), &entry.path),
                        ..entry
                    });
                }
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
        Routing::new(table, None, &ReadOptions::default()).unwrap()
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
