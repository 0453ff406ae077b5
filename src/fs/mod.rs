//! The read-only FUSE filesystem over the reader. Not built yet: `sheaf mount` arrives with it.
