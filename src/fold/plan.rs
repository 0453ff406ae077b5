//! Planning: cut the entries, arriving in path order, into containers that each cover a
//! contiguous path range. Only counts are held, so planning takes the same memory for a
//! thousand files as for a billion.

use super::walk::SourceEntry;

/// Limits on one container.
#[derive(Clone, Copy, Debug)]
pub struct ContainerLimits {
    /// Target size of a container's entry data in bytes.
    pub bytes: u64,
    /// Most entries per container, which bounds the size of one index block.
    pub entries: usize,
}

/// Decides, entry by entry in path order, where one group of entries ends and the next
/// begins: containers, and the batches a container's entries are read in. A group closes when
/// the next stored entry would take it past `limits.bytes`, or when it holds `limits.entries`.
/// Only counts are held, so entries can stream through to their writer as they arrive.
#[derive(Debug)]
pub struct Cutter {
    limits: ContainerLimits,
    entries: usize,
    bytes: u64,
}

impl Cutter {
    pub fn new(limits: ContainerLimits) -> Cutter {
        Cutter {
            limits,
            entries: 0,
            bytes: 0,
        }
    }

    /// Counts the next entry in; true when it closes the group so far and starts the next.
    pub fn starts_group(&mut self, entry: &SourceEntry) -> bool {
        let size = if entry.kind.is_stored() { entry.len } else { 0 };
        let full = self.entries >= self.limits.entries
            || (self.bytes > 0 && self.bytes + size > self.limits.bytes);
        let starts = self.entries > 0 && full;
        if starts {
            (self.entries, self.bytes) = (0, 0);
        }
        self.entries += 1;
        self.bytes += size;
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::EntryKind;

    fn file(len: u64) -> SourceEntry {
        SourceEntry {
            path: vec![b'x'],
            kind: EntryKind::File,
            len,
            mode: 0o100644,
            mtime_ns: 0,
            prefix_len: 0,
        }
    }

    /// The groups `entries` are cut into, as their lengths.
    fn cut(entries: Vec<SourceEntry>, bytes: u64, max: usize) -> Vec<Vec<u64>> {
        let mut cutter = Cutter::new(ContainerLimits {
            bytes,
            entries: max,
        });
        let mut groups: Vec<Vec<u64>> = Vec::new();
        for entry in entries {
            if cutter.starts_group(&entry) || groups.is_empty() {
                groups.push(Vec::new());
            }
            groups.last_mut().unwrap().push(entry.len);
        }
        groups
    }

    fn plan(lens: &[u64], bytes: u64, entries: usize) -> Vec<Vec<u64>> {
        cut(lens.iter().map(|&len| file(len)).collect(), bytes, entries)
    }

    #[test]
    fn containers_close_at_the_byte_and_entry_limits() {
        let lens = [40, 40, 40, 10, 0, 0];
        assert_eq!(
            plan(&lens, 100, 100),
            vec![vec![40, 40], vec![40, 10, 0, 0]]
        );
        assert_eq!(plan(&lens, 1000, 4), vec![vec![40, 40, 40, 10], vec![0, 0]]);
        assert!(plan(&[], 1, 1).is_empty());
    }

    #[test]
    fn an_entry_larger_than_the_target_gets_a_container_of_its_own() {
        assert_eq!(plan(&[500, 10], 100, 9), vec![vec![500], vec![10]]);
    }

    #[test]
    fn directories_and_external_files_take_no_container_bytes() {
        let mut big = file(5000);
        big.kind = EntryKind::External;
        let mut dir = file(0);
        dir.kind = EntryKind::Dir;
        let entries = vec![file(90), big, dir, file(20)];
        assert_eq!(cut(entries, 100, 10), vec![vec![90, 5000, 0], vec![20]]);
    }
}
