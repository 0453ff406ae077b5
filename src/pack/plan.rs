//! Planning: cut the entries, arriving in path order, into containers that each cover a
//! contiguous path range. Only the container being filled is held, so planning takes the same
//! memory for a thousand files as for a billion.

use super::walk::SourceEntry;

/// Limits on one container.
#[derive(Clone, Copy, Debug)]
pub struct ContainerLimits {
    /// Target size of a container's entry data in bytes.
    pub bytes: u64,
    /// Most entries per container, which bounds the size of one index block.
    pub entries: usize,
}

/// Collects entries (in path order) into the next container's batch. A container is closed
/// when the next stored entry would take it past `limits.bytes`, or when it holds
/// `limits.entries`.
#[derive(Debug)]
pub struct Batcher {
    limits: ContainerLimits,
    batch: Vec<SourceEntry>,
    bytes: u64,
}

impl Batcher {
    pub fn new(limits: ContainerLimits) -> Batcher {
        Batcher {
            limits,
            batch: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds the next entry; returns the batch of the container it closed, if it closed one.
    pub fn push(&mut self, entry: SourceEntry) -> Option<Vec<SourceEntry>> {
        let size = if entry.kind.is_stored() { entry.len } else { 0 };
        let full = self.batch.len() >= self.limits.entries
            || (self.bytes > 0 && self.bytes + size > self.limits.bytes);
        let closed = (!self.batch.is_empty() && full).then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.batch)
        });
        self.bytes += size;
        self.batch.push(entry);
        closed
    }

    /// The last container's batch, if any entry is left.
    pub fn finish(self) -> Option<Vec<SourceEntry>> {
        (!self.batch.is_empty()).then_some(self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::EntryKind;

    fn file(len: u64) -> SourceEntry {
        SourceEntry {
            path: vec![b'x'],
            kind: EntryKind::File,
            len,
            mode: 0o100644,
            mtime_ns: 0,
        }
    }

    /// The sizes of the batches `lens` is cut into.
    fn plan(lens: &[u64], bytes: u64, entries: usize) -> Vec<Vec<u64>> {
        let mut batcher = Batcher::new(ContainerLimits { bytes, entries });
        let mut out = Vec::new();
        for &len in lens {
            out.extend(batcher.push(file(len)));
        }
        out.extend(batcher.finish());
        out.into_iter()
            .map(|batch| batch.iter().map(|e| e.len).collect())
            .collect()
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
        let mut batcher = Batcher::new(ContainerLimits {
            bytes: 100,
            entries: 10,
        });
        let mut big = file(5000);
        big.kind = EntryKind::External;
        let mut dir = file(0);
        dir.kind = EntryKind::Dir;
        assert!(batcher.push(file(90)).is_none());
        assert!(batcher.push(big).is_none());
        assert!(batcher.push(dir).is_none());
        assert_eq!(batcher.push(file(20)).map(|b| b.len()), Some(3));
        assert_eq!(batcher.finish().map(|b| b.len()), Some(1));
    }
}
