//! How the command line prints sizes, times, entries and reports.

use serde_json::{json, Value};
use sheaf::fold::FoldSummary;
use sheaf::format::path::display;
use sheaf::read::verify::VerifyReport;
use sheaf::{Dataset, Entry, EntryKind};
use std::io::{self, Write};

pub use sheaf::units::{parse_duration, parse_size};

/// `1 file`, `2 files`, `3 entries`.
pub fn count(n: u64, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

/// A fold threshold: a size from 1 byte to the largest entry a reader accepts.
pub fn parse_threshold(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if size == 0 || size > sheaf::format::MAX_ENTRY_LEN {
        return Err(format!(
            "the threshold must be between 1 byte and {}",
            human_bytes(sheaf::format::MAX_ENTRY_LEN)
        ));
    }
    Ok(size)
}

/// A size of at least one byte.
pub fn parse_positive_size(text: &str) -> Result<u64, String> {
    match parse_size(text)? {
        0 => Err("must be at least 1 byte".into()),
        size => Ok(size),
    }
}

/// A count of at least one.
pub fn parse_positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// Formats a byte count with a binary unit.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Formats nanoseconds since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn utc_time(mtime_ns: i64) -> String {
    let secs = mtime_ns.div_euclid(1_000_000_000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `ls -l` style mode string.
pub fn mode_string(kind: EntryKind, mode: u32) -> String {
    let type_char = match kind {
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
        _ => '-',
    };
    let bits = "rwxrwxrwx";
    let perms: String = bits
        .chars()
        .enumerate()
        .map(|(i, c)| if mode & (0o400 >> i) != 0 { c } else { '-' })
        .collect();
    format!("{type_char}{perms}")
}

/// The target of a symlink entry, read and checked; `None` for other kinds.
pub fn symlink_target(dataset: &Dataset, entry: &Entry) -> sheaf::Result<Option<Vec<u8>>> {
    if entry.kind != EntryKind::Symlink {
        return Ok(None);
    }
    let (at, _) = dataset
        .lookup(&entry.path)?
        .ok_or_else(|| sheaf::Error::NotFound {
            path: display(&entry.path),
        })?;
    Ok(Some(dataset.read_link(at)?.to_vec()))
}

/// One line of `ls`: raw name bytes (names need not be UTF-8).
pub fn write_ls_line(
    out: &mut impl Write,
    entry: &Entry,
    name: &[u8],
    long: bool,
    link: Option<&[u8]>,
) -> io::Result<()> {
    if long {
        write!(
            out,
            "{} {:>12} {}  ",
            mode_string(entry.kind, entry.mode),
            entry.len,
            utc_time(entry.mtime_ns)
        )?;
    }
    out.write_all(name)?;
    if let (true, Some(target)) = (long, link) {
        out.write_all(b" -> ")?;
        out.write_all(target)?;
    }
    out.write_all(b"\n")
}

/// The JSON form of an entry, shared by `ls --json` and `stat --json`.
pub fn entry_json(entry: &Entry, link: Option<&[u8]>, container: Option<&str>) -> Value {
    let mut value = json!({
        "path": display(&entry.path),
        "kind": entry.kind,
        "size": entry.len,
        "mode": entry.mode,
        "mtime_ns": entry.mtime_ns,
    });
    if std::str::from_utf8(&entry.path).is_err() {
        value["path_bytes"] = json!(entry.path);
    }
    if let Some(target) = link {
        value["target"] = json!(display(target));
    }
    // Where the bytes are: only files and symlinks have bytes in a container; an external
    // file's are where it lives, checked against its xxh3; a directory has none.
    let in_container = matches!(entry.kind, EntryKind::File | EntryKind::Symlink);
    if let (Some(container), true) = (container, in_container) {
        value["container"] = json!(container);
        value["offset"] = json!(entry.offset);
        value["stored_len"] = json!(entry.stored_len);
        value["codec"] = json!(entry.codec);
    }
    if container.is_some() && entry.kind != EntryKind::Dir {
        value["xxh3"] = json!(format!("{:016x}", entry.xxh3));
    }
    value
}

/// One NDJSON line of `ls --json`.
pub fn write_json_line(out: &mut impl Write, entry: &Entry, link: Option<&[u8]>) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &entry_json(entry, link, None))?;
    out.write_all(b"\n")
}

/// One line of `sheaf log`: number, time, operation, entries added and removed, containers.
pub fn write_log_line(
    out: &mut impl Write,
    info: &sheaf::format::generation::GenerationInfo,
) -> io::Result<()> {
    let time = match info.time_ns {
        0 => "-".to_owned(),
        ns => utc_time(ns),
    };
    writeln!(
        out,
        "{:>6}  {time:<20}  {:<8} +{} -{}  {} containers, {}",
        info.number,
        info.operation,
        info.added,
        info.removed,
        info.containers,
        human_bytes(info.bytes)
    )
}

/// Human form of `stat`.
pub fn print_stat(entry: &Entry, link: Option<&[u8]>, container: Option<&str>) {
    let kind = match entry.kind {
        EntryKind::File => "file (folded)",
        EntryKind::External => "file (kept as an ordinary file)",
        EntryKind::Dir => "directory",
        EntryKind::Symlink => "symlink",
        EntryKind::Tombstone => "deleted",
    };
    println!("  path: {}", display(&entry.path));
    println!("  kind: {kind}");
    println!("  size: {}", entry.len);
    println!(
        "  mode: {:06o} ({})",
        entry.mode,
        mode_string(entry.kind, entry.mode)
    );
    println!(
        " mtime: {} UTC ({} ns)",
        utc_time(entry.mtime_ns),
        entry.mtime_ns
    );
    if let Some(target) = link {
        println!("target: {}", display(target));
    }
    if let Some(container) = container.filter(|_| entry.kind.is_stored()) {
        let codec = match entry.codec {
            sheaf::Codec::None => "none",
            sheaf::Codec::Zstd => "zstd",
        };
        println!(
            "stored: {container} at {} ({} bytes, codec {codec})",
            entry.offset, entry.stored_len
        );
    }
    if entry.kind != EntryKind::Dir {
        println!("  xxh3: {:016x}", entry.xxh3);
    }
}

/// Human form of the fold summary.
/// What `fold --plan` made, and what to run next.
pub fn print_plan(planned: &sheaf::fold::parts::Planned) {
    let (plan, location) = (&planned.plan, &planned.location);
    if planned.resumed {
        println!("continuing the unfinished plan of the same fold: its finished parts are kept");
    }
    println!(
        "planned {} of {} entries ({}) from {} into {}",
        count(plan.parts.len() as u64, "part"),
        plan.entries,
        human_bytes(plan.bytes),
        plan.src,
        plan.dst
    );
    println!("plan: {location}");
    println!(
        "next: `sheaf fold --part K {location}` for K in 0..{} (anywhere, in any order, retried freely), then `sheaf fold --commit {location}`",
        plan.parts.len() - 1
    );
}

/// What `fold --part K` did.
pub fn print_part_summary(s: &sheaf::fold::parts::PartSummary) {
    if s.already_done {
        println!("part {} had already finished: nothing to do", s.part);
        return;
    }
    println!(
        "part {}: folded {} ({}) into {} ({} stored); kept {} large files ({}) in {:.1}s",
        s.part,
        count(s.files_folded, "file"),
        human_bytes(s.bytes_folded),
        count(s.containers, "container"),
        human_bytes(s.bytes_stored),
        s.files_kept,
        human_bytes(s.bytes_kept),
        s.elapsed_secs
    );
}

pub fn print_fold_summary(s: &FoldSummary) {
    println!(
        "folded {} ({}) and {} into {} ({} stored{})",
        count(s.files_folded, "file"),
        human_bytes(s.bytes_folded),
        count(s.symlinks, "symlink"),
        count(s.containers, "container"),
        human_bytes(s.bytes_stored),
        if s.containers_reused > 0 {
            format!(", {} reused from an interrupted run", s.containers_reused)
        } else {
            String::new()
        }
    );
    println!(
        "kept {} large files ({}) as they are; {} directories recorded",
        s.files_kept,
        human_bytes(s.bytes_kept),
        s.dirs
    );
    if s.special_skipped > 0 {
        println!("skipped {} sockets, FIFOs or devices", s.special_skipped);
    }
    if s.originals_removed > 0 || s.originals_changed > 0 {
        println!(
            "removed {} folded originals; kept {} that changed during the fold",
            s.originals_removed, s.originals_changed
        );
    }
    // A dataset's first fold reports what folding saved; a later generation adds to it.
    let generation = match s.generation {
        0 => {
            println!(
                "objects to track: {} -> {} ({:.2}% fewer)",
                s.objects_before, s.objects_after, s.reduction_percent
            );
            String::new()
        }
        n => format!(", generation {n}"),
    };
    let rate = (s.bytes_folded + s.bytes_kept) as f64 / s.elapsed_secs.max(1e-9);
    println!(
        "dataset {}{generation} in {:.2} s ({}/s)",
        s.dataset.display(),
        s.elapsed_secs,
        human_bytes(rate as u64)
    );
}

/// Human form of the verify report: every fault, then a summary line.
pub fn print_verify_report(report: &VerifyReport) {
    for fault in &report.faults {
        match &fault.path {
            Some(path) => println!("FAULT {} [{}]: {}", fault.file, path, fault.problem),
            None => println!("FAULT {}: {}", fault.file, fault.problem),
        }
    }
    println!(
        "checked {}, {}, {} and links ({}): {}",
        count(report.containers as u64, "container"),
        count(report.entries, "entry"),
        count(report.checked, "file"),
        human_bytes(report.bytes),
        if report.is_clean() {
            "all good".to_string()
        } else {
            count(report.faults.len() as u64, "fault")
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(1_700_000_000_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(mode_string(EntryKind::File, 0o100644), "-rw-r--r--");
    }
}
