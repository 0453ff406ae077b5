//! External entries: large files kept where they live, read through the dataset's store and
//! checked against the index.

use super::*;

impl Dataset {
    /// Streams an external entry's file through `sink`, then checks its length and checksum:
    /// the sink has seen wrong bytes when this fails, so callers that must never pass wrong
    /// bytes on either check first (`verify_external`) or discard what they wrote.
    pub fn stream_external(
        &self,
        entry: &Entry,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        path::check_entry_path(&entry.path).map_err(|reason| Error::InvalidPath {
            path: display(&entry.path),
            reason,
        })?;
        let file = store::open_file(&self.store, &entry.path, OpenAs::Plain, None)?;
        let uri = file.uri();
        let mut hasher = Xxh3::new();
        let seen = file.stream(&mut |chunk: &[u8]| {
            hasher.update(chunk);
            sink(chunk)
        })?;
        let len = file.len();
        if len != entry.len || seen != entry.len {
            return Err(Error::corrupt(
                &uri,
                format!(
                    "external file is {len} bytes, the index says {} (changed since the fold?)",
                    entry.len
                ),
            ));
        }
        check_external(Path::new(&uri), entry, hasher.digest())
    }

    /// Bytes `range` of an external entry's file, from where it lives: one read, unchecked
    /// (the checksum covers the whole file; callers that read it all check it themselves).
    pub fn read_external_range(
        &self,
        entry: &Entry,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>> {
        path::check_entry_path(&entry.path).map_err(|reason| Error::InvalidPath {
            path: display(&entry.path),
            reason,
        })?;
        // The index's length stands in for the object's: a range read needs none, and asking
        // would cost a remote store a request each time.
        store::open_file(&self.store, &entry.path, OpenAs::Plain, Some(entry.len))?
            .read_range(range)
    }

    /// Reads an external file whole, checked against the index checksum.
    pub fn read_external(&self, entry: &Entry) -> Result<Buffer> {
        // The index's length is untrusted until the file has been seen: reserve modestly.
        let mut bytes = Vec::with_capacity(entry.len.min(64 << 20) as usize);
        self.stream_external(entry, &mut |chunk| {
            bytes.extend_from_slice(chunk);
            Ok(())
        })?;
        Ok(Buffer::from_vec(bytes))
    }

    /// Streams an external file once to check its length and checksum.
    pub fn verify_external(&self, entry: &Entry) -> Result<()> {
        self.stream_external(entry, &mut |_| Ok(()))
    }
}

/// Fails unless `found` is the checksum the index holds for an external file.
fn check_external(file: &Path, entry: &Entry, found: u64) -> Result<()> {
    if found != entry.xxh3 {
        return Err(Error::ChecksumMismatch {
            file: file.to_path_buf(),
            path: display(&entry.path),
            expected: entry.xxh3,
            found,
        });
    }
    Ok(())
}
