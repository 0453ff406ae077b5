//! Where a dataset's files live under its root. See formats/SPEC.md, "Dataset layout".

use std::path::{Path, PathBuf};

/// The directory under a dataset root that holds sheaf's own files.
pub const SHEAF_DIR: &str = ".sheaf";

/// Where containers live, under [`SHEAF_DIR`].
pub const CONTAINERS_DIR: &str = "containers";

/// Where an unfinished fold keeps its temporary files, under [`SHEAF_DIR`].
pub const STAGING_DIR: &str = "staging";

/// The catalog's file name, under [`SHEAF_DIR`].
pub const CATALOG_FILE: &str = "catalog.sheaf";

/// The paths of one dataset root.
#[derive(Clone, Debug)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout of the dataset rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// The dataset root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/.sheaf`.
    pub fn sheaf_dir(&self) -> PathBuf {
        self.root.join(SHEAF_DIR)
    }

    /// `ROOT/.sheaf/catalog.sheaf`: its presence is what makes a dataset published.
    pub fn catalog(&self) -> PathBuf {
        self.sheaf_dir().join(CATALOG_FILE)
    }

    /// `ROOT/.sheaf/containers`.
    pub fn containers_dir(&self) -> PathBuf {
        self.sheaf_dir().join(CONTAINERS_DIR)
    }

    /// The file of the named container.
    pub fn container(&self, name: &str) -> PathBuf {
        self.containers_dir().join(name)
    }

    /// `ROOT/.sheaf/staging`.
    pub fn staging_dir(&self) -> PathBuf {
        self.sheaf_dir().join(STAGING_DIR)
    }

    /// Where an external (large) file lives: at its original path under the root.
    pub fn external(&self, path: &[u8]) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        self.root.join(std::ffi::OsStr::from_bytes(path))
    }
}

/// The catalog's key in a store holding a dataset root.
pub const CATALOG_KEY: &str = ".sheaf/catalog.sheaf";

/// The key prefix of every generation file in a store holding a dataset root.
pub const GENERATIONS_PREFIX: &str = ".sheaf/generations/";

/// The key of generation `number`'s file: zero-padded to 20 digits, so name order is number
/// order.
pub fn generation_key(number: u64) -> String {
    format!("{GENERATIONS_PREFIX}{number:020}.sheaf")
}

/// The key prefix of every container in a store holding a dataset root.
pub const CONTAINERS_PREFIX: &str = ".sheaf/containers/";

/// The key of the staging directory an unfinished fold keeps its temporary files in.
pub const STAGING_KEY: &str = ".sheaf/staging";

/// Key prefix of the plans of folds split into parts (`fold --plan`), in the staging area.
pub const PLANS_KEY: &str = ".sheaf/staging/plans";

/// The key of the settings file an unfinished fold leaves; it goes when the fold publishes.
pub const FOLD_PARAMS_KEY: &str = ".sheaf/staging/params";

/// The key of the lock a fold holds on stores that have locks (released and removed when the
/// fold ends).
pub const FOLD_LOCK_KEY: &str = ".sheaf/fold.lock";

/// The key of the named container.
pub fn container_key(name: &str) -> String {
    format!("{SHEAF_DIR}/{CONTAINERS_DIR}/{name}")
}

/// The file name of container `seq` of generation `generation`.
pub fn container_name(generation: u32, seq: u32) -> String {
    format!("g{generation:06}-c{seq:08}.sheaf")
}

/// The file name of container `seq` written by transaction `txn`, whose generation number is
/// known only when it commits (a writer that loses a race commits the same containers under
/// the next number).
pub fn txn_container_name(txn: &str, seq: u32) -> String {
    format!("t{txn}-c{seq:08}.sheaf")
}

/// The file name of container `seq` of part `part` of a planned fold whose transaction is
/// `txn`: a retried or duplicated part writes the same names, so it never duplicates data.
pub fn part_container_name(txn: &str, part: u32, seq: u32) -> String {
    format!("t{txn}-p{part:06}-c{seq:08}.sheaf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_spell_the_same_names_as_the_layout() {
        let layout = Layout::new("");
        assert_eq!(layout.catalog(), Path::new(CATALOG_KEY));
        assert_eq!(
            container_key("x"),
            format!("{CONTAINERS_PREFIX}x"),
            "container keys start with the containers prefix"
        );
        assert_eq!(
            layout.container("x"),
            Path::new(&container_key("x")),
            "a container's file and key name the same place"
        );
        assert_eq!(
            layout.staging_dir().join("params"),
            Path::new(FOLD_PARAMS_KEY)
        );
        assert_eq!(layout.staging_dir(), Path::new(STAGING_KEY));
    }
}
