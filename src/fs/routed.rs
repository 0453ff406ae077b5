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

use super::{errno, reply_listing, reply_open, Forget, Listing, Refresher, Shared, ROOT};
use crate::error::Error;
use crate::format::path;
use crate::format::routes::Route;
use crate::read::routes::{join, Routes, Routing, Rule, Target};
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
    handles: RwLock<HashMap<u64, Arc<Listing>>>,
    next_handle: AtomicU64,
    uid: u32,
    gid: u32,
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
}

/// What an inode number names.
enum Node {
    /// A directory above the prefixes (or the root), by its index-form path.
    Dir(Vec<u8>),
    /// An inode of a rule's dataset.
    In(Arc<Slot>, u64),
}

impl RoutedFs {
    /// A filesystem serving the tree `routes` joins; the kernel keeps entries and attributes
    /// for `ttl` at most.
    pub fn new(routes: Arc<Routes>, ttl: Duration) -> RoutedFs {
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
            handles: RwLock::default(),
            next_handle: AtomicU64::new(1),
            uid,
            gid,
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
    /// The slot's filesystem state, its dataset opened on first use.
    fn fs(&self, ttl: Duration) -> Result<Arc<Shared>, Errno> {
        let mut fs = self.fs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fs) = &*fs {
            return Ok(Arc::clone(fs));
        }
        let dataset = self.rule.dataset().map_err(routed_errno)?;
        let made = Arc::new(Shared::new(dataset, ttl, INNER_SYNTHETIC_BASE));
        *fs = Some(Arc::clone(&made));
        Ok(made)
    }

    fn opened(&self) -> Option<Arc<Shared>> {
        self.fs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The errno of a failure to route or to open a dataset.
fn routed_errno(e: Error) -> Errno {
    errno(e)
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
    /// directory above other prefixes is that directory.
    fn outward(&self, routing: &Routing, slot: &Slot, inner: u64) -> u64 {
        if inner == ROOT && routing.is_router_dir(slot.rule.key()) {
            return self.dir_ino(slot.rule.key());
        }
        (slot.number << SLOT_SHIFT) | inner
    }

    /// Runs `op` on a slot's filesystem; a dataset found unreachable fails at once for a
    /// while (its rule is marked down), leaving the mount's threads to the other prefixes.
    fn in_slot<T>(
        &self,
        slot: &Slot,
        op: impl FnOnce(&Shared) -> Result<T, Errno>,
    ) -> Result<T, Errno> {
        if slot.rule.is_down() {
            return Err(Errno::EIO);
        }
        let fs = slot.fs(self.ttl)?;
        let before = fs.unreachable_count();
        let result = op(&fs);
        if result.is_err() && fs.unreachable_count() > before {
            slot.rule.mark_down("its store could not be reached".into());
        }
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

    /// The attributes of the routed tree's `path` (index form).
    fn lookup_routed(&self, path: &[u8]) -> Result<FileAttr, Errno> {
        let routing = self.routes.routing();
        match routing.target(path) {
            Some(Target::Dir { .. }) => Ok(self.dir_attr(self.dir_ino(path))),
            Some(Target::Inside { rule, rel }) => {
                let slot = self.slot_for(rule);
                let (inner, attr) = self.in_slot(&slot, |fs| fs.lookup_path(rel))?;
                Ok(FileAttr {
                    ino: INodeNo(self.outward(&routing, &slot, inner)),
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
                    ino: INodeNo(self.outward(&routing, &slot, child)),
                    ..attr
                })
            }
        }
    }

    fn getattr_of(&self, ino: u64) -> Result<FileAttr, Errno> {
        match self.node(ino)? {
            Node::Dir(path) => match self.routes.routing().target(&path) {
                Some(_) => Ok(self.dir_attr(ino)),
                None => Err(Errno::ENOENT),
            },
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
                    self.outward(&routing, &slot, ROOT)
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
            let held = match held {
                Ok(held) => held,
                Err(e) if e == Errno::ENOENT => Vec::new(),
                Err(e) => return Err(e),
            };
            for (inner, kind, name) in held.into_iter().skip(2) {
                if !children.iter().any(|c| c.as_slice() == name.as_bytes()) {
                    listed.push((self.outward(&routing, &slot, inner), kind, name));
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
        match self.node(ino)? {
            Node::Dir(path) => self.router_listing(ino, &path),
            Node::In(slot, inner) => {
                let listed = self.in_slot(&slot, |fs| fs.listing_of(inner))?;
                let routing = self.routes.routing();
                Ok(listed
                    .into_iter()
                    .map(|(i, kind, name)| (self.outward(&routing, &slot, i), kind, name))
                    .collect())
            }
        }
    }

    fn add_handle(&self, listing: Listing) -> FileHandle {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fh, Arc::new(listing));
        FileHandle(fh)
    }
}

impl Filesystem for RoutedFs {
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
            Ok(listing) => reply.opened(self.add_handle(listing), FopenFlags::empty()),
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
        let listing = self
            .handles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&u64::from(fh))
            .cloned();
        match listing {
            Some(listing) => reply_listing(&listing, offset, reply),
            None => reply.error(Errno::EBADF),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&u64::from(fh));
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let slots = self.slots.read().unwrap_or_else(|p| p.into_inner()).clone();
        let (blocks, files) = slots
            .iter()
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
            let newer = match slot.rule.open_newest() {
                Ok(newer) if newer.generation() > served => newer,
                Ok(_) => continue,
                Err(e) => {
                    done.failures
                        .push(format!("{}: {e}", slot.rule.route().prefix));
                    continue;
                }
            };
            let refresher = Refresher { shared: fs };
            let moved = refresher.serve_with(newer, &mut |forget| {
                if let Some(notifier) = notifier {
                    let _ = match forget {
                        Forget::Entry(parent, name) => notifier
                            .inval_entry(INodeNo(shared.outward(&routing, slot, parent)), name),
                        Forget::Inode(ino) => {
                            notifier.inval_inode(INodeNo(shared.outward(&routing, slot, ino)), 0, 0)
                        }
                    };
                }
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
    /// way to every prefix added or removed.
    fn forget_changed_rules(
        &self,
        old: &Routing,
        new: &Routing,
        notifier: Option<&fuser::Notifier>,
    ) {
        let shared = &self.shared;
        let routes_of = |r: &Routing| -> Vec<Route> {
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
        let changed = before
            .iter()
            .filter(|r| !after.contains(r))
            .chain(after.iter().filter(|r| !before.contains(r)));
        let Some(notifier) = notifier else { return };
        for route in changed {
            let key = route.key();
            let mut dir = Vec::new();
            for name in key
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
    }
}
