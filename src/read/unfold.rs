//! `unfold`: restore the plain tree of a dataset, byte-identical, with modes and mtimes.
//!
//! Directories are made first, then files in parallel, then symlinks (so no link created from
//! the index can redirect a later write), and directory modes and mtimes last, deepest first.

use super::{Dataset, Location};
use crate::error::{Error, IoContext, Result};
use crate::format::path::{check_entry_path, display};
use crate::format::{Entry, EntryKind};
use crate::progress::Progress;
use crate::time::file_time;
use rayon::prelude::*;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// What [`unfold`] restored.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct UnfoldSummary {
    /// Regular files written (folded and external).
    pub files: u64,
    /// Directories made.
    pub dirs: u64,
    /// Symbolic links made.
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Restores every entry of `dataset` under `out`, which must be absent or an empty directory.
pub fn unfold(dataset: &Dataset, out: &Path, progress: &dyn Progress) -> Result<UnfoldSummary> {
    // Everything that could stop the restore half way is checked before anything is written.
    let entries = dataset.walk().collect::<Result<Vec<(Location, Entry)>>>()?;
    for (_, entry) in &entries {
        check_entry_path(&entry.path).map_err(|reason| Error::InvalidPath {
            path: display(&entry.path),
            reason,
        })?;
    }
    let shape = super::verify::tree_faults(entries.iter().cloned());
    if let Some((at, path, problem)) = shape.into_iter().next() {
        return Err(Error::corrupt(
            dataset.container_uri(at.container),
            format!(
                "entry {:?} {problem}: the tree cannot be restored",
                display(&path)
            ),
        ));
    }
    prepare_output(out)?;
    let bytes = entries
        .iter()
        .filter(|(_, e)| e.kind.is_file())
        .map(|(_, e)| e.len)
        .sum();
    progress.phase("unfold", entries.len() as u64, bytes);
    let target = |e: &Entry| out.join(OsStr::from_bytes(&e.path));
    let of_kind = |kind: EntryKind| entries.iter().filter(move |(_, e)| e.kind == kind);
    let mut summary = UnfoldSummary::default();
    for (_, dir) in of_kind(EntryKind::Dir) {
        fs::create_dir_all(target(dir)).ctx("create directory", target(dir))?;
        summary.dirs += 1;
    }
    let written: Vec<u64> = entries
        .par_iter()
        .filter(|(_, e)| e.kind.is_file())
        .map(|(at, entry)| {
            let bytes = restore_file(dataset, *at, entry, &target(entry))?;
            progress.advance(1, bytes);
            Ok(bytes)
        })
        .collect::<Result<_>>()?;
    summary.files = written.len() as u64;
    summary.bytes = written.iter().sum();
    for (at, link) in of_kind(EntryKind::Symlink) {
        restore_symlink(dataset, *at, link, &target(link))?;
        summary.symlinks += 1;
    }
    for (_, dir) in entries
        .iter()
        .rev()
        .filter(|(_, e)| e.kind == EntryKind::Dir)
    {
        set_mode_and_mtime(&target(dir), dir)?;
    }
    Ok(summary)
}

fn prepare_output(out: &Path) -> Result<()> {
    match fs::read_dir(out) {
        Ok(mut children) => {
            if children.next().is_some() {
                return Err(Error::Refused {
                    path: out.to_path_buf(),
                    reason: "unfold needs an empty or missing output directory".into(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(out).ctx("create directory", out)
        }
        Err(e) => Err(Error::io("read directory", out, e)),
    }
}

/// Writes one regular file, never with unchecked bytes: folded entries are checked before the
/// write; an external file is checked as it streams, and its copy removed if the check fails.
fn restore_file(dataset: &Dataset, at: Location, entry: &Entry, target: &Path) -> Result<u64> {
    // Checked before the file is created, so a damaged entry leaves nothing behind.
    let folded = match entry.kind {
        EntryKind::External => None,
        _ => Some(dataset.container(at.container)?.read_row(at.row)?),
    };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(target)
        .ctx("create", target)?;
    if let Some(bytes) = folded {
        out.write_all(&bytes).ctx("write", target)?;
    } else if let Err(e) = copy_external(dataset, entry, &mut out, target) {
        drop(out);
        let _ = fs::remove_file(target);
        return Err(e);
    }
    drop(out);
    set_mode_and_mtime(target, entry)?;
    Ok(entry.len)
}

fn copy_external(
    dataset: &Dataset,
    entry: &Entry,
    out: &mut fs::File,
    target: &Path,
) -> Result<()> {
    dataset.stream_external(entry, &mut |chunk| {
        out.write_all(chunk).ctx("write", target)
    })
}

fn restore_symlink(dataset: &Dataset, at: Location, link: &Entry, target: &Path) -> Result<()> {
    let destination = dataset.read_link(at)?;
    std::os::unix::fs::symlink(OsStr::from_bytes(&destination), target)
        .ctx("create symlink", target)?;
    let mtime = file_time(link.mtime_ns);
    filetime::set_symlink_file_times(target, mtime, mtime).ctx("set mtime", target)
}

fn set_mode_and_mtime(target: &Path, entry: &Entry) -> Result<()> {
    fs::set_permissions(target, fs::Permissions::from_mode(entry.mode & 0o7777))
        .ctx("chmod", target)?;
    let mtime = file_time(entry.mtime_ns);
    filetime::set_file_times(target, mtime, mtime).ctx("set mtime", target)
}
