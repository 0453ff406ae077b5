//! `verify`: every checksum of a dataset, every fault reported rather than the first.

use super::{Dataset, Location};
use crate::error::Error;
use crate::format::path::{display, is_inside};
use crate::format::{Container, Entry, EntryKind};
use crate::progress::Progress;
use rayon::prelude::*;

/// One problem found by [`verify`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Fault {
    /// The container, catalog or external file at fault.
    pub file: String,
    /// The entry at fault, when the problem belongs to one.
    pub path: Option<String>,
    /// What is wrong.
    pub problem: String,
}

/// What [`verify`] checked and found.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Containers checked.
    pub containers: usize,
    /// Index entries seen.
    pub entries: u64,
    /// Entries whose bytes were read and checksummed (files, symlinks, external files).
    pub checked: u64,
    /// Bytes read and checksummed.
    pub bytes: u64,
    /// Every fault found.
    pub faults: Vec<Fault>,
}

impl VerifyReport {
    /// The report for a dataset whose catalog cannot be read at all.
    pub fn unreadable_catalog(root: &std::path::Path, error: &Error) -> Self {
        VerifyReport {
            faults: vec![Fault {
                file: root.join(crate::layout::SHEAF_DIR).display().to_string(),
                path: None,
                problem: error.to_string(),
            }],
            ..Default::default()
        }
    }

    /// True when nothing was wrong.
    pub fn is_clean(&self) -> bool {
        self.faults.is_empty()
    }
}

/// Checks every container against the catalog, every path for safety and order, and every
/// entry's bytes against its checksum.
pub fn verify(dataset: &Dataset, progress: &dyn Progress) -> VerifyReport {
    verify_with(dataset, progress, true)
}

/// Like [`verify`], but leaves external files out: what must hold before the originals of an
/// in-place fold are deleted, without re-reading every large file.
pub fn verify_containers(dataset: &Dataset, progress: &dyn Progress) -> VerifyReport {
    verify_with(dataset, progress, false)
}

fn verify_with(dataset: &Dataset, progress: &dyn Progress, externals: bool) -> VerifyReport {
    let rows = dataset.catalog().rows();
    let total_bytes = rows
        .iter()
        .fold(0u64, |sum, r| sum.saturating_add(r.file_len));
    progress.phase("verify", dataset.entry_count(), total_bytes);
    let mut report = VerifyReport::default();
    for (i, row) in rows.iter().enumerate() {
        report.containers += 1;
        let name = dataset.container_uri(i);
        let container = match dataset.open_container_unchecked(i) {
            Ok(c) => c,
            Err(e) => {
                report.faults.push(Fault {
                    file: name,
                    path: None,
                    problem: e.to_string(),
                });
                continue;
            }
        };
        if let Some(mismatch) = dataset.catalog_mismatch(i, &container) {
            report.faults.push(Fault {
                file: name.clone(),
                path: None,
                problem: mismatch.into(),
            });
        }
        match container.content_id() {
            Ok(id) if id == row.content_id => {}
            Ok(_) => report.faults.push(Fault {
                file: name.clone(),
                path: None,
                problem: "whole-file checksum differs from the catalog".into(),
            }),
            Err(e) => report.faults.push(Fault {
                file: name.clone(),
                path: None,
                problem: e.to_string(),
            }),
        }
        let index = container.index();
        let footer = container.footer();
        let padded = footer.data_len.div_ceil(64) * 64;
        let padding = (footer.index_offset != padded).then(|| {
            format!(
                "the index starts at {} where the body of {} bytes padded to 64 ends at {padded}",
                footer.index_offset, footer.data_len
            )
        });
        for problem in index
            .check_paths()
            .into_iter()
            .chain(index.check_hash_table())
            .chain(index.check_layout(footer.data_len))
            .chain(padding)
        {
            report.faults.push(Fault {
                file: name.clone(),
                path: None,
                problem,
            });
        }
        verify_entries(dataset, &container, &name, externals, &mut report, progress);
    }
    // The tree's shape is judged only when every container could be read: entries missing
    // with an unreadable container are that container's fault, reported above.
    let mut unreadable = false;
    let walked = dataset
        .walk()
        .map_while(|item| item.map_err(|_| unreadable = true).ok());
    let mut shape_faults = tree_faults(walked);
    if unreadable {
        shape_faults.clear();
    }
    for (at, path, problem) in shape_faults {
        report.faults.push(Fault {
            file: dataset.container_uri(at.container),
            path: Some(display(&path)),
            problem,
        });
    }
    report
}

/// Where the entries, in path order, do not form a tree that can be restored: an entry whose
/// directory has no entry of its own, or whose "directory" is a file, a symlink or an external
/// file. A conforming writer records every directory; readers list around a missing one, but
/// `unfold` could not restore it. Holds only the chain of ancestors of the current entry.
pub(crate) fn tree_faults(
    entries: impl Iterator<Item = (Location, Entry)>,
) -> Vec<(Location, Vec<u8>, String)> {
    let mut faults = Vec::new();
    let mut ancestors: Vec<(Vec<u8>, EntryKind)> = Vec::new();
    for (at, entry) in entries {
        while ancestors
            .last()
            .is_some_and(|(dir, _)| !is_inside(&entry.path, dir))
        {
            ancestors.pop();
        }
        let parent = crate::format::path::parent(&entry.path);
        if !parent.is_empty() {
            match ancestors.last() {
                Some((dir, EntryKind::Dir)) if dir.as_slice() == parent => {}
                Some((dir, kind)) if dir.as_slice() == parent => faults.push((
                    at,
                    entry.path.clone(),
                    format!(
                        "is under {:?}, which is a {kind:?} entry, not a directory",
                        display(dir)
                    ),
                )),
                _ => faults.push((
                    at,
                    entry.path.clone(),
                    format!("its directory {:?} has no entry", display(parent)),
                )),
            }
        }
        ancestors.push((entry.path, entry.kind));
    }
    faults
}

/// The result of checking one entry: bytes checksummed, or the fault found.
type Outcome = Result<u64, Fault>;

fn verify_entries(
    dataset: &Dataset,
    container: &Container,
    name: &str,
    externals: bool,
    report: &mut VerifyReport,
    progress: &dyn Progress,
) {
    let index = container.index();
    let outcomes: Vec<(EntryKind, Outcome)> = (0..index.len())
        .into_par_iter()
        .map(|row| {
            let entry = index.entry(row);
            let checked = match entry.kind {
                EntryKind::File | EntryKind::Symlink => container.read_row(row).map(|_| entry.len),
                EntryKind::External if externals => {
                    dataset.verify_external(&entry).map(|_| entry.len)
                }
                EntryKind::External | EntryKind::Dir | EntryKind::Tombstone => Ok(0),
            };
            progress.advance(1, *checked.as_ref().unwrap_or(&0));
            let outcome = checked.map_err(|e: Error| Fault {
                file: match entry.kind {
                    EntryKind::External => dataset.external_uri(&entry),
                    _ => name.to_owned(),
                },
                path: Some(display(&entry.path)),
                problem: e.to_string(),
            });
            (entry.kind, outcome)
        })
        .collect();
    report.entries += index.len() as u64;
    for (kind, outcome) in outcomes {
        match outcome {
            Ok(bytes) if kind.is_stored() || (externals && kind == EntryKind::External) => {
                report.checked += 1;
                report.bytes += bytes;
            }
            Ok(_) => {}
            Err(fault) => report.faults.push(fault),
        }
    }
}
