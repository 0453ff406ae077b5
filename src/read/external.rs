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
        let mut hasher = BlockHasher::new(EXTERNAL_BLOCK);
        let seen = file.stream(&mut |chunk: &[u8]| {
            hasher.update(chunk);
            sink(chunk)
        })?;
        let (_, whole, block_sums) = hasher.finish();
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
        check_external(Path::new(&uri), entry, whole)?;
        match &entry.block_sums {
            Some(recorded) if **recorded != block_sums[..] => Err(Error::corrupt(
                &uri,
                "the index's block checksums disagree with the file, whose whole checksum matches",
            )),
            _ => Ok(()),
        }
    }

    /// Bytes `range` of an external entry's file, from where it lives, checked: against the
    /// checksums of the blocks the range touches (read whole for that), or, for an entry
    /// indexed before block checksums existed, by a check of the whole file the first time
    /// any part of it is read (remembered for as long as the dataset is open).
    pub fn read_external_range(
        &self,
        entry: &Entry,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>> {
        let range = range.start.min(entry.len)..range.end.min(entry.len);
        if range.is_empty() {
            return Ok(Vec::new());
        }
        match &entry.block_sums {
            Some(sums) => self.read_checked_blocks(entry, sums, range),
            None => {
                self.check_external_once(entry)?;
                self.read_external_unchecked(entry, range)
            }
        }
    }

    /// Reads the blocks `range` touches, checks each against its sum, and keeps `range`.
    fn read_checked_blocks(
        &self,
        entry: &Entry,
        sums: &[u64],
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>> {
        let first = range.start / EXTERNAL_BLOCK;
        let covered = first * EXTERNAL_BLOCK
            ..(range.end.div_ceil(EXTERNAL_BLOCK) * EXTERNAL_BLOCK).min(entry.len);
        let uri = self.external_uri(entry);
        let shorter = || {
            Error::corrupt(
                &uri,
                format!(
                    "external file is shorter than the {} bytes the index gives it (changed since the fold?)",
                    entry.len
                ),
            )
        };
        let mut bytes = match self.read_external_unchecked(entry, covered.clone()) {
            Err(Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(shorter())
            }
            read => read?,
        };
        if bytes.len() as u64 != covered.end - covered.start {
            return Err(shorter());
        }
        for (block, chunk) in bytes.chunks(EXTERNAL_BLOCK as usize).enumerate() {
            let expected = sums[first as usize + block];
            let found = xxh3_64(chunk);
            if found != expected {
                return Err(Error::ChecksumMismatch {
                    file: PathBuf::from(&uri),
                    path: format!(
                        "{} (block at byte {})",
                        display(&entry.path),
                        covered.start + block as u64 * EXTERNAL_BLOCK
                    ),
                    expected,
                    found,
                });
            }
        }
        bytes.truncate((range.end - covered.start) as usize);
        bytes.drain(..(range.start - covered.start) as usize);
        Ok(bytes)
    }

    /// Checks an external file without block checksums whole, once per open dataset.
    fn check_external_once(&self, entry: &Entry) -> Result<()> {
        let key = (entry.path.clone(), entry.xxh3);
        let checked = || {
            self.checked_externals
                .lock()
                .unwrap_or_else(|p| p.into_inner())
        };
        if checked().contains(&key) {
            return Ok(());
        }
        self.verify_external(entry)?;
        checked().insert(key);
        Ok(())
    }

    /// Bytes `range` of an external entry's file, as the store returns them: one read.
    fn read_external_unchecked(
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
