//! The dataset's tree: path lookup, stat, reads by path, symlink resolution, listings, walks.

use super::*;
use crate::format::filter::PathFilter;
use std::collections::BTreeMap;
use std::ops::Range;

impl Dataset {
    /// The first location of `level` (a range of catalog rows) at which `before(path)` is
    /// false, where `before` holds for a prefix of the level's entries in path order.
    pub(super) fn seek_in(
        &self,
        level: &Range<usize>,
        before: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<Location>> {
        let rows = &self.catalog.rows()[level.clone()];
        let container = level.start + rows.partition_point(|r| before(&r.last_path));
        if container == level.end {
            return Ok(None);
        }
        let row = self.container(container)?.index().partition_point(&before);
        Ok(Some(Location { container, row }))
    }

    /// The location after `at` in `level`, crossing into the level's next container when
    /// needed.
    pub(super) fn next_in(&self, level: &Range<usize>, at: Location) -> Option<Location> {
        let count = self.catalog.rows()[at.container].entry_count as usize;
        if at.row + 1 < count {
            Some(Location {
                row: at.row + 1,
                ..at
            })
        } else if at.container + 1 < level.end {
            Some(Location {
                container: at.container + 1,
                row: 0,
            })
        } else {
            None
        }
    }

    /// The entry at a location.
    pub fn entry_at(&self, at: Location) -> Result<Entry> {
        Ok(self.container(at.container)?.index().entry(at.row))
    }

    /// Finds the entry with exactly this (index-form) path in the newest generation that has
    /// one; a tombstone there means the path was deleted (`None`).
    pub fn lookup(&self, path: &[u8]) -> Result<Option<(Location, Entry)>> {
        // The path is hashed once, for every level's filter and the index's hash table.
        let key = PathKey::new(path);
        // Not through `seek_in`, so the container is fetched once: every fetch of a cached one
        // checks that its file was not cut short under the mapping (a system call).
        for i in Candidates::new(self, &key) {
            if let Some((row, entry)) = self.find_in(i, &key)? {
                return Ok((entry.kind != EntryKind::Tombstone)
                    .then_some((Location { container: i, row }, entry)));
            }
        }
        Ok(None)
    }

    /// The row of container `i` holding `key`'s path, with its entry. A cached copy found cut
    /// short during the lookup (its mapping gave zeros: see `Container::faulted`) proves
    /// nothing either way, so the lookup is made again, where the cache now sends it to the
    /// origin.
    fn find_in(&self, i: usize, key: &PathKey) -> Result<Option<(usize, Entry)>> {
        let look = |container: &Container| {
            let index = container.index();
            let found = index.find_key(key).map(|row| (row, index.entry(row)));
            (!container.faulted()).then_some(found)
        };
        if let Some(found) = look(self.container(i)?.as_ref()) {
            return Ok(found);
        }
        let container = self.container(i)?;
        match look(container.as_ref()) {
            Some(found) => Ok(found),
            None => container.check_not_faulted().map(|()| None),
        }
    }

    /// The one container of `level` whose path range may hold `path`: the first whose last
    /// path is not before it (a level of one container: that one, unchecked, since its filter
    /// is asked first and the range after; see [`Dataset::holds_in_range`]).
    fn candidate_in(&self, level: &Range<usize>, path: &[u8]) -> Option<usize> {
        if level.len() == 1 {
            return Some(level.start);
        }
        let rows = &self.catalog.rows()[level.clone()];
        let i = rows.partition_point(|r| cmp_paths(&r.last_path, path) == Ordering::Less);
        (i < rows.len()).then_some(level.start + i)
    }

    /// True when container `i`'s path range holds `path`.
    fn holds_in_range(&self, i: usize, path: &[u8]) -> bool {
        let row = &self.catalog.rows()[i];
        cmp_paths(&row.first_path, path) != Ordering::Greater
            && cmp_paths(&row.last_path, path) != Ordering::Less
    }

    /// The path filter of container `i` (checked when the catalog was read).
    fn filter(&self, i: usize) -> PathFilter<'_> {
        PathFilter::new(&self.catalog.rows()[i].filter)
            .unwrap_or_else(|| PathFilter::new(&[]).expect("empty"))
    }

    /// Metadata of a user-supplied path, without following a final symlink. The root (`""`,
    /// `"."` or `"/"`) is a directory.
    pub fn stat(&self, user_path: &[u8]) -> Result<Entry> {
        let path = normalize(user_path)?;
        if path.is_empty() {
            return Ok(self.root());
        }
        if let Some((_, entry)) = self.lookup(&path)? {
            return Ok(entry);
        }
        // A directory on the way may be a symlink: resolve the parent, then look the last
        // component up there (the last component itself is not followed).
        let parent = path::parent(&path);
        if parent.is_empty() {
            return Err(not_found(&path));
        }
        let dir = match self.resolve(parent) {
            Ok((_, dir)) if dir.kind == EntryKind::Dir => dir,
            _ => return Err(not_found(&path)),
        };
        let mut real = dir.path;
        real.push(SEPARATOR);
        real.extend_from_slice(path::file_name(&path));
        self.lookup(&real)?
            .map(|(_, e)| e)
            .ok_or_else(|| not_found(&path))
    }

    /// The bytes of a regular file, following symlinks inside the dataset. Bytes are checked
    /// against the index checksum before they are returned.
    pub fn read(&self, user_path: &[u8]) -> Result<Buffer> {
        match self.read_cached_file(user_path)? {
            Some(bytes) => Ok(bytes),
            None => self.read_resolved(user_path),
        }
    }

    /// [`Dataset::read`] the general way: the path normalized and resolved, symlinks followed,
    /// from the cache or the origin.
    pub(super) fn read_resolved(&self, user_path: &[u8]) -> Result<Buffer> {
        let (at, entry) = self.resolve(user_path)?;
        match entry.kind {
            EntryKind::File => self.read_at(at),
            EntryKind::External => self.read_external(&entry),
            EntryKind::Dir => Err(Error::WrongKind {
                path: display(&entry.path),
                problem: KindProblem::IsADirectory,
            }),
            EntryKind::Symlink => unreachable!("resolve follows symlinks"),
            EntryKind::Tombstone => unreachable!("lookups hide tombstones"),
        }
    }

    /// The common case in one pass: a file found under its own path (no symlink on the way)
    /// in a container the cache holds, looked up and read through one mapping, so the
    /// mapping's length check (a system call) is made once. `None` sends the read the general
    /// way (origin, symlinks, external files, not found, paths not in index form).
    pub(super) fn read_cached_file(&self, user_path: &[u8]) -> Result<Option<Buffer>> {
        match self.cached_file(user_path) {
            Some((at, mapped)) => self.read_mapped(at, &mapped).map(Some),
            None => Ok(None),
        }
    }

    /// Where `user_path` is, with its container's cached mapping, when it is a file found under
    /// its own path in a container the cache holds (see [`Dataset::read_cached_file`]).
    pub(super) fn cached_file(&self, user_path: &[u8]) -> Option<(Location, Arc<MappedContainer>)> {
        self.tier.as_ref()?;
        // The path is looked up as given, unchecked: a cached container's paths were all checked
        // when it was accepted, so a path equal to one of them is in index form, and one that is
        // not (`/a`, `a//b`, `..`) matches none and is normalized and checked the general way.
        // The path is hashed once for every level it is looked for in.
        let key = PathKey::new(user_path);
        for i in Candidates::new(self, &key) {
            // The path's hash bucket starts loading before the mapping's length check, so the
            // check's system call hides that memory access.
            let warm = |mapped: &MappedContainer| mapped.container.index().prefetch_find(&key);
            let mapped = self.cached_warming(i, warm)?;
            let index = mapped.container.index();
            if let Some(row) = index.find_key(&key) {
                // Anything but a file (a tombstone, a symlink, ...) goes the general way, and so
                // does a lookup in a copy found cut short while it was made.
                return (index.kind(row) == EntryKind::File && !mapped.container.faulted())
                    .then_some((Location { container: i, row }, mapped));
            }
            if mapped.container.faulted() {
                return None;
            }
        }
        None
    }

    /// [`Dataset::read`] into memory the caller provides: `place` is called once, with the
    /// file's length, and returns where to put that many bytes (`None` when it cannot, which
    /// fails the read with `Error::NoRoom`). Returns the length. From a cached container the
    /// bytes are copied and checked in one pass, so a caller that needs its own copy (a
    /// Python `bytes`) pays one pass over them, not a check and then a copy.
    pub fn read_placed<'b>(
        &self,
        user_path: &[u8],
        place: impl FnOnce(usize) -> Option<&'b mut [u8]>,
    ) -> Result<usize> {
        let Some((at, mapped)) = self.cached_file(user_path) else {
            let bytes = self.read_resolved(user_path)?;
            let dst = room(place, bytes.len(), user_path)?;
            dst.copy_from_slice(&bytes);
            return Ok(bytes.len());
        };
        let container = &mapped.container;
        let len = usize::try_from(container.row_len(at.row))
            .ok()
            .filter(|&len| len as u64 <= crate::format::MAX_ENTRY_LEN)
            .ok_or_else(|| {
                Error::corrupt(
                    PathBuf::from(self.container_uri(at.container)),
                    format!("entry {:?} has an impossible length", display(user_path)),
                )
            })?;
        // A cold page is read from disk before `place`, which may take a lock the copy is then
        // made under (see `Container::fault_in_row`).
        container.fault_in_row(at.row);
        let dst = room(place, len, user_path)?;
        let started = Instant::now();
        match container.read_row_to(at.row, dst) {
            Ok(()) => {
                self.count_cache_hit(len, started);
                Ok(len)
            }
            Err(e) if e.is_data_fault() => {
                // The copy is quarantined, so only this read goes to the origin after `place`
                // (perhaps under the caller's lock); later ones go before it, the general way.
                self.cache_fault(at, &e);
                let bytes = self.read_origin(at)?;
                if bytes.len() != len {
                    return Err(Error::corrupt(
                        PathBuf::from(self.container_uri(at.container)),
                        format!(
                            "entry {:?} differs in length from its cached copy",
                            display(user_path)
                        ),
                    ));
                }
                dst.copy_from_slice(&bytes);
                Ok(len)
            }
            Err(e) => Err(e),
        }
    }

    /// The target of a symbolic link, checked against the index checksum.
    pub fn read_link(&self, at: Location) -> Result<Buffer> {
        self.read_at(at)
    }

    /// Resolves a user-supplied path to a non-symlink entry, following links that stay inside
    /// the dataset, in the last component and in the directories on the way to it.
    pub fn resolve(&self, user_path: &[u8]) -> Result<(Location, Entry)> {
        let path = normalize(user_path)?;
        // A path the index holds as it is has no symlink on the way (nothing is stored under a
        // symlink): only a final symlink needs following, as most paths need none.
        match self.lookup(&path)? {
            Some((at, entry)) if entry.kind != EntryKind::Symlink => return Ok((at, entry)),
            None if path.is_empty() => return Err(root_is_a_directory()),
            _ => {}
        }
        self.resolve_by_components(user_path, &path)
    }

    /// Follows `path` one component at a time, as the kernel walks a path: a symlink's target
    /// is read from the link's own directory, and a `..` climbs from wherever the links before
    /// it led (not from the text before it), never above the dataset's root.
    fn resolve_by_components(&self, user_path: &[u8], path: &[u8]) -> Result<(Location, Entry)> {
        let leaves = |link: &[u8]| Error::WrongKind {
            path: display(link),
            problem: KindProblem::SymlinkLeavesDataset,
        };
        // Components still to walk, the next one last.
        let mut pending: Vec<Vec<u8>> = components_reversed(path);
        // The directory the walk stands in, every link on the way to it followed.
        let mut here: Vec<u8> = Vec::new();
        let mut found: Option<(Location, Entry)> = None;
        let mut hops = 0;
        while let Some(component) = pending.pop() {
            if component == b".." {
                if here.is_empty() {
                    return Err(leaves(user_path));
                }
                here.truncate(path::parent(&here).len());
                found = None;
                continue;
            }
            let mut next = here.clone();
            if !next.is_empty() {
                next.push(SEPARATOR);
            }
            next.extend_from_slice(&component);
            let Some((at, entry)) = self.lookup(&next)? else {
                return Err(not_found(path));
            };
            match entry.kind {
                EntryKind::Symlink => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Error::WrongKind {
                            path: display(user_path),
                            problem: KindProblem::SymlinkLoop,
                        });
                    }
                    let target = self.read_link(at)?;
                    if target.first() == Some(&SEPARATOR) {
                        return Err(leaves(&entry.path));
                    }
                    // Walked next, from the link's directory (`here`, unchanged).
                    pending.extend(components_reversed(&target));
                }
                // Only a directory has anything under it.
                _ if !pending.is_empty() && entry.kind != EntryKind::Dir => {
                    return Err(not_found(path))
                }
                _ => {
                    here = next;
                    found = Some((at, entry));
                }
            }
        }
        match found {
            Some(found) => Ok(found),
            // The walk ended on a `..`: the directory it climbed to.
            None if here.is_empty() => Err(root_is_a_directory()),
            None => self.lookup(&here)?.ok_or_else(|| not_found(path)),
        }
    }

    /// The path of the directory `user_dir` names, following symlinks (a symlink to a
    /// directory stands for the directory, as `ls link/` lists it); the root is empty.
    pub fn directory(&self, user_dir: &[u8]) -> Result<Vec<u8>> {
        let dir = normalize(user_dir)?;
        if dir.is_empty() {
            return Ok(dir);
        }
        let (_, target) = self.resolve(&dir)?;
        if target.kind != EntryKind::Dir {
            return Err(Error::WrongKind {
                path: display(&dir),
                problem: KindProblem::NotADirectory,
            });
        }
        Ok(target.path)
    }

    /// The direct children of a directory, in path order.
    pub fn list(&self, user_dir: &[u8]) -> Result<Vec<Entry>> {
        Ok(self
            .list_located(user_dir)?
            .into_iter()
            .map(|(_, entry)| entry)
            .collect())
    }

    /// The direct children of a directory with their locations, in path order, merged over
    /// every generation: the newest generation's entry of a name wins, a tombstone hides the
    /// name. A directory the index implies but does not hold (a foreign index may omit them)
    /// has no location, and never hides an entry an older generation holds.
    pub fn list_located(&self, user_dir: &[u8]) -> Result<Vec<(Option<Location>, Entry)>> {
        let dir = self.directory(user_dir)?;
        if let [level] = self.levels.as_slice() {
            return self.list_level(level, &dir);
        }
        let mut chosen: BTreeMap<Vec<u8>, (Option<Location>, Entry)> = BTreeMap::new();
        for level in &self.levels {
            for (at, child) in self.list_level(level, &dir)? {
                match chosen.get(&child.path) {
                    None => {}
                    // An implied directory yields to an entry of an older generation.
                    Some((None, implied)) if implied.kind == EntryKind::Dir && at.is_some() => {}
                    Some(_) => continue,
                }
                chosen.insert(child.path.clone(), (at, child));
            }
        }
        let mut children: Vec<_> = chosen
            .into_values()
            .filter(|(_, e)| e.kind != EntryKind::Tombstone)
            .collect();
        children.sort_by(|a, b| cmp_paths(&a.1.path, &b.1.path));
        Ok(children)
    }

    /// The direct children of `dir` (index form, resolved) in one level, tombstones included,
    /// in path order.
    fn list_level(
        &self,
        level: &Range<usize>,
        dir: &[u8],
    ) -> Result<Vec<(Option<Location>, Entry)>> {
        let mut children = Vec::new();
        let mut at = self.seek_in(level, |p| cmp_paths(p, dir) != Ordering::Greater)?;
        while let Some(here) = at {
            let entry = self.entry_at(here)?;
            if !is_inside(&entry.path, dir) {
                break;
            }
            let is_entry_itself = path::parent(&entry.path) == dir;
            let child = direct_child(dir, entry);
            // Nothing under a child is listed: skip its subtree (a directory's entries, or
            // the tombstones under a deleted one).
            at = match child.kind {
                EntryKind::Dir | EntryKind::Tombstone => {
                    let end = child.path.clone();
                    self.seek_in(level, |p| {
                        cmp_paths(p, &end) != Ordering::Greater || is_inside(p, &end)
                    })?
                }
                _ => self.next_in(level, here),
            };
            if self.levels.len() == 1 && child.kind == EntryKind::Tombstone {
                continue;
            }
            children.push((is_entry_itself.then_some(here), child));
        }
        Ok(children)
    }

    /// Every entry of the dataset in path order, merged over every generation (the newest
    /// entry of a path; tombstones hide the path). A container that cannot be opened yields
    /// one error and the walk goes on with the next container.
    pub fn walk(&self) -> Walk<'_> {
        let starts = self
            .levels
            .iter()
            .map(|level| {
                Ok(Some(Location {
                    container: level.start,
                    row: 0,
                }))
            })
            .collect();
        Walk::new(self, starts)
    }

    /// Every entry below a directory (the whole dataset for the root), in path order.
    pub fn walk_under(
        &self,
        user_dir: &[u8],
    ) -> Result<impl Iterator<Item = Result<(Location, Entry)>> + '_> {
        let dir = normalize(user_dir)?;
        let starts = self
            .levels
            .iter()
            .map(|level| self.seek_in(level, |p| cmp_paths(p, &dir) != Ordering::Greater))
            .collect();
        Ok(Walk::new(self, starts).take_while(move |item| {
            item.as_ref()
                .map_or(true, |(_, e)| is_inside(&e.path, &dir))
        }))
    }
}

/// Levels asked at once: their containers' filter blocks are loaded together, so a lookup
/// through many generations waits about one memory access for them, not one per level.
const LEVELS_AT_ONCE: usize = 16;

/// The containers that may hold a path, newest generation first: in each level, the one whose
/// range holds the path, when its filter does not rule the path out.
struct Candidates<'a> {
    dataset: &'a Dataset,
    key: &'a PathKey<'a>,
    /// The next level to look at.
    level: usize,
    /// In-range containers of the levels looked at last, their filter blocks loading.
    found: [usize; LEVELS_AT_ONCE],
    len: usize,
    next: usize,
}

impl<'a> Candidates<'a> {
    fn new(dataset: &'a Dataset, key: &'a PathKey<'a>) -> Self {
        Candidates {
            dataset,
            key,
            level: 0,
            found: [0; LEVELS_AT_ONCE],
            len: 0,
            next: 0,
        }
    }

    /// Finds the in-range containers of the next levels and starts loading their filter
    /// blocks; false when no level is left.
    fn refill(&mut self) -> bool {
        let levels = &self.dataset.levels;
        if self.level >= levels.len() {
            return false;
        }
        let end = (self.level + LEVELS_AT_ONCE).min(levels.len());
        (self.len, self.next) = (0, 0);
        for level in &levels[self.level..end] {
            if let Some(i) = self.dataset.candidate_in(level, self.key.path()) {
                if end - self.level > 1 {
                    self.dataset.filter(i).prefetch(self.key.full_hash());
                }
                self.found[self.len] = i;
                self.len += 1;
            }
        }
        self.level = end;
        true
    }
}

impl Iterator for Candidates<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        loop {
            while self.next < self.len {
                let i = self.found[self.next];
                self.next += 1;
                // The filter first: a level that does not hold the path is most often ruled
                // out by it, without comparing paths.
                let (dataset, key) = (self.dataset, self.key);
                if dataset.filter(i).may_hold_hashed(key.full_hash())
                    && dataset.holds_in_range(i, key.path())
                {
                    return Some(i);
                }
            }
            if !self.refill() {
                return None;
            }
        }
    }
}

/// Iterator over every entry of a dataset; see [`Dataset::walk`].
pub struct Walk<'a> {
    /// One walk per level, newest first, each with its next entry.
    levels: Vec<LevelWalk<'a>>,
    /// A start that could not be found (its container would not open), yielded first.
    failed: Vec<Error>,
}

impl<'a> Walk<'a> {
    fn new(dataset: &'a Dataset, starts: Vec<Result<Option<Location>>>) -> Self {
        let mut failed = Vec::new();
        let levels = dataset
            .levels
            .iter()
            .zip(starts)
            .filter_map(|(level, start)| match start {
                Ok(Some(at)) => Some(LevelWalk::new(dataset, at, level.end)),
                Ok(None) => None,
                Err(e) => {
                    failed.push(e);
                    None
                }
            })
            .collect();
        Walk { levels, failed }
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<(Location, Entry)>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.failed.pop() {
            return Some(Err(e));
        }
        loop {
            if let [only] = self.levels.as_mut_slice() {
                match only.next_entry()? {
                    Ok((_, entry)) if entry.kind == EntryKind::Tombstone => continue,
                    found => return Some(found),
                }
            }
            for level in &mut self.levels {
                level.peek();
            }
            let failed = self
                .levels
                .iter()
                .position(|l| matches!(l.peeked, Some(Some(Err(_)))));
            if let Some(i) = failed {
                return self.levels[i].next_entry();
            }
            // The smallest path any level holds next; of equal paths the newest level's.
            let best = (0..self.levels.len())
                .filter(|&i| matches!(self.levels[i].peeked, Some(Some(Ok(_)))))
                .min_by(|&a, &b| {
                    let (a_path, b_path) = (
                        &self.levels[a].peek_entry().path,
                        &self.levels[b].peek_entry().path,
                    );
                    cmp_paths(a_path, b_path).then(a.cmp(&b))
                });
            let chosen = self.levels[best?].next_entry()?;
            let path = match &chosen {
                Ok((_, entry)) => entry.path.clone(),
                Err(_) => return Some(chosen),
            };
            // Older levels' entries of the same path are shadowed.
            for level in &mut self.levels {
                while level
                    .peek()
                    .is_some_and(|next| matches!(next, Ok((_, e)) if e.path == path))
                {
                    level.next_entry();
                }
            }
            match chosen {
                Ok((_, entry)) if entry.kind == EntryKind::Tombstone => continue,
                found => return Some(found),
            }
        }
    }
}

/// The entries of one level in path order, with the next one held to compare levels.
struct LevelWalk<'a> {
    dataset: &'a Dataset,
    container: usize,
    row: usize,
    end: usize,
    current: Option<Arc<Container>>,
    peeked: Option<Option<Result<(Location, Entry)>>>,
}

impl<'a> LevelWalk<'a> {
    fn new(dataset: &'a Dataset, start: Location, end: usize) -> Self {
        LevelWalk {
            dataset,
            container: start.container,
            row: start.row,
            end,
            current: None,
            peeked: None,
        }
    }

    fn peek(&mut self) -> Option<&Result<(Location, Entry)>> {
        if self.peeked.is_none() {
            self.peeked = Some(self.advance());
        }
        self.peeked.as_ref().and_then(Option::as_ref)
    }

    /// The peeked entry (there must be one, and not an error).
    fn peek_entry(&self) -> &Entry {
        match &self.peeked {
            Some(Some(Ok((_, entry)))) => entry,
            _ => unreachable!("peeked an entry first"),
        }
    }

    fn next_entry(&mut self) -> Option<Result<(Location, Entry)>> {
        match self.peeked.take() {
            Some(peeked) => peeked,
            None => self.advance(),
        }
    }

    fn advance(&mut self) -> Option<Result<(Location, Entry)>> {
        loop {
            if self.container >= self.end {
                return None;
            }
            let current = match &self.current {
                Some(open) => open,
                None => match self.dataset.container(self.container) {
                    Ok(open) => self.current.insert(open),
                    Err(e) => {
                        self.container += 1;
                        self.row = 0;
                        return Some(Err(e));
                    }
                },
            };
            if self.row < current.index().len() {
                let at = Location {
                    container: self.container,
                    row: self.row,
                };
                self.row += 1;
                return Some(Ok((at, current.index().entry(at.row))));
            }
            self.container += 1;
            self.row = 0;
            self.current = None;
        }
    }
}

/// The components of a path that name something (not empty, not `.`), the last one first.
fn components_reversed(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == SEPARATOR)
        .filter(|c| !c.is_empty() && *c != b".")
        .rev()
        .map(<[u8]>::to_vec)
        .collect()
}

/// What resolving the root gives: it is a directory, not a file to read.
fn root_is_a_directory() -> Error {
    Error::WrongKind {
        path: "/".into(),
        problem: KindProblem::IsADirectory,
    }
}
