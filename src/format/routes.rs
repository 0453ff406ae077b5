//! Routes tables: path prefixes mapped to datasets, so that many datasets on many stores read
//! as one tree (formats/SPEC.md, "Routes tables"). A table is a sequence of immutable
//! versions, each committed with the put-if-absent of dataset generations, so two operators
//! changing it at once both land and a reader only ever sees whole versions.

use crate::error::{Error, Result};
use crate::format::path;
use crate::store::Store;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The `format` field every version carries.
pub const ROUTES_FORMAT: &str = "sheaf-routes";

/// The routes table version this build writes and the newest it reads.
pub const ROUTES_VERSION: u16 = 1;

/// How many times a change is rebased on a newer version before it gives up.
const COMMIT_ATTEMPTS: usize = 64;

/// One rule: paths at and under `prefix` are served by the dataset at `dataset`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    /// Absolute, canonical (`/` alone for the whole tree; no trailing, repeated, `.` or `..`
    /// components): see [`canonical_prefix`].
    pub prefix: String,
    /// Where the dataset lives: a URI, or an absolute local path.
    pub dataset: String,
    /// A cache directory its readers use, when the rule names one (a reader's own cache
    /// serves rules that name none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
}

impl Route {
    /// The prefix in the form an index stores paths: relative, empty for `/`.
    pub fn key(&self) -> &[u8] {
        &self.prefix.as_bytes()[1..]
    }
}

/// One version of a routes table as stored.
#[derive(Serialize, Deserialize)]
struct Stored {
    format: String,
    version: u16,
    number: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<u64>,
    txn: String,
    time_ns: i64,
    operation: String,
    routes: Vec<Route>,
}

/// One version of a routes table: its rules, in the path order of their prefixes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// The version's number; `None` for the empty table before the first version.
    pub number: Option<u64>,
    /// The rules, prefixes unique, in component order.
    pub routes: Vec<Route>,
    /// When the version was committed, nanoseconds since the epoch (0 before the first).
    pub time_ns: i64,
}

/// A change to a routes table.
#[derive(Clone, Debug)]
pub enum Change {
    /// Route a prefix to a dataset. A prefix already routed to the same dataset and cache
    /// is left as it is; one routed elsewhere is refused.
    Add(Route),
    /// Stop routing a prefix.
    Remove(String),
}

/// What a change did.
#[derive(Clone, Debug)]
pub struct Changed {
    /// The table after the change.
    pub table: Table,
    /// False when the table already said what the change asked (nothing committed).
    pub committed: bool,
}

/// The canonical form of a prefix given by a user: absolute, components separated by one
/// `/`, no trailing `/`; `/` names the whole tree. `.` and `..` components, NUL bytes and
/// relative prefixes are refused.
pub fn canonical_prefix(prefix: &str) -> Result<String> {
    let invalid = |reason| Error::InvalidPath {
        path: prefix.to_owned(),
        reason,
    };
    if !prefix.starts_with('/') {
        return Err(invalid(
            "a route's prefix must be absolute (start with `/`)",
        ));
    }
    let components: Vec<&str> = prefix.split('/').filter(|c| !c.is_empty()).collect();
    if components.iter().any(|c| *c == "." || *c == "..") {
        return Err(invalid(
            "`.` and `..` components are not allowed in a prefix",
        ));
    }
    if prefix.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    Ok(format!("/{}", components.join("/")))
}

/// The key of version `number` under the table's location.
pub fn version_key(number: u64) -> String {
    format!("{number:020}.json")
}

fn number_of_key(key: &str) -> Option<u64> {
    let name = key.strip_suffix(".json")?;
    (name.len() == 20 && name.bytes().all(|b| b.is_ascii_digit()))
        .then(|| name.parse().ok())
        .flatten()
}

/// The newest version's number, or `None` for a location that holds no table yet. A listing
/// may lag a commit on some stores, so the numbers after the newest listed are probed.
pub fn newest(store: &dyn Store) -> Result<Option<u64>> {
    let listed = store.list_dir("")?;
    let mut newest = listed
        .objects
        .iter()
        .filter_map(|o| number_of_key(&o.key))
        .max();
    loop {
        let next = newest.map_or(0, |n| n + 1);
        if store.len(&version_key(next))?.is_none() {
            return Ok(newest);
        }
        newest = Some(next);
    }
}

/// The newest version of the table at `store`, or the empty table when there is none yet.
pub fn read_newest(store: &dyn Store) -> Result<Table> {
    match newest(store)? {
        None => Ok(Table::default()),
        Some(number) => read_version(store, number),
    }
}

/// The newest version of the table at `store`; a location without one is refused, so that
/// a mistyped location is not served as an empty tree.
pub fn read_existing(store: &dyn Store) -> Result<Table> {
    match newest(store)? {
        None => Err(Error::Refused {
            path: PathBuf::from(store.uri("")),
            reason: "holds no routes table (`sheaf route add` creates one)".into(),
        }),
        Some(number) => read_version(store, number),
    }
}

/// Version `number` of the table at `store`.
pub fn read_version(store: &dyn Store, number: u64) -> Result<Table> {
    let key = version_key(number);
    let bytes = store.read(&key)?;
    parse(&bytes, number, &PathBuf::from(store.uri(&key))).map(|(table, _)| table)
}

/// Decodes version `number`; returns the table and the writer's transaction id. Anything the
/// contract does not allow is `Corrupt` (or `UnsupportedVersion` for a newer version).
pub fn parse(bytes: &[u8], number: u64, file: &std::path::Path) -> Result<(Table, String)> {
    let corrupt = |reason: String| Error::Corrupt {
        file: file.to_path_buf(),
        reason,
    };
    let stored: Stored =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a routes table: {e}")))?;
    if stored.format != ROUTES_FORMAT {
        return Err(corrupt(format!(
            "format is {:?}, not {ROUTES_FORMAT:?}",
            stored.format
        )));
    }
    if stored.version == 0 || stored.version > ROUTES_VERSION {
        return Err(Error::UnsupportedVersion {
            file: file.to_path_buf(),
            found: stored.version,
            oldest: 1,
            newest: ROUTES_VERSION,
        });
    }
    if stored.number != number || stored.parent != number.checked_sub(1) {
        return Err(corrupt(format!(
            "says it is version {} with parent {:?}, but is stored as version {number}",
            stored.number, stored.parent
        )));
    }
    let mut routes = stored.routes;
    for route in &routes {
        check_route(route).map_err(|e| corrupt(e.to_string()))?;
    }
    sort_routes(&mut routes);
    if let Some(pair) = routes.windows(2).find(|w| w[0].prefix == w[1].prefix) {
        return Err(corrupt(format!(
            "prefix {} is routed twice",
            pair[0].prefix
        )));
    }
    let table = Table {
        number: Some(number),
        routes,
        time_ns: stored.time_ns,
    };
    Ok((table, stored.txn))
}

/// A rule as stored must be canonical and name a dataset.
fn check_route(route: &Route) -> Result<()> {
    let canonical = canonical_prefix(&route.prefix)?;
    if canonical != route.prefix {
        return Err(Error::InvalidPath {
            path: route.prefix.clone(),
            reason: "a stored prefix must be canonical",
        });
    }
    if route.dataset.is_empty() {
        return Err(Error::Refused {
            path: PathBuf::from(&route.prefix),
            reason: "the rule names no dataset".into(),
        });
    }
    Ok(())
}

fn sort_routes(routes: &mut [Route]) {
    routes.sort_by(|a, b| path::cmp_paths(a.key(), b.key()));
}

impl Table {
    /// The table with `change` applied, or `None` when it already says what was asked.
    pub fn with(&self, change: &Change) -> Result<Option<Table>> {
        let mut routes = self.routes.clone();
        match change {
            Change::Add(route) => {
                check_route(route)?;
                match routes.iter().find(|r| r.prefix == route.prefix) {
                    Some(existing) if existing == route => return Ok(None),
                    Some(existing) => {
                        let cache = match &existing.cache {
                            Some(dir) => format!(" with cache {dir}"),
                            None => String::new(),
                        };
                        return Err(Error::Refused {
                            path: PathBuf::from(&route.prefix),
                            reason: format!(
                                "already routed to {}{cache}: remove that rule first (`sheaf route rm`)",
                                existing.dataset
                            ),
                        });
                    }
                    None => routes.push(route.clone()),
                }
            }
            Change::Remove(prefix) => {
                let prefix = canonical_prefix(prefix)?;
                let before = routes.len();
                routes.retain(|r| r.prefix != prefix);
                if routes.len() == before {
                    return Err(Error::Refused {
                        path: PathBuf::from(prefix),
                        reason: "no rule has this prefix (`sheaf route ls` lists them)".into(),
                    });
                }
            }
        }
        sort_routes(&mut routes);
        Ok(Some(Table {
            number: Some(self.number.map_or(0, |n| n + 1)),
            routes,
            time_ns: crate::time::now_ns(),
        }))
    }

    fn encode(&self, txn: &str, operation: &str) -> Result<Vec<u8>> {
        let number = self.number.unwrap_or(0);
        let stored = Stored {
            format: ROUTES_FORMAT.to_owned(),
            version: ROUTES_VERSION,
            number,
            parent: number.checked_sub(1),
            txn: txn.to_owned(),
            time_ns: self.time_ns,
            operation: operation.to_owned(),
            routes: self.routes.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&stored).map_err(|e| Error::Corrupt {
            file: PathBuf::from(version_key(number)),
            reason: format!("cannot encode the routes table: {e}"),
        })?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

fn describe(change: &Change) -> String {
    match change {
        Change::Add(route) => format!("add {} {}", route.prefix, route.dataset),
        Change::Remove(prefix) => format!("rm {prefix}"),
    }
}

/// Applies `change` to the newest version of the table at `store` and commits the result as
/// the next version (put-if-absent). Losing the race to another writer re-reads the newest
/// version and applies the change to it, so concurrent changes all land; a change that no
/// longer applies (its prefix taken or removed meanwhile) fails with the reason.
pub fn change(store: &dyn Store, change: &Change) -> Result<Changed> {
    let txn = crate::format::generation::new_txn();
    for _ in 0..COMMIT_ATTEMPTS {
        let current = read_newest(store)?;
        let Some(next) = current.with(change)? else {
            return Ok(Changed {
                table: current,
                committed: false,
            });
        };
        let number = next.number.unwrap_or(0);
        let bytes = next.encode(&txn, &describe(change))?;
        if commit(store, number, &bytes, &txn)? {
            return Ok(Changed {
                table: next,
                committed: true,
            });
        }
    }
    Err(Error::Contended {
        root: PathBuf::from(store.uri("")),
        reason: format!(
            "the routes table changed under this change {COMMIT_ATTEMPTS} times in a row; try again"
        ),
    })
}

/// Put-if-absent of one version: `true` when this writer made it (or an earlier attempt of
/// the same transaction whose acknowledgement was lost did).
fn commit(store: &dyn Store, number: u64, bytes: &[u8], txn: &str) -> Result<bool> {
    let key = version_key(number);
    let made = store.create_new(&key, bytes);
    if let Ok(true) = made {
        return Ok(true);
    }
    let ours = match store.read(&key) {
        Ok(found) => parse(&found, number, &PathBuf::from(store.uri(&key)))
            .is_ok_and(|(_, found_txn)| found_txn == txn),
        Err(Error::NotFound { .. }) => false,
        Err(e) => return made.and(Err(e)),
    };
    match made {
        Ok(_) => Ok(ours),
        Err(e) if !ours => Err(e),
        Err(_) => Ok(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    fn route(prefix: &str, dataset: &str) -> Route {
        Route {
            prefix: prefix.into(),
            dataset: dataset.into(),
            cache: None,
        }
    }

    #[test]
    fn prefixes_are_made_canonical_and_hostile_ones_refused() {
        assert_eq!(canonical_prefix("/images//2025/").unwrap(), "/images/2025");
        assert_eq!(canonical_prefix("/").unwrap(), "/");
        for bad in ["images", "/a/../b", "/a/./b", "", "/a\0b"] {
            assert!(canonical_prefix(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn changes_commit_numbered_versions_in_path_order() {
        let store = MemoryStore::new();
        assert_eq!(read_newest(&store).unwrap(), Table::default());
        assert!(read_existing(&store).is_err());
        change(&store, &Change::Add(route("/labels", "s3://b/labels"))).unwrap();
        change(&store, &Change::Add(route("/images/2025", "/data/i25"))).unwrap();
        let changed = change(&store, &Change::Add(route("/images", "/data/i"))).unwrap();
        assert!(changed.committed);
        let table = read_existing(&store).unwrap();
        assert_eq!(table.number, Some(2));
        let prefixes: Vec<_> = table.routes.iter().map(|r| r.prefix.as_str()).collect();
        assert_eq!(prefixes, ["/images", "/images/2025", "/labels"]);
        change(&store, &Change::Remove("/images/".into())).unwrap();
        let table = read_existing(&store).unwrap();
        assert_eq!(table.number, Some(3));
        assert_eq!(table.routes.len(), 2);
    }

    #[test]
    fn a_repeated_add_changes_nothing_and_a_conflicting_one_is_refused() {
        let store = MemoryStore::new();
        change(&store, &Change::Add(route("/a", "/data/a"))).unwrap();
        let again = change(&store, &Change::Add(route("/a", "/data/a"))).unwrap();
        assert!(!again.committed);
        assert_eq!(again.table.number, Some(0));
        let err = change(&store, &Change::Add(route("/a", "/data/b"))).unwrap_err();
        assert!(
            err.to_string().contains("already routed to /data/a"),
            "{err}"
        );
        let err = change(&store, &Change::Remove("/b".into())).unwrap_err();
        assert!(err.to_string().contains("no rule has this prefix"), "{err}");
    }

    #[test]
    fn a_version_that_breaks_the_contract_is_corrupt() {
        let file = std::path::Path::new("00000000000000000000.json");
        let good = |routes: &str| {
            format!(
                r#"{{"format":"sheaf-routes","version":1,"number":0,"txn":"t","time_ns":0,"operation":"x","routes":{routes}}}"#
            )
        };
        assert!(parse(good("[]").as_bytes(), 0, file).is_ok());
        let cases = [
            good(r#"[{"prefix":"/a","dataset":"x"},{"prefix":"/a","dataset":"y"}]"#),
            good(r#"[{"prefix":"/a/../b","dataset":"x"}]"#),
            good(r#"[{"prefix":"a","dataset":"x"}]"#),
            good(r#"[{"prefix":"/a/","dataset":"x"}]"#),
            good(r#"[{"prefix":"/a","dataset":""}]"#),
            good("{}"),
            "not json".to_owned(),
        ];
        for bytes in &cases {
            let err = parse(bytes.as_bytes(), 0, file).unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{bytes}: {err}");
        }
        assert!(
            parse(good("[]").as_bytes(), 1, file).is_err(),
            "wrong number"
        );
        let newer = good("[]").replace(r#""version":1"#, r#""version":2"#);
        let err = parse(newer.as_bytes(), 0, file).unwrap_err();
        assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err}");
    }

    #[test]
    fn racing_writers_both_land() {
        let store = std::sync::Arc::new(MemoryStore::new());
        let writers: Vec<_> = (0..8)
            .map(|i| {
                let store = std::sync::Arc::clone(&store);
                std::thread::spawn(move || {
                    change(
                        store.as_ref(),
                        &Change::Add(route(&format!("/p{i}"), &format!("/d{i}"))),
                    )
                    .unwrap()
                })
            })
            .collect();
        for writer in writers {
            assert!(writer.join().unwrap().committed);
        }
        let table = read_existing(store.as_ref()).unwrap();
        assert_eq!(table.routes.len(), 8);
        assert_eq!(table.number, Some(7));
    }
}
