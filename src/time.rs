//! File times as the index keeps them (nanoseconds since the epoch) and as the OS gives them,
//! and the cheap clock hot paths measure short intervals with.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use filetime::FileTime;

/// Modification time of `meta` in nanoseconds since the epoch.
pub fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// Index nanoseconds as a file time (to set on a restored or copied file).
pub fn file_time(mtime_ns: i64) -> FileTime {
    FileTime::from_unix_time(
        mtime_ns.div_euclid(1_000_000_000),
        mtime_ns.rem_euclid(1_000_000_000) as u32,
    )
}

/// Index nanoseconds as a system time; times before the epoch stay before it.
pub fn system_time(mtime_ns: i64) -> SystemTime {
    match u64::try_from(mtime_ns) {
        Ok(ns) => UNIX_EPOCH + Duration::from_nanos(ns),
        Err(_) => UNIX_EPOCH - Duration::from_nanos(mtime_ns.unsigned_abs()),
    }
}

/// The current time, nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The coarse monotonic clock in nanoseconds: read from memory the kernel updates each tick,
/// without a system call, and cheaper than the precise clock a read's latency is timed with.
pub fn coarse_monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_the_epoch_keep_their_sign() {
        let ns = -1_500_000_000;
        assert_eq!(file_time(ns), FileTime::from_unix_time(-2, 500_000_000));
        assert_eq!(system_time(ns), UNIX_EPOCH - Duration::from_millis(1500));
        assert_eq!(system_time(7), UNIX_EPOCH + Duration::from_nanos(7));
    }
}
