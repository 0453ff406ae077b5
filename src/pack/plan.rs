//! Planning: split the sorted entries into containers that each cover a contiguous path range.

use super::walk::SourceEntry;
use std::ops::Range;

/// Limits on one container.
#[derive(Clone, Copy, Debug)]
pub struct ContainerLimits {
    /// Target size of a container's entry data in bytes.
    pub bytes: u64,
    /// Most entries per container, which bounds the size of one index block.
    pub entries: usize,
}

/// Splits `entries` (sorted by path) into ranges, one per container. A container is closed when
/// the next stored entry would take it past `limits.bytes`, or when it holds `limits.entries`.
pub fn plan_containers(entries: &[SourceEntry], limits: ContainerLimits) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, entry) in entries.iter().enumerate() {
        let size = if entry.kind.is_stored() { entry.len } else { 0 };
        let full = i - start >= limits.entries || (bytes > 0 && bytes + size > limits.bytes);
        if i > start && full {
            ranges.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < entries.len() {
        ranges.push(start..entries.len());
    }
    ranges
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

    #[test]
    fn containers_close_at_the_byte_and_entry_limits() {
        let entries: Vec<_> = [40, 40, 40, 10, 0, 0].into_iter().map(file).collect();
        let by_bytes = plan_containers(
            &entries,
            ContainerLimits {
                bytes: 100,
                entries: 100,
            },
        );
        assert_eq!(by_bytes, vec![0..2, 2..6]);
        let by_count = plan_containers(
            &entries,
            ContainerLimits {
                bytes: 1000,
                entries: 4,
            },
        );
        assert_eq!(by_count, vec![0..4, 4..6]);
        assert!(plan_containers(
            &[],
            ContainerLimits {
                bytes: 1,
                entries: 1
            }
        )
        .is_empty());
    }

    #[test]
    fn an_entry_larger_than_the_target_gets_a_container_of_its_own() {
        let entries: Vec<_> = [500, 10].into_iter().map(file).collect();
        assert_eq!(
            plan_containers(
                &entries,
                ContainerLimits {
                    bytes: 100,
                    entries: 9
                }
            ),
            vec![0..1, 1..2]
        );
    }
}
