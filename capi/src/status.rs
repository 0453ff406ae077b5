//! Status codes, the per-thread last-error message, and the guard every export runs inside.

use sheaf::{Error, KindProblem};
use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a call did. Every function that can fail returns one; on anything but `SHEAF_OK` and
/// `SHEAF_END`, `sheaf_last_error` says why.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum sheaf_status {
    /// Success.
    SHEAF_OK = 0,
    /// An iteration has no more items (not an error).
    SHEAF_END = 1,
    /// A null pointer, or an argument the call cannot take (unknown flags, ...).
    SHEAF_INVALID_ARGUMENT = 2,
    /// The dataset holds no such path.
    SHEAF_NOT_FOUND = 3,
    /// A path that cannot name an entry (`..`, a NUL byte, ...).
    SHEAF_INVALID_PATH = 4,
    /// The path is a directory where a file was needed.
    SHEAF_IS_A_DIRECTORY = 5,
    /// The path is not a directory where one was needed.
    SHEAF_NOT_A_DIRECTORY = 6,
    /// The path cannot be used as asked (a symlink out of the dataset, a link loop, ...).
    SHEAF_WRONG_KIND = 7,
    /// Stored bytes are damaged: a checksum mismatch or a corrupt container, catalog or index.
    /// Wrong bytes are never returned.
    SHEAF_CORRUPT = 8,
    /// A file written by a format version this library cannot read.
    SHEAF_UNSUPPORTED_VERSION = 9,
    /// The URI names no published dataset (or an unfinished fold).
    SHEAF_NOT_A_DATASET = 10,
    /// The store holding the dataset (S3, HDFS, ...) failed after its retries.
    SHEAF_ORIGIN = 11,
    /// The cache cannot take what was asked of it.
    SHEAF_CACHE_FULL = 12,
    /// An operating-system error (permissions, a full disk, ...).
    SHEAF_IO = 13,
    /// The caller's buffer is smaller than the entry; the size needed was written back.
    SHEAF_BUFFER_TOO_SMALL = 14,
    /// A bug in the library (a caught panic); the message says where.
    SHEAF_INTERNAL = 15,
}

use sheaf_status::*;

/// A failure on its way out through the C ABI: a status and its message.
pub struct Failure {
    pub status: sheaf_status,
    pub message: String,
}

impl Failure {
    pub fn new(status: sheaf_status, message: impl Into<String>) -> Self {
        Failure {
            status,
            message: message.into(),
        }
    }

    /// A null pointer where `what` was required.
    pub fn null(what: &str) -> Self {
        Failure::new(SHEAF_INVALID_ARGUMENT, format!("{what} is a null pointer"))
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure::new(status_of(&error), error.to_string())
    }
}

/// The status code for a library error.
fn status_of(error: &Error) -> sheaf_status {
    match error {
        Error::NotFound { .. } | Error::NoSuchGeneration { .. } => SHEAF_NOT_FOUND,
        Error::InvalidPath { .. } => SHEAF_INVALID_PATH,
        Error::WrongKind { problem, .. } => match problem {
            KindProblem::IsADirectory => SHEAF_IS_A_DIRECTORY,
            KindProblem::NotADirectory => SHEAF_NOT_A_DIRECTORY,
            KindProblem::SymlinkLeavesDataset
            | KindProblem::SymlinkLoop
            | KindProblem::NotStored => SHEAF_WRONG_KIND,
        },
        Error::Corrupt { .. } | Error::ChecksumMismatch { .. } => SHEAF_CORRUPT,
        Error::UnsupportedVersion { .. } => SHEAF_UNSUPPORTED_VERSION,
        Error::NotADataset { .. } | Error::UnfinishedFold { .. } => SHEAF_NOT_A_DATASET,
        Error::Remote { .. } => SHEAF_ORIGIN,
        Error::CacheFull { .. } => SHEAF_CACHE_FULL,
        Error::NoRoom { .. } => SHEAF_BUFFER_TOO_SMALL,
        Error::Io { .. }
        | Error::Refused { .. }
        | Error::InvalidSetting { .. }
        | Error::CacheIncompatible { .. }
        | Error::Contended { .. } => SHEAF_IO,
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    // A message cannot hold NUL inside a C string; paths with NUL bytes are refused anyway.
    let text = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

/// The message of the last failed call on this thread (empty when none failed yet), as a
/// NUL-terminated UTF-8 string owned by the library and valid until this thread's next call.
#[no_mangle]
pub extern "C" fn sheaf_last_error() -> *const c_char {
    LAST_ERROR.with(|last| last.borrow().as_ptr())
}

/// Runs an export's body: turns its failures and panics into a status and a last-error
/// message, so nothing unwinds into the caller's frames.
pub fn guard(body: impl FnOnce() -> Result<sheaf_status, Failure>) -> sheaf_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(status)) => status,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            set_last_error(&format!("internal error in the sheaf library: {what}"));
            SHEAF_INTERNAL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_error() -> String {
        unsafe { CStr::from_ptr(sheaf_last_error()) }
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_panic_becomes_an_internal_status_with_its_message() {
        let status = guard(|| panic!("index out of range in a test"));
        assert_eq!(status, SHEAF_INTERNAL);
        assert!(last_error().contains("index out of range in a test"));
    }

    #[test]
    fn a_library_error_keeps_its_meaning_and_message() {
        let status = guard(|| {
            Err(Error::NotFound {
                path: "a/b.jpg".into(),
            }
            .into())
        });
        assert_eq!(status, SHEAF_NOT_FOUND);
        assert!(last_error().contains("a/b.jpg"));
        assert_eq!(guard(|| Ok(SHEAF_OK)), SHEAF_OK);
    }

    #[test]
    fn messages_with_nul_bytes_are_kept_readable() {
        guard(|| Err(Failure::new(SHEAF_INVALID_PATH, "a\0b")));
        assert_eq!(last_error(), "a\\0b");
    }
}
