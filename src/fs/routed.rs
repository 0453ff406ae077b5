//! The FUSE filesystem over a routes table: many datasets served as one tree.
//!
//! Each rule's dataset is served by its own [`Shared`] (the single-dataset filesystem's
//! state), created when a path under the rule is first used, so mounting never waits on a
//! dataset nobody reads. Inode numbers stay computed: a rule gets a slot number when first
//! routed to, and an inode of its dataset is `slot << 40 | inner`, the inner number being the
//! one the single-dataset filesystem gives (directories an index implies are numbered from
//! 2^39 within the slot). Directories above the prefixes (`/`, `/images`) get small numbers
//! of their own, one per directory the table implies, so memory follows the rules, not the
//! entries. A slot keeps its number for the life of the mount, also after its rule is removed
//! (it then answers ENOENT), so a number never changes meaning.
//!
//! A dataset whose store cannot be reached fails the operations under its prefixes with EIO
//! at once for a short while (`read::routes::RETRY_AFTER`) instead of holding the mount's
//! threads in its store's retries, while every other prefix keeps serving.

use super::{errno, reply_open, Forget, Handles, Listing, Refresher, Shared, ROOT};
use crate::error::Error;
use crate::format::path;
use crate::format::routes::Route;
use crate::read::routes::{join, Routes, Routing, Rule, Target, Ticket};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, Request,
};
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// A dataset's inode numbers are `slot << SLOT_SHIFT | inner`.
const SLOT_SHIFT: u32 = 40;
const INNER_MASK: u64 = (1 << SLOT_SHIFT) - 1;
/// Within a slot, where the directories an index implies are numbered.
const INNER_SYNTHETIC_BASE: u64 = 1 << (SLOT_SHIFT - 1);

/// A dataset whose operations have all been waiting this long without one finishing is taken
/// for stalled (a store that hangs rather than refuses): new operations under it fail at once.
const STALLED_AFTER_NS: u64 = 5_000_000_000;

/// How long an operation waits for one of its dataset's operations to finish when that
/// dataset holds as many of the mount's threads as it may, before failing with EIO.
const CROWDED_WAIT: Duration = Duration::from_millis(50);

/// The filesystem over a routes table.
pub struct RoutedFs {
    shared: Arc<RoutedShared>,
}

/// What the routed filesystem and its refresher share (opaque: reached through [`RoutedFs`]).
pub struct RoutedShared {
    routes: Arc<Routes>,
    ttl: Duration,
    /// Slot `n` is `slots[n - 1]`.
    slots: RwLock<Vec<Arc<Slot>>>,
    slot_of: Mutex<HashMap<Route, u64>>,
    dirs: Mutex<DirNumbers>,
    handles: Handles,
    uid: u32,
    gid: u32,
    /// How many of the mount's threads one dataset's operations may hold.
    slot_limit: u64,
}

/// The numbers of the directories above the prefixes: the root is 1, the others follow.
#[derive(Default)]
struct DirNumbers {
    by_path: HashMap<Vec<u8>, u64>,
    paths: Vec<Vec<u8>>,
}

/// One rule as the mount serves it.
struct Slot {
    number: u64,
    rule: Arc<Rule>,
    fs: Mutex<Option<Arc<Shared>>>,
    /// False once the table no longer holds the rule.
    live: AtomicBool,
    /// Operations running on the dataset now.
    in_flight: AtomicU64,
    /// When one last finished (or the first of those running began), coarse clock.
    progress_ns: AtomicU64,
}

/// One operation running on a slot's dataset, counted until dropped.
struct Flight<'a>(&'a Slot);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0
            .progress_ns
            .store(crate::time::coarse_monotonic_ns(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Release);
    }
}

/// What an inode number names.
enum Node {
    /// A directory above the prefixes (or the root), by its index-form path.
    Dir(Vec<u8>),
    /// An inode of a rule's dataset.
    In(Arc<Slot>, u64),
}

impl RoutedFs {
    /// A filesystem serving the tree `routes` joins with `threads` threads; the kernel keeps
    /// entries and attributes for `ttl` at most.
    pub fn new(routes: Arc<Routes>, ttl: Duration, threads: usize) -> RoutedFs {
        // SAFETY: getuid and getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut dirs = DirNumbers::default();
        dirs.by_path.insert(Vec::new(), ROOT);
        dirs.paths.push(Vec::new());
        let shared = RoutedShared {
            routes,
            ttl: ttl.min(super::TTL),
            slots: RwLock::default(),
            slot_of: Mutex::default(),
            dirs: Mutex::new(dirs),
            handles: Handles::default(),
            uid,
            gid,
            // Two threads stay free for the other prefixes (one with a single thread).
            slot_limit: (threads as u64).saturating_sub(2).max(1),
        };
        RoutedFs {
            shared: Arc::new(shared),
        }
    }

    /// What reloads the table and follows the datasets' generations, from another thread.
    pub fn refresher(&self) -> RoutedRefresher {
        RoutedRefresher {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl std::ops::Deref for RoutedFs {
    type Target = RoutedShared;

    fn deref(&self) -> &RoutedShared {
        &self.shared
    }
}

impl Slot {
    /// The slot's filesystem state, its dataset opened on first use (by an operation the
    /// rule admitted).
    fn fs(&self, ticket: &Ticket, ttl: Duration) -> Result<Arc<Shared>, Error> {
        if let Some(fs) = self.opened() {
            return Ok(fs);
        }
        // Opened without the slot's lock held, so statfs and refreshes never wait on it.
        let dataset = self.rule.dataset_of(ticket)?;
        let mut fs = self.fs.lock().unwrap_or_else(|p| p.into_inner());
        let made =
            fs.get_or_insert_with(|| Arc::new(Shared::new(dataset, ttl, INNER_SYNTHETIC_BASE)));
        // The mount serves the dataset from here on and follows its generations itself.
        self.rule.release();
        Ok(Arc::clone(made))
    }

    fn opened(&self) -> Option<Arc<Shared>> {
        self.fs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl RoutedShared {
    fn slot(&self, number: u64) -> Option<Arc<Slot>> {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner());
        let index = usize::try_from(number.checked_sub(1)?).ok()?;
        slots.get(index).cloned()
    }

    /// The slot of `rule`, numbered on first use.
    fn slot_for(&self, rule: &Arc<Rule>) -> Arc<Slot> {
        let mut slot_of = self.slot_of.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&number) = slot_of.get(rule.route()) {
            if let Some(slot) = self.slot(number) {
                return slot;
            }
        }
        let mut slots = self.slots.write().unwrap_or_else(|p| p.into_inner());
        let number = slots.len() as u64 + 1;
        let slot = Arc::new(Slot {
            number,
            rule: Arc::clone(rule),
            fs: Mutex::default(),
            live: AtomicBool::new(true),
            in_flight: AtomicU64::new(0),
            progress_ns: AtomicU64::new(0),
        });
        slots.push(Arc::clone(&slot));
        slot_of.insert(rule.route().clone(), number);
        slot
    }

    /// The number of the directory `path` above the prefixes, given on first use.
    fn dir_ino(&self, path: &[u8]) -> u64 {
        let mut dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&ino) = dirs.by_path.get(path) {
            return ino;
        }
        let ino = dirs.paths.len() as u64 + 1;
        dirs.paths.push(path.to_vec());
        dirs.by_path.insert(path.to_vec(), ino);
        ino
    }

    /// The number of `path` when it was given one.
    fn known_dir_ino(&self, path: &[u8]) -> Option<u64> {
        let dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
        dirs.by_path.get(path).copied()
    }

    fn node(&self, ino: u64) -> Result<Node, Errno> {
        let slot_number = ino >> SLOT_SHIFT;
        if slot_number == 0 {
            let dirs = self.dirs.lock().unwrap_or_else(|p| p.into_inner());
            let index = usize::try_from(ino.wrapping_sub(1)).map_err(|_| Errno::ENOENT)?;
            return dirs
                .paths
                .get(index)
                .map(|p| Node::Dir(p.clone()))
                .ok_or(Errno::ENOENT);
        }
        let slot = self.slot(slot_number).ok_or(Errno::ENOENT)?;
        if !slot.live.load(Ordering::Relaxed) {
            return Err(Errno::ENOENT);
        }
        Ok(Node::In(slot, ino & INNER_MASK))
    }

    /// The number the kernel knows inode `inner` of `slot` by: a dataset's root served at a
    /// directory above other prefixes is that directory. A number past the slot's range
    /// (a mount that followed very many rewritten generations) is refused, never wrapped
    /// into another slot's.
    fn outward(&self, routing: &Routing, slot: &Slot, inner: u64) -> Result<u64, Errno> {
        if inner == ROOT && routing.is_router_dir(slot.rule.key()) {
            return Ok(self.dir_ino(slot.rule.key()));
        }
        if inner > INNER_MASK {
            eprintln!(
                "sheaf mount: {}: inode numbers exhausted; remount to serve it",
                slot.rule.route().prefix
            );
            return Err(Errno::EIO);
        }
        Ok((slot.number << SLOT_SHIFT) | inner)
    }

    /// Counts an operation on `slot`, so that one dataset never holds more than `slot_limit`
    /// of the mount's threads: a store that hangs instead of refusing then leaves the rest
    /// to the other prefixes. An operation over the limit waits for one to finish (a healthy
    /// store finishes them in moments) for up to [`CROWDED_WAIT`], then fails with EIO; one
    /// on a dataset whose operations have all waited [`STALLED_AFTER_NS`] without one
    /// finishing fails at once.
    fn board<'s>(&self, slot: &'s Slot) -> Result<Flight<'s>, Errno> {
        let started = std::time::Instant::now();
        let mut spins = 0u32;
        loop {
            let now = crate::time::coarse_monotonic_ns();
            let running = slot.in_flight.load(Ordering::Acquire);
            let quiet = now.saturating_sub(slot.progress_ns.load(Ordering::Relaxed));
            if running > 0 && quiet > STALLED_AFTER_NS {
                return Err(Errno::EIO);
            }
            if running < self.slot_limit {
                let taken = slot.in_flight.compare_exchange(
                    running,
                    running + 1,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                if taken.is_ok() {
                    if running == 0 {
                        slot.progress_ns.store(now, Ordering::Relaxed);
                    }
                    return Ok(Flight(slot));
                }
                continue;
            }
            if started.elapsed() > CROWDED_WAIT {
                return Err(Errno::EIO);
            }
            spins += 1;
            match spins < 64 {
                true => std::thread::yield_now(),
                false => std::thread::sleep(Duration::from_micros(200)),
            }
        }
    }

    /// Runs `op` on a slot's filesystem, if the rule admits it: while its store is down
    /// (just found unreachable, or being probed) it fails at once with EIO, so a dead
    /// cluster holds at most one of the mount's threads at a time.
    fn in_slot<T>(
        &self,
        slot: &Slot,
        op: impl FnOnce(&Shared) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        let _flight = self.board(slot)?;
        let ticket = slot.rule.admit().map_err(|_| Errno::EIO)?;
        let (result, unreachable) = match slot.fs(&ticket, self.ttl) {
            Err(e) => {
                let why = matches!(e, Error::Remote { .. }).then(|| e.to_string());
                (Err(errno(e)), why)
            }
            Ok(fs) => {
                let before = fs.unreachable_count();
                let result = op(&fs);
                let failed = result.is_err() && fs.unreachable_count() > before;
                (result, failed.then(|| fs.last_unreachable()))
            }
        };
        slot.rule.settle(ticket, unreachable);
        result
    }

    fn dir_attr(&self, ino: u64) -> FileAttr {
        let time = crate::time::system_time(self.routes.routing().table().time_ns);
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: FileType::Directory,
            perm: 0o555,
            nlink: 2,
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            flags: 0,
            blksize: 4096,
        }
    }

    /// The attributes of the routed tree's `path` (index form). A prefix's own directory is
    /// answered from the table, without opening its dataset (`ls -l` of the directories
    /// above the prefixes opens nothing).
    fn lookup_routed(&self, path: &[u8]) -> Result<FileAttr, Errno> {
        let routing = self.routes.routing();
        match routing.target(path) {
            Some(Target::Dir { .. }) => Ok(self.dir_attr(self.dir_ino(path))),
            Some(Target::Inside { rule, rel: [] }) => {
                let slot = self.slot_for(rule);
                Ok(self.dir_attr(self.outward(&routing, &slot, ROOT)?))
            }
            Some(Target::Inside { rule, rel }) => {
                let slot = self.slot_for(rule);
                let (inner, attr) = self.in_slot(&slot, |fs| fs.lookup_path(rel))?;
                Ok(FileAttr {
                    ino: INodeNo(self.outward(&routing, &slot, inner)?),
                    ..attr
                })
            }
            None => Err(Errno::ENOENT),
        }
    }

    fn lookup_child(&self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        match self.node(parent)? {
            Node::Dir(dir) => self.lookup_routed(&join(&dir, name.as_bytes())),
            Node::In(slot, inner) => {
                let (child, attr) = self.in_slot(&slot, |fs| fs.lookup_child(inner, name))?;
                let routing = self.routes.routing();
                Ok(FileAttr {
                    ino: INodeNo(self.outward(&routing, &slot, child)?),
                    ..attr
                })
            }
        }
    }

    /// A directory the table implies (above prefixes, or a prefix's own) still routed to.
    fn routed_dir(&self, path: &[u8]) -> bool {
        match self.routes.routing().target(path) {
            Some(Target::Dir { .. }) => true,
            Some(Target::Inside { rel, .. }) => rel.is_empty(),
            None => false,
        }
    }

    fn getattr_of(&self, ino: u64) -> Result<FileAttr, Errno> {
        match self.node(ino)? {
            Node::Dir(path) if self.routed_dir(&path) => Ok(self.dir_attr(ino)),
            Node::Dir(_) => Err(Errno::ENOENT),
            Node::In(_, ROOT) => Ok(self.dir_attr(ino)),
            Node::In(slot, inner) => {
                let attr = self.in_slot(&slot, |fs| fs.getattr_of(inner))?;
                Ok(FileAttr {
                    ino: INodeNo(ino),
                    ..attr
                })
            }
        }
    }

    /// The listing of a directory above the prefixes: the next component of every prefix
    /// below it, merged with what the rule covering it holds there (the deeper rule wins).
    fn router_listing(&self, ino: u64, dir: &[u8]) -> Result<Listing, Errno> {
        let routing = self.routes.routing();
        let Some(Target::Dir { children, covering }) = routing.target(dir) else {
            return Err(Errno::ENOENT);
        };
        let parent = match dir.is_empty() {
            true => ROOT,
            false => self.dir_ino(path::parent(dir)),
        };
        let mut listed: Listing = Vec::with_capacity(children.len());
        for name in children {
            let child = join(dir, name);
            let child_ino = match routing.target(&child) {
                Some(Target::Inside { rule, .. }) => {
                    let slot = self.slot_for(rule);
                    self.outward(&routing, &slot, ROOT)?
                }
                _ => self.dir_ino(&child),
            };
            let name = OsString::from_vec(name.clone());
            listed.push((child_ino, FileType::Directory, name));
        }
        if let Some((rule, rel)) = covering {
            let slot = self.slot_for(rule);
            let held = self.in_slot(&slot, |fs| {
                let (inner, attr) = fs.lookup_path(rel)?;
                match attr.kind {
                    FileType::Directory => fs.listing_of(inner),
                    _ => Ok(Vec::new()),
                }
            });
            // The deeper rules' names are listed even while the covering dataset cannot be
            // read: a directory above the prefixes must not fail as a whole for one dataset.
            let held = match held {
                Ok(held) => held,
                Err(e) if e == Errno::ENOENT => Vec::new(),
                Err(_) => {
                    eprintln!(
                        "sheaf mount: /{}: listed without {} (it cannot be read now)",
                        crate::format::path::display(dir),
                        rule.route().dataset
                    );
                    Vec::new()
                }
            };
            for (inner, kind, name) in held.into_iter().skip(2) {
                if children
                    .binary_search_by(|c| path::cmp_paths(c, name.as_bytes()))
                    .is_err()
                {
                    listed.push((self.outward(&routing, &slot, inner)?, kind, name));
                }
            }
        }
        listed.sort_by(|a, b| a.2.as_bytes().cmp(b.2.as_bytes()));
        let mut out = vec![
            (ino, FileType::Directory, OsString::from(".")),
            (parent, FileType::Directory, OsString::from("..")),
        ];
        out.extend(listed);
        Ok(out)
    }

    fn listing_of(&self, ino: u64) -> Result<Listing, Errno> {
        let (slot, inner) = match self.node(ino)? {
            Node::Dir(path) => {
                let routing = self.routes.routing();
                match routing.target(&path) {
                    Some(Target::Dir { .. }) => return self.router_listing(ino, &path),
                    // No longer above a deeper prefix, still a prefix: its dataset's root.
                    Some(Target::Inside { rule, rel: [] }) => (self.slot_for(rule), ROOT),
                    _ => return Err(Errno::ENOENT),
                }
            }
            Node::In(slot, inner) => (slot, inner),
        };
        let listed = self.in_slot(&slot, |fs| fs.listing_of(inner))?;
        let routing = self.routes.routing();
        listed
            .into_iter()
            .map(|(i, kind, name)| Ok((self.outward(&routing, &slot, i)?, kind, name)))
            .collect()
    }
}

impl Filesystem for RoutedFs {
    fn init(&mut self, _req: &Request, config: &mut fuser::KernelConfig) -> std::io::Result<()> {
        // Lookups in one directory may run side by side: a lookup waiting on one cluster
        // must not hold up its siblings' (kernels without it serialise them, and still work).
        let _ = config.add_capabilities(fuser::InitFlags::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.lookup_child(parent.into(), name) {
            Ok(attr) => reply.entry(&self.ttl, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.getattr_of(ino.into()) {
            Ok(attr) => reply.attr(&self.ttl, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let read = match self.node(ino.into()) {
            Ok(Node::In(slot, inner)) => self.in_slot(&slot, |fs| fs.readlink_of(inner)),
            Ok(Node::Dir(_)) => Err(Errno::EINVAL),
            Err(e) => Err(e),
        };
        match read {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        reply_open(flags, reply);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let read = match self.node(ino.into()) {
            Ok(Node::In(slot, inner)) => self.in_slot(&slot, |fs| fs.read_of(inner, offset, size)),
            Ok(Node::Dir(_)) => Err(Errno::EISDIR),
            Err(e) => Err(e),
        };
        match read {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.listing_of(ino.into()) {
            // Listings above the prefixes change with the table: not kept by the kernel.
            Ok(listing) => reply.opened(self.handles.add(listing), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        self.handles.reply(fh, offset, reply);
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.remove(fh);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (blocks, files) = slots
            .iter()
            .filter(|slot| slot.live.load(Ordering::Relaxed))
            .filter_map(|slot| slot.opened())
            .map(|fs| fs.usage())
            .fold((0u64, 0u64), |(b, f), (sb, sf)| {
                (b.saturating_add(sb), f.saturating_add(sf))
            });
        reply.statfs(blocks, 0, 0, files, 0, 4096, 255, 4096);
    }
}

/// What a refresh of a routed mount did.
#[derive(Debug, Default)]
pub struct Refreshed {
    /// The table's new version, when it changed.
    pub table: Option<u64>,
    /// Datasets moved to a newer generation.
    pub generations: usize,
    /// What could not be refreshed (the mount keeps serving what it had).
    pub failures: Vec<String>,
}

/// Reloads a routed mount's table and moves its opened datasets to their newest generations:
/// see [`RoutedFs::refresher`].
#[derive(Clone)]
pub struct RoutedRefresher {
    shared: Arc<RoutedShared>,
}

impl RoutedRefresher {
    /// Reads the table again (a table that cannot be read or parsed leaves the last good one
    /// serving) and moves every dataset in use to its newest generation, telling the kernel
    /// (through `notifier`, when there is one) to forget what changed.
    pub fn refresh(&self, notifier: Option<&fuser::Notifier>) -> Refreshed {
        let shared = &self.shared;
        let mut done = Refreshed::default();
        match shared.routes.reload_table() {
            Ok(Some(old)) => {
                let new = shared.routes.routing();
                done.table = new.table().number;
                self.forget_changed_rules(&old, &new, notifier);
            }
            Ok(None) => {}
            Err(e) => done
                .failures
                .push(format!("routes table not reloaded: {e}")),
        }
        let routing = shared.routes.routing();
        let slots = shared
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for slot in slots.iter().filter(|s| s.live.load(Ordering::Relaxed)) {
            let Some(fs) = slot.opened() else { continue };
            let served = fs.current().dataset.generation();
            let newer = match slot.rule.newer_than(served) {
                Ok(Some(newer)) => newer,
                Ok(None) => continue,
                Err(e) => {
                    done.failures
                        .push(format!("{}: {e}", slot.rule.route().prefix));
                    continue;
                }
            };
            let refresher = Refresher { shared: fs };
            let moved = refresher.serve_with(newer, &mut |forget| {
                let Some(notifier) = notifier else { return };
                let outward = |ino| shared.outward(&routing, slot, ino).ok().map(INodeNo);
                let _ = match forget {
                    Forget::Entry(parent, name) => {
                        outward(parent).map(|parent| notifier.inval_entry(parent, name))
                    }
                    Forget::Inode(ino) => outward(ino).map(|ino| notifier.inval_inode(ino, 0, 0)),
                };
            });
            match moved {
                Ok(_) => done.generations += 1,
                Err(e) => done
                    .failures
                    .push(format!("{}: {e}", slot.rule.route().prefix)),
            }
        }
        done
    }

    /// Retires the slots of removed rules and tells the kernel to forget the names on the
    /// way to every prefix added or removed, and the names a changed rule covering a
    /// directory above the prefixes (the root's `/` rule, say) put in it.
    fn forget_changed_rules(
        &self,
        old: &Routing,
        new: &Routing,
        notifier: Option<&fuser::Notifier>,
    ) {
        use std::collections::HashSet;
        let shared = &self.shared;
        let routes_of = |r: &Routing| -> HashSet<Route> {
            r.rules().iter().map(|rule| rule.route().clone()).collect()
        };
        let (before, after) = (routes_of(old), routes_of(new));
        let slots = shared
            .slots
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for slot in &slots {
            let live = after.contains(slot.rule.route());
            slot.live.store(live, Ordering::Relaxed);
        }
        let Some(notifier) = notifier else { return };
        let changed: Vec<&Route> = before.symmetric_difference(&after).collect();
        for route in &changed {
            let mut dir = Vec::new();
            for name in route
                .key()
                .split(|&b| b == path::SEPARATOR)
                .filter(|n| !n.is_empty())
            {
                if let Some(ino) = shared.known_dir_ino(&dir) {
                    let _ = notifier.inval_entry(INodeNo(ino), OsStr::from_bytes(name));
                    let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
                }
                dir = join(&dir, name);
            }
        }
        let known: Vec<(Vec<u8>, u64)> = {
            let dirs = shared.dirs.lock().unwrap_or_else(|p| p.into_inner());
            dirs.by_path.iter().map(|(p, &i)| (p.clone(), i)).collect()
        };
        for (dir, ino) in known {
            let under_changed = changed.iter().any(|r| {
                let key = r.key();
                key.is_empty() || dir == key || path::is_inside(&dir, key)
            });
            if under_changed {
                self.forget_covered_names(old, &dir, ino, notifier);
            }
        }
    }

    /// Tells the kernel to forget the names the rule that covered directory `dir` (above the
    /// prefixes, number `ino`) under `old` put in it, when the mount ever opened its dataset.
    fn forget_covered_names(
        &self,
        old: &Routing,
        dir: &[u8],
        ino: u64,
        notifier: &fuser::Notifier,
    ) {
        let shared = &self.shared;
        if let Some((rule, rel)) = old.covering(dir) {
            let number = shared
                .slot_of
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(rule.route())
                .copied();
            let fs = number.and_then(|n| shared.slot(n)).and_then(|s| s.opened());
            let names = fs.map(|fs| {
                fs.lookup_path(rel)
                    .and_then(|(inner, _)| fs.listing_of(inner))
                    .unwrap_or_default()
            });
            for (_, _, name) in names.unwrap_or_default().iter().skip(2) {
                let _ = notifier.inval_entry(INodeNo(ino), name);
            }
        }
        let _ = notifier.inval_inode(INodeNo(ino), 0, 0);
    }
}
