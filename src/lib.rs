//! sheaf folds small files into large indexed containers and serves them back under their
//! original paths.
//!
//! - [`fold::fold`] turns a directory tree into a dataset: containers of small files, each
//!   ending in an Arrow index, a catalog of containers, and large files kept as they are.
//! - [`Dataset`] opens a dataset and looks up, reads, stats, lists and walks its entries.
//! - [`read::verify::verify`] and [`read::unfold::unfold`] check and restore a dataset.
//!
//! The bytes on disk are specified in formats/SPEC.md.

pub mod cache;
pub mod checksum;
pub mod error;
pub mod fold;
pub mod format;
#[cfg(feature = "fuse")]
pub mod fs;
pub mod layout;
pub mod progress;
pub mod read;
pub mod store;
pub mod time;
pub mod units;

pub use error::{Error, KindProblem, Result, Setting};
pub use format::{Codec, Entry, EntryKind};
pub use read::routes::Routes;
pub use read::{Dataset, Location, ReadOptions};
