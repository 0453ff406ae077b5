//! Directory listings and walks over a dataset, handed out as opaque handles.

use crate::status::sheaf_status::*;
use crate::status::{guard, sheaf_status, Failure};
use crate::{
    bytes_arg, free_boxed, handle, required, required_ref, sheaf_dataset, sheaf_stat, Reader,
};
use sheaf::format::path::file_name;
use sheaf::{Dataset, Entry, EntryKind, Result};
use std::sync::Arc;

/// The children of one directory, in path order. Opaque: from `sheaf_list`, released by
/// `sheaf_listing_free`; independent of the dataset once made.
pub struct sheaf_listing {
    entries: Vec<Entry>,
}

/// Every entry below a directory, in path order. Opaque: from `sheaf_walk_open`, released by
/// `sheaf_walk_free` before its dataset is closed.
pub struct sheaf_walk {
    entries: Box<dyn Iterator<Item = Result<Entry>>>,
    current: Option<Entry>,
    /// The generation walked, kept alive for `entries`, which borrow it (dropped after them).
    _dataset: Option<Arc<Dataset>>,
}

/// Lists the directory `path` (following symlinks; the root is `""`).
#[no_mangle]
pub unsafe extern "C" fn sheaf_list(
    dataset: *const sheaf_dataset,
    path: *const u8,
    path_len: usize,
    out: *mut *mut sheaf_listing,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        let path = unsafe { bytes_arg(path, path_len, "path") }?;
        let out = unsafe { required(out, "out") }?;
        *out = std::ptr::null_mut();
        let entries = dataset.list(path)?;
        *out = Box::into_raw(Box::new(sheaf_listing { entries }));
        Ok(SHEAF_OK)
    })
}

/// How many children a listing holds (0 for null).
#[no_mangle]
pub unsafe extern "C" fn sheaf_listing_len(listing: *const sheaf_listing) -> usize {
    unsafe { listing.as_ref() }.map_or(0, |l| l.entries.len())
}

/// Child `i` of a listing: its name (the last path component, valid while the listing lives)
/// and its metadata (symlinks not followed). `stat` may be null.
#[no_mangle]
pub unsafe extern "C" fn sheaf_listing_get(
    listing: *const sheaf_listing,
    i: usize,
    name: *mut *const u8,
    name_len: *mut usize,
    stat: *mut sheaf_stat,
) -> sheaf_status {
    guard(|| {
        let listing = unsafe { required_ref(listing, "listing") }?;
        let entry = listing.entries.get(i).ok_or_else(|| {
            Failure::new(
                SHEAF_INVALID_ARGUMENT,
                format!(
                    "index {i} is past the listing's {} entries",
                    listing.entries.len()
                ),
            )
        })?;
        unsafe { write_entry(entry, file_name(&entry.path), name, name_len, stat) }
    })
}

/// Releases a listing. Null is ignored.
#[no_mangle]
pub unsafe extern "C" fn sheaf_listing_free(listing: *mut sheaf_listing) {
    unsafe { free_boxed(listing) }
}

/// Starts a walk over every entry below the directory `path` (the whole dataset for the root),
/// in path order. The dataset must stay open until the walk is freed.
#[no_mangle]
pub unsafe extern "C" fn sheaf_walk_open(
    dataset: *const sheaf_dataset,
    path: *const u8,
    path_len: usize,
    out: *mut *mut sheaf_walk,
) -> sheaf_status {
    guard(|| {
        let dataset = unsafe { handle(dataset) }?;
        let path = unsafe { bytes_arg(path, path_len, "path") }?;
        let out = unsafe { required(out, "out") }?;
        *out = std::ptr::null_mut();
        let mut dir = dataset.stat(path)?;
        if dir.kind == EntryKind::Symlink {
            dir = dataset.resolve(path)?;
        }
        if dir.kind != EntryKind::Dir {
            return Err(Failure::new(
                SHEAF_NOT_A_DIRECTORY,
                format!("{}: is not a directory", String::from_utf8_lossy(path)),
            ));
        }
        let walk = match dataset {
            Reader::One(dataset) => {
                // SAFETY: the walk holds `dataset` (an Arc: its target never moves) and drops
                // it after `entries`, so the borrow outlives every use of the iterator.
                let borrowed: &'static Dataset = unsafe { &*Arc::as_ptr(&dataset) };
                let entries = borrowed
                    .walk_under(&dir.path)?
                    .map(|item| item.map(|(_, e)| e));
                sheaf_walk {
                    entries: Box::new(entries),
                    current: None,
                    _dataset: Some(dataset),
                }
            }
            Reader::Routes(routes) => sheaf_walk {
                entries: Box::new(routes.walk_under(&dir.path)?.into_iter().map(Ok)),
                current: None,
                _dataset: None,
            },
        };
        *out = Box::into_raw(Box::new(walk));
        Ok(SHEAF_OK)
    })
}

/// The next entry of a walk: its full path from the dataset root (valid until the next call)
/// and its metadata (symlinks not followed; `stat` may be null). `SHEAF_END` when the walk is
/// over. A container that cannot be read fails this call; the next call goes on after it.
#[no_mangle]
pub unsafe extern "C" fn sheaf_walk_next(
    walk: *mut sheaf_walk,
    path: *mut *const u8,
    path_len: *mut usize,
    stat: *mut sheaf_stat,
) -> sheaf_status {
    guard(|| {
        let walk = unsafe { required(walk, "walk") }?;
        walk.current = None;
        let Some(item) = walk.entries.next() else {
            return Ok(SHEAF_END);
        };
        let entry = walk.current.insert(item?);
        unsafe { write_entry(entry, &entry.path, path, path_len, stat) }
    })
}

/// Releases a walk. Null is ignored.
#[no_mangle]
pub unsafe extern "C" fn sheaf_walk_free(walk: *mut sheaf_walk) {
    unsafe { free_boxed(walk) }
}

/// Writes an entry's name (a slice of its path) and metadata to the caller's out-parameters.
unsafe fn write_entry(
    entry: &Entry,
    name: &[u8],
    name_out: *mut *const u8,
    name_len_out: *mut usize,
    stat_out: *mut sheaf_stat,
) -> Result<sheaf_status, Failure> {
    let name_out = unsafe { required(name_out, "name") }?;
    let name_len_out = unsafe { required(name_len_out, "name_len") }?;
    *name_out = name.as_ptr();
    *name_len_out = name.len();
    if let Some(stat_out) = unsafe { stat_out.as_mut() } {
        *stat_out = sheaf_stat::from(entry);
    }
    Ok(SHEAF_OK)
}
