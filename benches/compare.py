#!/usr/bin/env python3
"""sheaf against its peers, side by side in one run, scored against the performance bar.

    python3 benches/compare.py [--files N | --corpus DIR] [--scale-entries N] [--runs R]
                               [--threads 1,4] [--remote-files N] [--only STEP,..]
                               [--skip STEP,..]

Needs root (page-cache drops, FUSE mounts, Debian packages), /dev/fuse, cargo, gcc, python3.
Everything the peers need is installed by the steps: squashfs-tools, squashfuse, fuse3 and
hyperfine from Debian, ratarmount from PyPI (bench-out/peers-venv), the Python package
(bench-out/venv), the test servers (scripts/servers.sh).

Corpora (generated under bench-out/, reused when complete):
  training  benches/make_corpus.py, N files (default 200,000; about 100 KiB a file, so
            check the disk: the step needs about 3x the corpus size free), 90% images of
            20-200 KiB and 10% labels of 0.1-2 KiB in a few thousand directories, seed 0;
            or any directory given with --corpus
  scale     --scale-entries tiny files (default 1,000,000; 16-1,024 bytes, 1,000 a
            directory), for the index, memory and per-file-overhead figures

Steps (each runs a benchmark of benches/ and reads its CSV; --only/--skip pick them):
  fold      benches/fold_vs_tar.sh on the training corpus: sheaf fold against tar -cf
  reader    cargo bench --bench reader_vs_files on both corpora: Dataset::read from a
            preloaded cache against open/read/close of the plain files
  mount     benches/mount_vs_squashfuse.sh --ratarmount on the training corpus: sheaf mount
            against the plain files, squashfuse_ll and ratarmount, cold and warm
  python    benches/python_vs_files.py on both corpora: sheaf.Dataset against
            open(p, "rb").read()
  scale     the scale corpus, warmed, folded under /usr/bin/time (peak RSS, objects left)
            and archived with tar -cf, --runs rounds alternating which goes first; sheaf
            mount of it (mount time, RSS after stat-ing every file and reading a
            sample), and `cargo bench --bench micro` at that entry count (dataset open,
            lookup) from criterion's estimates
  remote    the test servers' S3 (moto) and HDFS (MiniDFSCluster): a --remote-files corpus
            folded there; cargo bench --bench remote counts requests per entry without a
            cache and times preload against a plain parallel ranged download
  memory    benches/larger_than_memory.py: --memory-files files of 20-180 KB read inside a
            memory cgroup of 1/2 and 1/4 of the dataset's size (page cache included), two
            random epochs each: the plain files, squashfuse_ll, sheaf mount, the Python
            reader and the Python reader through a preloaded cache; files/s, disk bytes read,
            page cache, the mount daemon's memory
  loaders   benches/loaders.py: sheaf against MosaicML Streaming, LitData, WebDataset, the
            plain files through a DataLoader, s3fs-fuse and rclone mount: conversion, random
            access from local disk (DataLoader, 0 and 2 workers) and the first epoch from S3

Every step checks that each system returned the same bytes (checksums over everything read)
and fails otherwise. Results: the scorecard on stdout, bench-out/compare.csv (one row per
measure: sheaf's figure, the peer's, the ratio, the target, met or not) and
bench-out/compare.md (the same as a Markdown table, with the machine); each step's own CSV
stays in bench-out/ with every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench-out"
STEPS = ("fold", "reader", "mount", "python", "scale", "remote", "memory", "loaders")


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def run(*args, env=None, cwd=ROOT, capture=False) -> str:
    """Runs a command, failing the comparison when it fails."""
    argv = [str(a) for a in args]
    log(" ".join(argv))
    result = subprocess.run(argv, cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE if capture else None)
    if result.returncode != 0:
        sys.exit(f"compare: failed ({result.returncode}): {' '.join(argv)}")
    return result.stdout if capture else ""


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def facts(path: Path) -> dict[str, str]:
    return {row["fact"]: row["value"] for row in read_csv(path)}


@dataclass
class Line:
    """One measure of the scorecard."""
    measure: str
    sheaf: float
    peer_name: str
    peer: float | None
    unit: str
    target: str
    ratio: float | None = None
    met: bool | None = None
    note: str = ""


class Scorecard:
    def __init__(self) -> None:
        self.lines: list[Line] = []

    def ratio(self, measure, sheaf, peer_name, peer, unit, at_least, higher_is_better=True,
              note=""):
        """A line scored by the ratio sheaf/peer (rates) or peer/sheaf (times)."""
        ratio = sheaf / peer if higher_is_better else peer / sheaf
        self.lines.append(Line(measure, sheaf, peer_name, peer, unit, f">= {at_least}x",
                               ratio, ratio >= at_least, note))

    def bound(self, measure, sheaf, unit, at_most, note=""):
        """A line scored by an absolute bound."""
        self.lines.append(Line(measure, sheaf, "", None, unit, f"<= {at_most:g} {unit}",
                               None, sheaf <= at_most, note))

    def ratio_at_most(self, measure, sheaf, peer_name, peer, unit, at_most, note=""):
        """A line scored by sheaf/peer staying under a bound (bytes read, memory)."""
        ratio = sheaf / peer
        self.lines.append(Line(measure, sheaf, peer_name, peer, unit, f"<= {at_most}x",
                               ratio, ratio <= at_most, note))

    def info(self, measure, sheaf, unit, peer_name="", peer=None, note=""):
        """A figure reported without a target (memory, mount time)."""
        ratio = (peer / sheaf) if peer and sheaf else None
        self.lines.append(Line(measure, sheaf, peer_name, peer, unit, "", ratio, None, note))

    def write(self, machine: str) -> None:
        fields = ["measure", "sheaf", "peer_name", "peer", "unit", "ratio", "target", "met",
                  "note"]
        with open(WORK / "compare.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            for line in self.lines:
                w.writerow({
                    "measure": line.measure, "sheaf": f"{line.sheaf:.6g}",
                    "peer_name": line.peer_name,
                    "peer": "" if line.peer is None else f"{line.peer:.6g}",
                    "unit": line.unit,
                    "ratio": "" if line.ratio is None else f"{line.ratio:.3f}",
                    "target": line.target,
                    "met": "" if line.met is None else ("yes" if line.met else "no"),
                    "note": line.note,
                })
        rows = ["| measure | sheaf | peer | ratio | target | met | note |",
                "|---|---:|---|---:|---|---|---|"]
        for line in self.lines:
            peer = "" if line.peer is None else f"{line.peer_name} {fmt(line.peer)} {line.unit}"
            ratio = "" if line.ratio is None else f"{line.ratio:.2f}x"
            met = "" if line.met is None else ("**yes**" if line.met else "**no**")
            rows.append(f"| {line.measure} | {fmt(line.sheaf)} {line.unit} | {peer} | {ratio} "
                        f"| {line.target} | {met} | {line.note} |")
        table = "\n".join(rows)
        (WORK / "compare.md").write_text(f"{machine}\n\n{table}\n")
        print()
        print(machine)
        print(table)
        print(f"\nwritten {WORK / 'compare.csv'} and {WORK / 'compare.md'}")


def fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


# --- corpora ---------------------------------------------------------------------------------

def training_corpus(args) -> Path:
    if args.corpus:
        return Path(args.corpus).resolve()
    corpus = WORK / f"corpus-n{args.files}-s0"
    stamp = Path(f"{corpus}.done")
    if corpus.is_dir() and stamp.exists():
        return corpus
    need = args.files * 100 * 1024 * 3
    free = shutil.disk_usage(WORK).free
    if free < need:
        sys.exit(f"compare: {args.files} files need about {need / 2**30:.0f} GiB free in "
                 f"{WORK} (the corpus and one copy of it per peer at a time); "
                 f"{free / 2**30:.0f} GiB are free: pass a smaller --files")
    shutil.rmtree(corpus, ignore_errors=True)
    run(sys.executable, ROOT / "benches/make_corpus.py", corpus, "--files", args.files,
        "--seed", 0)
    stamp.write_text(f"{args.files} files\n")
    return corpus


def scale_corpus(entries: int) -> Path:
    """Tiny files, 1,000 a directory, sizes 16-1,024 bytes, deterministic."""
    corpus = WORK / f"scale-n{entries}"
    stamp = Path(f"{corpus}.done")
    if corpus.is_dir() and stamp.exists():
        return corpus
    log(f"generating {entries:,} tiny files into {corpus}")
    shutil.rmtree(corpus, ignore_errors=True)
    rng = random.Random(1)
    payload = rng.randbytes(2048)
    for i in range(entries):
        if i % 1000 == 0:
            directory = corpus / f"{i // 1000 // 1000:03d}" / f"{i // 1000 % 1000:03d}"
            directory.mkdir(parents=True)
        size = 16 + rng.randrange(1009)
        start = rng.randrange(1024)
        fd = os.open(directory / f"{i:09d}.txt", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, i.to_bytes(8, "little") + payload[start:start + size - 8])
        os.close(fd)
    stamp.write_text(f"{entries} files\n")
    return corpus


# --- steps -----------------------------------------------------------------------------------

def step_fold(args, card: Scorecard, corpus: Path) -> None:
    run("bash", ROOT / "benches/fold_vs_tar.sh", "--corpus", corpus, "--runs", args.runs)
    medians = {row["command"]: float(row["median_s"]) for row in read_csv(WORK / "fold_vs_tar.csv")}
    card.ratio("fold, warm source, no compression (s)", medians["sheaf"], "tar -cf",
               medians["tar"], "s", 2.0, higher_is_better=False,
               note=f"tar -cf + fsync {medians['tar+fsync']:.3f} s")
    card.info("fold, against tar -cf + fsync (s)", medians["sheaf"], "s", "tar -cf + fsync",
              medians["tar+fsync"], note="both outputs durable")
    card.info("as many bytes from memory, written and fsynced by dd (s)", medians["floor"], "s",
              note=f"the disk's time for a durable copy of this size, no reading: "
                   f"{medians['tar'] / medians['floor']:.2f}x tar -cf; "
                   f"the fold {medians['floor'] / medians['sheaf']:.2f}x this")
    fold = facts(WORK / "fold_facts.csv")
    files = int(fold["files_folded"]) + int(fold["files_kept"])
    left = int(fold["objects_after"])
    card.bound("objects left after folding (% of files)", 100.0 * left / files, "%", 1.0,
               note=f"{files} files -> {left} objects")
    card.info("fold peak RSS, training corpus", int(fold["peak_rss_kib"]) / 1024, "MiB",
              note=f"{files} files")


def reader_run(args, corpus: Path, label: str, card: Scorecard) -> None:
    run("cargo", "bench", "--bench", "reader_vs_files", "--", "--corpus", corpus, "--runs",
        args.runs, "--threads", args.threads)
    rows = read_csv(WORK / "reader_vs_files.csv")
    shutil.copy(WORK / "reader_vs_files.csv", WORK / f"reader_vs_files-{label}.csv")
    for threads in args.thread_list:
        plain = next(r for r in rows if r["threads"] == str(threads) and "plain" in r["system"])
        sheaf = next(r for r in rows if r["threads"] == str(threads) and "sheaf" in r["system"])
        card.ratio(f"reader API, random, cached, {label}, {threads} thread(s) (files/s)",
                   float(sheaf["files_per_sec"]), "open/read/close",
                   float(plain["files_per_sec"]), "files/s", 3.0)
        floor = next(r for r in rows if r["threads"] == str(threads) and "floor" in r["system"])
        ceiling = float(floor["files_per_sec"]) / float(plain["files_per_sec"])
        card.info(f"reader ceiling, {label}, {threads} thread(s): bytes in hand, the "
                  f"consumer's pass alone (files/s)", float(floor["files_per_sec"]), "files/s",
                  note=f"no reader can exceed {ceiling:.2f}x open/read/close here")


def step_reader(args, card: Scorecard, corpus: Path, scale: Path) -> None:
    reader_run(args, corpus, "training", card)
    reader_run(args, scale, "tiny", card)


def step_mount(args, card: Scorecard, corpus: Path) -> None:
    run("bash", ROOT / "benches/mount_vs_squashfuse.sh", "--corpus", corpus, "--runs",
        args.runs, "--threads", args.threads, "--ratarmount")
    rows = read_csv(WORK / "mount_vs_squashfuse.csv")

    def rate(system, threads, warm):
        passes = [float(r["files_per_sec"]) for r in rows
                  if r["order"] == "shuffled" and r["threads"] == str(threads)
                  and r["system"] == system
                  and (r["pass"].startswith("warm") if warm else r["pass"] == "cold")]
        passes.sort()
        return passes[len(passes) // 2]

    for threads in args.thread_list:
        sheaf_cold = rate("sheaf", threads, False)
        card.ratio(f"mount, random, first pass, {threads} thread(s) (files/s)", sheaf_cold,
                   "squashfuse_ll", rate("squashfuse", threads, False), "files/s", 1.5,
                   note=f"ratarmount {rate('ratarmount', threads, False):,.0f} files/s")
        card.ratio(f"mount, random, second pass, {threads} thread(s) (files/s)",
                   rate("sheaf", threads, True), "plain files", rate("plain", threads, True),
                   "files/s", 0.9,
                   note=f"squashfuse_ll {rate('squashfuse', threads, True):,.0f}, ratarmount "
                        f"{rate('ratarmount', threads, True):,.0f} files/s")
    mount = facts(WORK / "mount_facts.csv")
    card.info("mount time, training corpus", float(mount["sheaf_mount_secs"]), "s",
              "squashfuse_ll", float(mount["squashfuse_mount_secs"]),
              note=f"ratarmount {float(mount['ratarmount_mount_secs']):.3f} s, first mount "
                   f"(index build) {float(mount['ratarmount_first_mount_secs']):.1f} s")
    card.info("mount daemon anonymous RSS after reading all, training corpus",
              int(mount["sheaf_rss_anon_kib"]) / 1024, "MiB")


def python_run(args, corpus: Path, label: str, card: Scorecard) -> None:
    run(sys.executable, ROOT / "benches/python_vs_files.py", "--corpus", corpus, "--runs",
        args.runs, "--threads", args.threads)
    rows = read_csv(WORK / "python_vs_files.csv")
    shutil.copy(WORK / "python_vs_files.csv", WORK / f"python_vs_files-{label}.csv")
    for threads in args.thread_list:
        by = {r["system"]: float(r["median_files_per_s"]) for r in rows
              if r["threads"] == str(threads)}
        best = max(("sheaf", "sheaf-into", "sheaf-view"), key=lambda s: by[s])
        card.ratio(f"Python reader, random, {label}, {threads} thread(s) (files/s)",
                   by["sheaf"], 'open(p, "rb").read()', by["plain"], "files/s", 2.0,
                   note=f"Dataset.read; best of read/readinto/view: {best} "
                        f"{by[best] / by['plain']:.2f}x")
        card.info(f"Python ceiling, {label}, {threads} thread(s): bytes() of bytes in hand "
                  f"(files/s)", by["floor"], "files/s",
                  note=f"no reader returning bytes can exceed {by['floor'] / by['plain']:.2f}x "
                       f"open().read() here")


def step_python(args, card: Scorecard, corpus: Path, scale: Path) -> None:
    python_run(args, corpus, "training", card)
    python_run(args, scale, "tiny", card)


def sheaf_binary() -> Path:
    run("cargo", "build", "--release", "--quiet", "--bin", "sheaf")
    binary = WORK / "bin" / "sheaf-compare"
    binary.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "target/release/sheaf", binary)
    return binary


def timed(*argv) -> float:
    started = time.monotonic()
    run(*argv)
    return time.monotonic() - started


def ensure_debian(package: str, command: str) -> None:
    """Installs a Debian package when its command is missing (the step runs as root)."""
    if shutil.which(command) is None:
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", package,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def step_scale(args, card: Scorecard, scale: Path) -> None:
    ensure_debian("fuse3", "fusermount3")
    sheaf = sheaf_binary()
    out = WORK / "scale-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    entries = args.scale_entries
    # Warm source, as the bar says: every file's inode and bytes read once, untimed.
    run("sh", "-c", f"find {shlex.quote(str(scale))} -type f -print0 | xargs -0 cat > /dev/null")
    tar_times, fold_times = [], []

    def tar_once() -> None:
        tar_times.append(timed("tar", "-cf", out / "scale.tar", "-C", scale, "."))
        (out / "scale.tar").unlink()

    def fold_once() -> dict:
        shutil.rmtree(out / "ds", ignore_errors=True)
        run("sync")
        started = time.monotonic()
        summary = json.loads(run("/usr/bin/time", "-v", "-o", out / "time-v.txt", sheaf, "fold",
                                 "--quiet", "--json", scale, out / "ds", capture=True))
        fold_times.append(time.monotonic() - started)
        return summary

    # Rounds alternate which command goes first (each pays for what the one before left).
    for round_index in range(args.runs):
        if round_index % 2 == 0:
            run("sync")
            tar_once()
            summary = fold_once()
        else:
            summary = fold_once()
            run("sync")
            tar_once()
    peak_kib = next(int(line.split(": ")[1]) for line in (out / "time-v.txt").read_text().splitlines()
                    if "Maximum resident set size" in line)
    card.ratio(f"fold, {entries:,} tiny files (s)", statistics.median(fold_times), "tar -cf",
               statistics.median(tar_times), "s", 2.0, higher_is_better=False,
               note=f"{args.runs} rounds, warm source; fold {', '.join(f'{t:.2f}' for t in fold_times)} s, "
                    f"tar {', '.join(f'{t:.2f}' for t in tar_times)} s")
    card.info(f"fold peak RSS, {entries:,} tiny files", peak_kib / 1024, "MiB",
              note=f"{peak_kib * 1024 / entries:.0f} bytes a file")
    left = summary["containers"] + 1 + summary["files_kept"]
    card.bound(f"objects left, {entries:,} tiny files (% of files)", 100.0 * left / entries, "%",
               1.0, note=f"{entries} files -> {left} objects")

    mnt = out / "mnt"
    mnt.mkdir()
    started = time.monotonic()
    run(sheaf, "mount", out / "ds", mnt)
    mount_secs = time.monotonic() - started
    try:
        pid = int(subprocess.run(["pgrep", "-f", f"{sheaf} mount {out / 'ds'}"], text=True,
                                 stdout=subprocess.PIPE).stdout.split()[0])
        listed = run("find", mnt, "-type", "f", "-printf", "%s\n", capture=True).split()
        if len(listed) != entries:
            sys.exit(f"compare: the mount lists {len(listed)} files, {entries} were folded")
        sample = sorted(random.Random(3).sample(range(entries), min(entries, 20000)))
        for i in sample:
            rel = f"{i // 1000 // 1000:03d}/{i // 1000 % 1000:03d}/{i:09d}.txt"
            if (mnt / rel).read_bytes() != (scale / rel).read_bytes():
                sys.exit(f"compare: {rel} differs through the mount")
        status = Path(f"/proc/{pid}/status").read_text()
        rss_anon = next(int(l.split()[1]) for l in status.splitlines() if l.startswith("RssAnon"))
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])
    card.info(f"mount time, {entries:,} entries", mount_secs, "s")
    card.bound(f"mount anonymous RSS, {entries:,} entries, every file stat-ed", rss_anon / 1024,
               "MiB", 64, note=f"after stat of all {entries:,} and reading 20,000")

    env = dict(os.environ, SHEAF_BENCH_ENTRIES=str(entries))
    run("cargo", "bench", "--bench", "micro", "--", "dataset_open|lookup|read_64B", env=env)
    def median_ns(name):
        path = ROOT / "target/criterion" / f"{name}_{entries}" / "new/estimates.json"
        return json.loads(path.read_text())["median"]["point_estimate"]
    card.bound(f"dataset open, {entries:,} entries (ms)", median_ns("dataset_open") / 1e6,
               "ms", 10.0, note="catalog read and parsed; indexes map on first use")
    card.bound(f"lookup, median, {entries:,} entries (us)", median_ns("lookup") / 1e3, "us",
               2.0, note="indexes mapped")
    card.info(f"open and map every index, {entries:,} entries",
              median_ns("dataset_open_and_map_every_index") / 1e6, "ms")
    shutil.rmtree(out, ignore_errors=True)


def servers_env() -> dict[str, str]:
    env = dict(os.environ)
    for line in (ROOT / "target/test-servers.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            env[key] = value
    return env


def step_remote(args, card: Scorecard) -> None:
    started_servers = subprocess.run(["bash", ROOT / "scripts/servers.sh", "status", "--s3",
                                      "--hdfs"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL).returncode != 0
    if started_servers:
        run("bash", ROOT / "scripts/servers.sh", "start", "--s3", "--hdfs")
    try:
        env = servers_env()
        sheaf = sheaf_binary()
        corpus = WORK / f"corpus-n{args.remote_files}-s0"
        if not Path(f"{corpus}.done").exists():
            shutil.rmtree(corpus, ignore_errors=True)
            run(sys.executable, ROOT / "benches/make_corpus.py", corpus, "--files",
                args.remote_files, "--seed", 0)
            Path(f"{corpus}.done").write_text(f"{args.remote_files} files\n")
        leaf = f"compare-{os.getpid()}-{int(time.time())}"
        for scheme, base in (("s3", f"s3://{env['SHEAF_TEST_S3_BUCKET']}"),
                             ("hdfs", env["SHEAF_TEST_HDFS"])):
            uri = f"{base.rstrip('/')}/{leaf}"
            run(sheaf, "fold", "--quiet", corpus, uri, env=env)
            run("cargo", "bench", "--bench", "remote", "--", "--uri", uri, "--source", corpus,
                "--reads", args.remote_reads, "--runs", args.runs, env=env)
            row = read_csv(WORK / f"remote-{scheme}.csv")[0]
            per_entry = float(row["requests_per_entry"])
            card.bound(f"{scheme.upper()} without a cache: requests per entry read",
                       per_entry, "requests", 1.0,
                       note=f"{row['reads']} random reads; {row['requests_at_open']} at open, "
                            f"{row['index_requests']} for the touched indexes; "
                            f"{float(row['files_per_sec']):.0f} files/s")
            card.ratio(f"preload from {scheme.upper()} (s)", float(row["preload_secs"]),
                       "parallel ranged download", float(row["download_secs"]), "s", 0.9,
                       higher_is_better=False,
                       note=f"{int(row['bytes']) / 2**20:.0f} MiB, {row['jobs']} jobs")
    finally:
        if started_servers:
            subprocess.run(["bash", str(ROOT / "scripts/servers.sh"), "stop"])


def step_memory(args, card: Scorecard) -> None:
    run(sys.executable, ROOT / "benches/larger_than_memory.py", "--files", args.memory_files,
        "--factors", "2,4")
    rows = read_csv(WORK / "larger_than_memory.csv")

    def row(system, factor, epoch):
        return next(r for r in rows if r["system"] == system and r["factor"] == str(factor)
                    and r["epoch"] == str(epoch))

    mib = 2 ** 20
    for factor in (2, 4):
        for epoch in (1, 2):
            plain = row("plain", factor, epoch)
            squash = row("squashfuse", factor, epoch)
            where = f"dataset {factor}x memory, epoch {epoch}"
            for system, label in (("sheaf-mount", "mount"), ("sheaf-python", "Python reader"),
                                  ("sheaf-cached", "Python reader, cache tier")):
                ours = row(system, factor, epoch)
                card.ratio(f"{label}, {where} (files/s)", float(ours["files_per_s"]),
                           'open().read()', float(plain["files_per_s"]), "files/s", 0.9,
                           note=f"squashfuse_ll {float(squash['files_per_s']):,.0f} files/s; "
                                f"page cache {int(ours['page_cache_bytes']) / mib:,.0f} MiB, "
                                f"plain {int(plain['page_cache_bytes']) / mib:,.0f} MiB")
                card.ratio_at_most(f"{label}, {where}: disk bytes read",
                                   int(ours["disk_bytes"]) / mib, "plain files",
                                   int(plain["disk_bytes"]) / mib, "MiB", 1.2,
                                   note=f"squashfuse_ll {int(squash['disk_bytes']) / mib:,.0f} MiB")
        mount = row("sheaf-mount", factor, 2)
        card.bound(f"mount daemon anonymous RSS, dataset {factor}x memory",
                   int(mount["daemon_anon_bytes"]) / mib, "MiB", 8,
                   note=f"file-backed {int(mount['daemon_file_bytes']) / mib:.1f} MiB")


def step_loaders(args, card: Scorecard) -> None:
    run(sys.executable, ROOT / "benches/loaders.py", "--files", args.loader_files, "--tiny",
        args.loader_tiny, "--runs", args.runs)
    rows = read_csv(WORK / "loaders.csv")

    def rate(part, corpus, system, workers="", state=""):
        return next((float(r["per_s"]) for r in rows if r["part"] == part
                     and r["corpus"] == corpus and r["system"] == system
                     and r["workers"] == str(workers) and r["state"] == state), None)

    peers = {"mds": "MDS", "litdata": "LitData", "wds": "WebDataset"}
    corpora = sorted({r["corpus"] for r in rows if r["part"] == "convert"})
    for corpus in corpora:
        fastest = max(peers, key=lambda p: rate("convert", corpus, p) or 0)
        card.ratio(f"conversion, {corpus} corpus (files/s)", rate("convert", corpus, "sheaf"),
                   peers[fastest], rate("convert", corpus, fastest), "files/s", 2.0)
        for workers in (0, 2):
            for state in ("cold", "warm"):
                ours = rate("local", corpus, "sheaf", workers, state)
                random_peers = ("mds", "litdata")
                best = max(random_peers, key=lambda p: rate("local", corpus, p, workers, state))
                where = f"{corpus}, DataLoader {workers} workers, {state}"
                card.ratio(f"random access, {where} (samples/s)", ours, peers[best],
                           rate("local", corpus, best, workers, state), "samples/s", 1.5,
                           note=f"WebDataset in order "
                                f"{rate('local', corpus, 'wds', workers, state):,.0f}/s")
                card.ratio(f"random access vs plain files, {where} (samples/s)", ours,
                           "plain files", rate("local", corpus, "plain", workers, state),
                           "samples/s", 1.0)
    s3 = [r for r in rows if r["part"] == "s3"]
    if s3:
        corpus = s3[0]["corpus"]
        card.ratio(f"first epoch from S3, sheaf mount vs s3fs-fuse, {corpus} (files/s)",
                   rate("s3", corpus, "sheaf-mount", 8), "s3fs", rate("s3", corpus, "s3fs", 8),
                   "files/s", 5.0,
                   note=f"with --cache --fill {rate('s3', corpus, 'sheaf-mount-fill', 8):,.0f}/s; "
                        f"rclone {rate('s3', corpus, 'rclone', 8):,.0f}/s")
        card.info(f"first epoch from S3, sheaf StreamingDataset, {corpus} (files/s)",
                  rate("s3", corpus, "sheaf-stream", 2), "files/s", "MDS",
                  rate("s3", corpus, "mds", 2),
                  note=f"LitData {rate('s3', corpus, 'litdata', 2):,.0f}/s")


def machine() -> str:
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), platform.processor())
    mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE).stdout.strip()
    return (f"Machine: {os.cpu_count()} cores ({cpu}), {mem / 2**20:.0f} GiB, Linux "
            f"{platform.release()}, Python {platform.python_version()}; sheaf commit {commit}; "
            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--files", type=int, default=200_000,
                        help="files in the training corpus (default 200000)")
    parser.add_argument("--corpus", help="a directory to use as the training corpus")
    parser.add_argument("--scale-entries", type=int, default=1_000_000,
                        help="tiny files in the scale corpus (default 1000000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each measure")
    parser.add_argument("--threads", default="1,4", help="reader threads (default 1,4)")
    parser.add_argument("--remote-files", type=int, default=4000,
                        help="files in the corpus folded onto S3 and HDFS (default 4000)")
    parser.add_argument("--remote-reads", type=int, default=200,
                        help="random entries read without a cache from each store")
    parser.add_argument("--memory-files", type=int, default=12_000,
                        help="files in the larger-than-memory corpus (default 12000, 1.1 GiB)")
    parser.add_argument("--loader-files", type=int, default=20_000,
                        help="files in the loaders step's training corpus (default 20000)")
    parser.add_argument("--loader-tiny", type=int, default=1_000_000,
                        help="files in the loaders step's tiny-file corpus (default 1000000)")
    parser.add_argument("--only", default=",".join(STEPS), help="steps to run")
    parser.add_argument("--skip", default="", help="steps to leave out")
    args = parser.parse_args()
    args.thread_list = [int(t) for t in args.threads.split(",")]
    steps = [s for s in args.only.split(",") if s and s not in args.skip.split(",")]
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}; the steps are {', '.join(STEPS)}")
    if os.geteuid() != 0:
        sys.exit("compare: run as root (page-cache drops, FUSE mounts, Debian packages)")
    WORK.mkdir(exist_ok=True)

    card = Scorecard()
    corpus = training_corpus(args) if {"fold", "reader", "mount", "python"} & set(steps) else None
    scale = scale_corpus(args.scale_entries) if {"reader", "python", "scale"} & set(steps) else None
    for step in steps:
        log(f"step {step}")
        if step == "fold":
            step_fold(args, card, corpus)
        elif step == "reader":
            step_reader(args, card, corpus, scale)
        elif step == "mount":
            step_mount(args, card, corpus)
        elif step == "python":
            step_python(args, card, corpus, scale)
        elif step == "scale":
            step_scale(args, card, scale)
        elif step == "remote":
            step_remote(args, card)
        elif step == "memory":
            step_memory(args, card)
        elif step == "loaders":
            step_loaders(args, card)
        card.write(machine())


if __name__ == "__main__":
    main()
