//! Streaming one object through several ranged requests at once, delivered in order (and
//! placed at their offsets as they arrive).
//!
//! A remote store serves one request at a time per connection, so a large object fetched as
//! consecutive ranges waits on one round trip after another. Here up to `ways` ranges are in
//! flight, and the sink still sees the bytes from the first to the last: callers that hash
//! while they write (the cache's fetch) need that order.

use super::Store;
use crate::error::Result;
use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};

/// Ranges fetched ahead of the one the sink waits for, per worker: enough to keep every
/// worker busy while the sink catches up, and a bound on the bytes held (`ways * 2` chunks).
const AHEAD_PER_WORKER: u64 = 2;

struct Shared {
    /// Next chunk index no worker has claimed.
    next: u64,
    /// Chunks the sink has consumed.
    delivered: u64,
    /// Fetched chunks the sink has not consumed yet.
    ready: BTreeMap<u64, Result<Vec<u8>>>,
    /// The sink failed: workers stop claiming.
    stopped: bool,
}

/// Where each fetched range goes first: its bytes and their offset in the object, called on
/// the thread that fetched them, in any order.
pub type Place<'a> = &'a (dyn Fn(u64, &[u8]) -> Result<()> + Sync);

/// Streams `len` bytes of `key` through `sink` in order, fetching `chunk`-byte ranges with up
/// to `ways` requests in flight (with one way or one chunk, [`Store::read_chunks`]). Every
/// range is also handed to `place` as soon as it arrives, before `sink` sees it, so a copy can
/// write ranges at their offsets in parallel while `sink` hashes in order. A failure in
/// `place` ends the stream like a failed request.
pub fn read_chunks_placed(
    store: &dyn Store,
    key: &str,
    len: u64,
    chunk: u64,
    ways: usize,
    place: Place<'_>,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let count = len.div_ceil(chunk.max(1));
    if ways <= 1 || count <= 1 {
        let mut at = 0;
        return store.read_chunks(key, len, &mut |bytes| {
            place(at, bytes)?;
            at += bytes.len() as u64;
            sink(bytes)
        });
    }
    let window = ways as u64 * AHEAD_PER_WORKER;
    let shared = Mutex::new(Shared {
        next: 0,
        delivered: 0,
        ready: BTreeMap::new(),
        stopped: false,
    });
    let changed = Condvar::new();
    let range_of = |i: u64| i * chunk..((i + 1) * chunk).min(len);
    std::thread::scope(|scope| {
        for _ in 0..ways.min(count as usize) {
            scope.spawn(|| {
                while let Some(i) = claim(&shared, &changed, count, window) {
                    let range = range_of(i);
                    let at = range.start;
                    let bytes = store
                        .read_range(key, range)
                        .and_then(|bytes| place(at, &bytes).map(|()| bytes));
                    lock(&shared).ready.insert(i, bytes);
                    changed.notify_all();
                }
            });
        }
        let outcome = deliver(&shared, &changed, count, sink);
        if outcome.is_err() {
            lock(&shared).stopped = true;
            changed.notify_all();
        }
        outcome
    })
}

/// The next chunk for a worker once the window allows it; `None` when all are claimed or the
/// sink stopped.
fn claim(shared: &Mutex<Shared>, changed: &Condvar, count: u64, window: u64) -> Option<u64> {
    let mut state = lock(shared);
    loop {
        if state.stopped || state.next >= count {
            return None;
        }
        if state.next < state.delivered + window {
            state.next += 1;
            return Some(state.next - 1);
        }
        state = changed.wait(state).unwrap_or_else(|e| e.into_inner());
    }
}

/// Hands the chunks to the sink in index order as they arrive; the first error ends it.
fn deliver(
    shared: &Mutex<Shared>,
    changed: &Condvar,
    count: u64,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    for i in 0..count {
        let fetched = {
            let mut state = lock(shared);
            loop {
                if let Some(fetched) = state.ready.remove(&i) {
                    break fetched;
                }
                state = changed.wait(state).unwrap_or_else(|e| e.into_inner());
            }
        };
        sink(&fetched?)?;
        lock(shared).delivered = i + 1;
        changed.notify_all();
    }
    Ok(())
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    // A worker that panicked mid-request leaves consistent state (it inserts whole results).
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::store::memory::{MemoryStore, Op};
    use std::time::Duration;

    /// One object "k" in memory; ranges answer after a delay that shrinks with the offset, so
    /// later ranges tend to finish first; a range covering `fail_at` fails.
    fn slow(len: usize, fail_at: Option<u64>) -> (MemoryStore, Vec<u8>) {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let store = MemoryStore::new()
            .with_delay(|_, range| Duration::from_millis(20u64.saturating_sub(range.start / 1000)))
            .with_fault(move |op, key, range| {
                let hit = op == Op::ReadRange && fail_at.is_some_and(|at| range.contains(&at));
                hit.then(|| Error::NotFound {
                    path: format!("memory://{key}"),
                })
            });
        store.put("k", bytes.clone());
        (store, bytes)
    }

    /// What the sink got (in order), how many calls it took, and the bytes `place` wrote at
    /// their offsets (a range placed twice fails the test).
    fn collect(
        store: &MemoryStore,
        len: usize,
        chunk: u64,
        ways: usize,
    ) -> (Result<()>, Vec<u8>, usize) {
        let placed = Mutex::new(vec![None; len]);
        let mut got = Vec::new();
        let mut calls = 0;
        let outcome = read_chunks_placed(
            store,
            "k",
            len as u64,
            chunk,
            ways,
            &|at, bytes| {
                let mut placed = placed.lock().unwrap();
                for (i, &b) in bytes.iter().enumerate() {
                    let slot = &mut placed[at as usize + i];
                    assert!(slot.is_none(), "byte {} placed twice", at as usize + i);
                    *slot = Some(b);
                }
                Ok(())
            },
            &mut |c| {
                calls += 1;
                got.extend_from_slice(c);
                Ok(())
            },
        );
        // Everything the sink saw was placed first, at its own offset.
        let placed = placed.into_inner().unwrap();
        let placed_prefix: Vec<u8> = placed[..got.len()].iter().map(|b| b.unwrap()).collect();
        assert_eq!(placed_prefix, got);
        (outcome, got, calls)
    }

    #[test]
    fn chunks_arrive_in_order_with_several_requests_in_flight() {
        let (store, bytes) = slow(20_500, None);
        let (outcome, got, calls) = collect(&store, bytes.len(), 1000, 4);
        outcome.unwrap();
        assert_eq!(got, bytes);
        assert_eq!(calls, 21);
        assert_eq!(store.count(Op::ReadRange), 21);
        let most = store.most_in_flight();
        assert!(
            (2..=4).contains(&most),
            "{most} requests were in flight at once"
        );
    }

    #[test]
    fn one_way_or_one_chunk_reads_in_sequence() {
        let (store, bytes) = slow(3_000, None);
        let (outcome, got, _) = collect(&store, bytes.len(), 1000, 1);
        outcome.unwrap();
        assert_eq!(got, bytes);
        assert_eq!(store.most_in_flight(), 1);
        let (small, small_bytes) = slow(999, None);
        let (outcome, got, _) = collect(&small, small_bytes.len(), 1000, 8);
        outcome.unwrap();
        assert_eq!(got, small_bytes);
    }

    #[test]
    fn a_failed_range_ends_the_stream_after_the_bytes_before_it() {
        let (store, bytes) = slow(20_000, Some(7_500));
        let (outcome, got, _) = collect(&store, bytes.len(), 1000, 4);
        assert!(
            matches!(outcome, Err(Error::NotFound { .. })),
            "{outcome:?}"
        );
        assert_eq!(got, bytes[..7000]);
    }

    #[test]
    fn a_failing_place_ends_the_stream_before_the_sink_sees_that_range() {
        let (store, bytes) = slow(20_000, None);
        let mut got = Vec::new();
        let outcome = read_chunks_placed(
            &store,
            "k",
            20_000,
            1000,
            4,
            &|at, _| match at {
                5000 => Err(Error::NotFound {
                    path: "disk".into(),
                }),
                _ => Ok(()),
            },
            &mut |c| {
                got.extend_from_slice(c);
                Ok(())
            },
        );
        assert!(
            matches!(outcome, Err(Error::NotFound { .. })),
            "{outcome:?}"
        );
        assert_eq!(got, bytes[..5000]);
    }

    #[test]
    fn a_failing_sink_stops_the_workers() {
        let (store, _) = slow(100_000, None);
        let mut calls = 0;
        let outcome =
            read_chunks_placed(&store, "k", 100_000, 1000, 3, &|_, _| Ok(()), &mut |_| {
                calls += 1;
                Err(Error::NotFound {
                    path: "sink".into(),
                })
            });
        assert!(outcome.is_err());
        assert_eq!(calls, 1);
        let requests = store.count(Op::ReadRange);
        assert!(
            requests <= 1 + 3 * AHEAD_PER_WORKER as usize + 3,
            "{requests} requests after the sink failed on the first chunk"
        );
    }
}
