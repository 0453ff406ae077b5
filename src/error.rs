//! The library's error type: one enum, variants by meaning, messages that say what to do next.

use std::io;
use std::path::PathBuf;

/// Everything the sheaf library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A path that the dataset does not hold.
    #[error("no such path in the dataset: {path}")]
    NotFound { path: String },

    /// A path that cannot name an entry (`..`, NUL, empty components, ...).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },

    /// The entry exists but is not what the operation needs (a directory to `cat`, ...).
    #[error("{path}: {problem}")]
    WrongKind { path: String, problem: KindProblem },

    /// A container, catalog or index whose bytes do not make sense.
    #[error("corrupt {file}: {reason}")]
    Corrupt { file: PathBuf, reason: String },

    /// Stored bytes whose checksum does not match the index: never returned as data.
    #[error(
        "checksum mismatch for {path} in {file}: expected xxh3 {expected:016x}, found {found:016x}"
    )]
    ChecksumMismatch {
        file: PathBuf,
        path: String,
        expected: u64,
        found: u64,
    },

    /// A file written by a format version this build cannot read.
    #[error(
        "{file} has format version {found}; this build reads versions {oldest} to {newest}: \
         upgrade sheaf to read it"
    )]
    UnsupportedVersion {
        file: PathBuf,
        found: u16,
        oldest: u16,
        newest: u16,
    },

    /// A directory that holds no published dataset.
    #[error("{root} is not a sheaf dataset (no generation under .sheaf/generations/ and no .sheaf/catalog.sheaf): fold a tree into it first")]
    NotADataset { root: PathBuf },

    /// A generation asked for by number that the dataset does not have (never committed yet,
    /// or deleted by `gc`).
    #[error(
        "{root} has no generation {asked} (the newest is {newest}; `sheaf log` lists those kept)"
    )]
    NoSuchGeneration {
        root: PathBuf,
        asked: u64,
        newest: u64,
    },

    /// A commit that lost its race to other writers too many times in a row.
    #[error("{root}: {reason}")]
    Contended { root: PathBuf, reason: String },

    /// A directory where a fold started but never published.
    #[error("{root} holds an unfinished fold: run the same `sheaf fold` again to complete it")]
    UnfinishedFold { root: PathBuf },

    /// A fold target that would overwrite or nest with something it must not.
    #[error("{path}: {reason}")]
    Refused { path: PathBuf, reason: String },

    /// A setting of a fold or a preload that cannot be used (a front end names it its own way:
    /// the CLI as its flag).
    #[error("{setting}: {reason}")]
    InvalidSetting { setting: Setting, reason: String },

    /// A cache directory written by another kind or version of cache.
    #[error(
        "{} is a cache of another kind or version ({found:?}); this build uses {expected:?}: \
         use another cache directory",
        dir.display()
    )]
    CacheIncompatible {
        dir: PathBuf,
        found: String,
        expected: String,
    },

    /// A remote store failed (after its retries): unreachable, refused, timed out. The
    /// client's own message already spells out its causes, so it is not chained again.
    #[error("{uri}: {}", first_line(cause.as_ref()))]
    Remote {
        uri: String,
        cause: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The cache cannot take what was asked of it, even after evicting everything it may.
    #[error(
        "the cache {} cannot fit {needed} more bytes under its quota of {quota} bytes: {kept} \
         bytes are pinned or in use by this request; raise the quota, unpin a dataset or preload \
         less",
        cache.display()
    )]
    CacheFull {
        cache: PathBuf,
        needed: u64,
        quota: u64,
        kept: u64,
    },

    /// The caller gave no room (or too little) for the bytes of a file read into its memory.
    #[error("{path}: no room was given for its {len} bytes")]
    NoRoom { path: String, len: usize },

    /// An operating-system error on a named path.
    #[error("{op} {}: {cause}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        cause: io::Error,
    },
}

/// Why an entry cannot be used as an operation asked: each meaning its own value, so that
/// front ends (the C ABI's status codes, errno in the mount) never read it out of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KindProblem {
    /// A directory where a file was needed.
    IsADirectory,
    /// Not a directory where one was needed.
    NotADirectory,
    /// A symlink whose target leaves the dataset.
    SymlinkLeavesDataset,
    /// Symlinks that lead to each other, or too many in a row.
    SymlinkLoop,
    /// An entry with no bytes in a container (a directory or an external file) asked for them.
    NotStored,
}

impl std::fmt::Display for KindProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KindProblem::IsADirectory => "is a directory",
            KindProblem::NotADirectory => "is not a directory",
            KindProblem::SymlinkLeavesDataset => "is a symlink that points outside the dataset",
            KindProblem::SymlinkLoop => "too many levels of symbolic links",
            KindProblem::NotStored => "has no bytes stored in a container",
        })
    }
}

/// A setting of the library's operations, named in [`Error::InvalidSetting`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// The size under which a fold packs a file into a container.
    Threshold,
    /// The bytes and entries a container may hold.
    ContainerLimits,
    /// Removing the originals after a fold.
    RemoveOriginals,
    /// The number of parallel fetches of a preload.
    Jobs,
    /// Per-entry compression.
    Compression,
    /// The parts a planned fold is cut into.
    Partitions,
    /// What a planned fold is cut from (surveys, a manifest's sample).
    Listing,
    /// How an epoch order is shuffled and cut (window, parts).
    Order,
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Setting::Threshold => "threshold",
            Setting::ContainerLimits => "container size",
            Setting::RemoveOriginals => "removing originals",
            Setting::Jobs => "jobs",
            Setting::Compression => "compression",
            Setting::Partitions => "partitions",
            Setting::Listing => "listing",
            Setting::Order => "epoch order",
        })
    }
}

/// The first line of an error message: remote servers append whole stack traces.
fn first_line(error: &dyn std::error::Error) -> String {
    error
        .to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the operation and the path it failed on.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            cause,
        }
    }

    /// A corrupt-file error with a formatted reason.
    pub fn corrupt(file: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Corrupt {
            file: file.into(),
            reason: reason.into(),
        }
    }

    /// True when a write failed because the reader went away (`sheaf cat ... | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { cause, .. } if cause.kind() == io::ErrorKind::BrokenPipe)
    }

    /// True for an operating-system error saying that the named file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { cause, .. } if cause.kind() == io::ErrorKind::NotFound)
    }

    /// True when the error means the data on disk is damaged (as opposed to absent or refused).
    pub fn is_data_fault(&self) -> bool {
        matches!(
            self,
            Error::Corrupt { .. }
                | Error::ChecksumMismatch { .. }
                | Error::UnsupportedVersion { .. }
        )
    }
}

/// Extension to attach an operation and path to `io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
