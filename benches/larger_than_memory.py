#!/usr/bin/env python3
"""Reading a dataset larger than memory: every reader inside a memory cgroup smaller than the
dataset, page cache included, side by side in one run.

    sudo python3 benches/larger_than_memory.py [--files N] [--factors 2,4] [--seed S] [--runs R]
                                               [--systems plain,squashfuse,...] [--threads T]
                                               [--steps]

The corpus (bench-out/ltm-corpus-nN-sS/) is N files (default 12,000) of 20-180 KB of random
bytes in N/100 directories, about 1.1 GiB for the default. It is folded with `sheaf fold`
(defaults) and packed with `mksquashfs` (uncompressed, like the fold's default). For each
factor F the cgroup's memory limit is the dataset's size / F; for each system the page cache is
dropped, a fresh memory cgroup made (cgroup v1 `memory.limit_in_bytes`, or v2 `memory.max`:
both charge the page cache), the FUSE daemon (for a mount) and then the reader started inside
it, and every file read once in a seeded random order (epoch 1) and again in another (epoch 2):

    plain            open(p, "rb").read() of the plain files
    squashfuse       open(p, "rb").read() through squashfuse_ll over the squashfs image
    sheaf-mount      open(p, "rb").read() through `sheaf mount` of the folded dataset
    sheaf-python     sheaf.open(DATASET).read(p)
    sheaf-cached     sheaf.open(DATASET, cache=DIR).read(p), the dataset preloaded into DIR
                     (the SSD cache tier's path; DIR on the same disk)

Per epoch: files/s (the time of the reads alone; each file's length and CRC-32 are checked
against the source's after its read, untimed), bytes the disk read (/proc/diskstats of the
device holding bench-out/), the cgroup's page cache at the end of the epoch, and for the mounts
the daemon's anonymous and file-backed resident memory at the end. --threads T reads with T
threads (default 1). --runs R (default 3) repeats everything R times, the systems in a
rotated order each round (a virtual disk's latency drifts over minutes), and reports medians.
--steps times the steps of each `open(p, "rb").read()` of the plain files and the mounts apart
(`os.open`, the `isatty` check Python's `open()` makes, the reads to the end) and reports their
medians per file in microseconds: through FUSE they are the LOOKUP, IOCTL and READ round trips.

Needs root (cgroups, drop_caches, mounts), /dev/fuse, cargo, python3, and the Debian packages
squashfs-tools, squashfuse and fuse3 (installed when missing). Results: a table on stdout and
bench-out/larger_than_memory.csv (one row per factor, system and epoch: medians), every round
in bench-out/larger_than_memory_runs.csv.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench-out"
OUT = WORK / "ltm"
VENV = WORK / "venv"
SYSTEMS = ("plain", "squashfuse", "sheaf-mount", "sheaf-python", "sheaf-cached")
MOUNTS = ("squashfuse", "sheaf-mount")
FILE_MIN, FILE_MAX = 20_000, 180_000
FILES_PER_DIR = 100


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    argv = [str(c) for c in command]
    log(" ".join(argv))
    return subprocess.run(argv, check=True, **kwargs)


# --- the reader, run inside the cgroup -------------------------------------------------------

def reader_main(argv: list[str]) -> int:
    """`--reader MODE ROOT MANIFEST CGROUP_STAT DEVICE SEED THREADS [CACHE]`: reads every file of
    the manifest twice, in two seeded random orders, and prints one JSON line per epoch."""
    mode, root, manifest_path, cgroup_stat, device, seed, threads, *rest = argv
    threads = int(threads)
    manifest = json.loads(Path(manifest_path).read_text())
    read = opener(mode, root, rest[0] if rest else None)
    for epoch in (1, 2):
        order = list(manifest)
        random.Random(int(seed) * 10 + epoch).shuffle(order)
        disk_before = disk_read_bytes(device)
        started = time.perf_counter()
        if threads == 1:
            busy = read_all(read, order, manifest)
        else:
            with concurrent.futures.ThreadPoolExecutor(threads) as pool:
                slices = [order[i::threads] for i in range(threads)]
                busy = max(pool.map(lambda s: read_all(read, s, manifest), slices))
        wall = time.perf_counter() - started
        steps = {step: statistics.median(times) * 1e6 for step, times in STEPS.items()}
        STEPS.clear()
        print(json.dumps({
            "steps_us": steps,
            "epoch": epoch,
            "files": len(order),
            "seconds": busy,
            "wall_seconds": wall,
            "disk_bytes": disk_read_bytes(device) - disk_before,
            "page_cache_bytes": page_cache_bytes(cgroup_stat),
        }), flush=True)
    return 0


STEPS: dict[str, list[float]] = {}


def read_file_in_steps(path: str) -> bytes:
    """`open(path, "rb").read()` done as its system calls, each timed into STEPS."""
    times = [time.perf_counter()]
    fd = os.open(path, os.O_RDONLY)
    try:
        times.append(time.perf_counter())
        os.isatty(fd)
        times.append(time.perf_counter())
        chunks = []
        while chunk := os.read(fd, 1 << 22):
            chunks.append(chunk)
        times.append(time.perf_counter())
    finally:
        os.close(fd)
    for step, (start, end) in zip(("open", "isatty", "read"), zip(times, times[1:])):
        STEPS.setdefault(step, []).append(end - start)
    return b"".join(chunks)


def opener(mode: str, root: str, cache: str | None):
    """A function from a relative path to its bytes, for one system."""
    if mode == "files-steps":
        return lambda rel: read_file_in_steps(os.path.join(root, rel))
    if mode == "files":
        def read_file(rel: str) -> bytes:
            with open(os.path.join(root, rel), "rb") as f:
                return f.read()
        return read_file
    import sheaf
    dataset = sheaf.open(root, cache=cache) if cache else sheaf.open(root)
    return dataset.read


def read_all(read, paths: list[str], manifest: dict) -> float:
    """Reads `paths` in order; returns the seconds spent in the reads alone. Each file is
    checked against the manifest after its read (untimed): a wrong byte fails the benchmark."""
    busy = 0.0
    for rel in paths:
        started = time.perf_counter()
        data = read(rel)
        busy += time.perf_counter() - started
        size, crc = manifest[rel]
        if len(data) != size or zlib.crc32(data) != crc:
            sys.exit(f"larger_than_memory: {rel} came back wrong ({len(data)} bytes)")
    return busy


def disk_read_bytes(device: str) -> int:
    """Bytes read so far by the block device `device` (major:minor)."""
    major, minor = device.split(":")
    with open("/proc/diskstats") as f:
        for line in f:
            fields = line.split()
            if fields[0] == major and fields[1] == minor:
                return int(fields[5]) * 512
    raise SystemExit(f"larger_than_memory: device {device} is not in /proc/diskstats")


def page_cache_bytes(stat_file: str) -> int:
    """The cgroup's page cache: `cache` in cgroup v1's memory.stat, `file` in v2's."""
    with open(stat_file) as f:
        for line in f:
            key, value = line.split()
            if key in ("cache", "file"):
                return int(value)
    return 0


# --- set-up ------------------------------------------------------------------------------------

def ensure_tools() -> None:
    need = [pkg for pkg, cmd in (("squashfs-tools", "mksquashfs"), ("squashfuse", "squashfuse_ll"),
                                 ("fuse3", "fusermount3")) if shutil.which(cmd) is None]
    if need:
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", *need,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    run("cargo", "build", "--locked", "--release", "--quiet", "--bin", "sheaf", cwd=ROOT)
    if not (VENV / "bin" / "python").exists():
        run(sys.executable, "-m", "venv", VENV)
    run(VENV / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
        "--force-reinstall", "--no-deps", ROOT / "python")


def make_corpus(files: int, seed: int) -> tuple[Path, Path]:
    """The corpus and its manifest ({path: [size, crc32]}), reused when complete."""
    corpus = WORK / f"ltm-corpus-n{files}-s{seed}"
    manifest = Path(f"{corpus}.manifest.json")
    if corpus.is_dir() and manifest.exists():
        return corpus, manifest
    log(f"generating {files:,} files of {FILE_MIN:,}-{FILE_MAX:,} bytes into {corpus}")
    shutil.rmtree(corpus, ignore_errors=True)
    rng = random.Random(seed)
    entries = {}
    for i in range(files):
        directory = f"d{i // FILES_PER_DIR:04d}"
        if i % FILES_PER_DIR == 0:
            (corpus / directory).mkdir(parents=True)
        rel = f"{directory}/f{i:07d}.bin"
        data = rng.randbytes(rng.randint(FILE_MIN, FILE_MAX))
        (corpus / rel).write_bytes(data)
        entries[rel] = [len(data), zlib.crc32(data)]
    run("sync")
    manifest.write_text(json.dumps(entries))
    return corpus, manifest


def fold_and_pack(corpus: Path) -> tuple[Path, Path, Path]:
    """The folded dataset (folded afresh, so it is this build's), the squashfs image and a
    cache directory the dataset is preloaded into."""
    sheaf = ROOT / "target/release/sheaf"
    dataset, image, cache = OUT / "ds", OUT / "image.sqfs", OUT / "cache"
    shutil.rmtree(dataset, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    run(sheaf, "fold", "--quiet", corpus, dataset)
    run(sheaf, "preload", "--quiet", dataset, "--cache", cache)
    stamp = Path(f"{image}.from")
    if not (image.exists() and stamp.exists() and stamp.read_text() == str(corpus)):
        image.unlink(missing_ok=True)
        run("mksquashfs", corpus, image, "-noI", "-noD", "-noF", "-noX", "-quiet",
            "-no-progress")
        stamp.write_text(str(corpus))
    run("sync")
    return dataset, image, cache


def tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


# --- cgroups -----------------------------------------------------------------------------------

class Cgroup:
    """A fresh memory cgroup with a limit that charges the page cache too."""

    def __init__(self, name: str, limit: int) -> None:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        base = Path("/sys/fs/cgroup") if v2 else Path("/sys/fs/cgroup/memory")
        if not base.is_dir():
            sys.exit("larger_than_memory: no memory cgroup controller at /sys/fs/cgroup")
        self.path = base / name
        self.path.mkdir()
        if v2:
            (self.path / "memory.max").write_text(str(limit))
            (self.path / "memory.swap.max").write_text("0")
        else:
            (self.path / "memory.limit_in_bytes").write_text(str(limit))
        self.stat = self.path / "memory.stat"

    def command(self, *argv) -> list[str]:
        """`argv` run inside this cgroup (and what it forks stays there)."""
        enter = f'echo $$ > {self.path / "cgroup.procs"} && exec "$@"'
        return ["sh", "-c", enter, "sh", *[str(a) for a in argv]]

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def remove(self) -> None:
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)
        log(f"could not remove {self.path}")


def drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def resident(pid: int) -> tuple[int, int]:
    """Anonymous and file-backed resident bytes of a process."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) * 1024
    return fields.get("RssAnon", 0), fields.get("RssFile", 0)


# --- one system --------------------------------------------------------------------------------

def measure(system: str, factor: int, limit: int, args, paths: dict) -> list[dict]:
    """Both epochs of one system inside a fresh cgroup limited to `limit` bytes."""
    mnt = OUT / "mnt"
    mnt.mkdir(exist_ok=True)
    drop_caches()
    group = Cgroup(f"sheaf-ltm-{os.getpid()}-{system}-{factor}", limit)
    mounted = False
    try:
        if system == "squashfuse":
            subprocess.run(group.command("squashfuse_ll", paths["image"], mnt), check=True)
            mounted = True
        elif system == "sheaf-mount":
            subprocess.run(group.command(ROOT / "target/release/sheaf", "mount", paths["dataset"],
                                         mnt), check=True)
            mounted = True
        drop_caches()
        mode, root, cache = {
            "plain": ("files", paths["corpus"], None),
            "squashfuse": ("files", mnt, None),
            "sheaf-mount": ("files", mnt, None),
            "sheaf-python": ("sheaf", paths["dataset"], None),
            "sheaf-cached": ("sheaf", paths["dataset"], paths["cache"]),
        }[system]
        if mode == "files" and args.steps:
            mode = "files-steps"
        reader = [VENV / "bin" / "python", __file__, "--reader", mode, root, paths["manifest"],
                  group.stat, paths["device"], args.seed, args.threads]
        if cache:
            reader.append(cache)
        log(f"{system}, limit {limit / 2**20:.0f} MiB (dataset / {factor})")
        out = subprocess.run(group.command(*reader), check=True, text=True,
                             stdout=subprocess.PIPE).stdout
        epochs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        anon = file_backed = 0
        if mounted:
            for pid in group.pids():
                a, f = resident(pid)
                anon, file_backed = anon + a, file_backed + f
        for epoch in epochs:
            epoch.update(system=system, factor=factor, limit_bytes=limit, threads=args.threads,
                         files_per_s=epoch["files"] / epoch["seconds"],
                         daemon_anon_bytes=anon, daemon_file_bytes=file_backed)
        return epochs
    finally:
        if mounted:
            subprocess.run(["fusermount3", "-u", str(mnt)])
        for _ in range(50):
            if not group.pids():
                break
            time.sleep(0.1)
        group.remove()


MEASURES = ("seconds", "wall_seconds", "files_per_s", "disk_bytes", "page_cache_bytes",
            "daemon_anon_bytes", "daemon_file_bytes")


def medians(runs: list[dict]) -> list[dict]:
    """One row per factor, system and epoch (in the order first run), each measure the median
    of the rounds."""
    keys = list(dict.fromkeys((r["factor"], r["system"], r["epoch"]) for r in runs))
    rows = []
    for factor, system, epoch in sorted(keys, key=lambda k: (k[0], SYSTEMS.index(k[1]), k[2])):
        same = [r for r in runs if (r["factor"], r["system"], r["epoch"]) == (factor, system, epoch)]
        row = dict(same[0])
        for measure in MEASURES:
            row[measure] = statistics.median(r[measure] for r in same)
        row["steps_us"] = {step: statistics.median(r["steps_us"][step] for r in same)
                           for step in same[0]["steps_us"]}
        row["rounds"] = len(same)
        rows.append(row)
    return rows


def write_runs(runs: list[dict]) -> None:
    fields = ["round", "factor", "system", "epoch", *MEASURES]
    with open(WORK / "larger_than_memory_runs.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(runs)


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose --help is the script's docstring: its first paragraph, then the rest."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=doc.split("\n", 2)[2])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        return reader_main(sys.argv[2:])
    parser = argument_parser(__doc__)
    parser.add_argument("--files", type=int, default=12_000, help="files in the corpus")
    parser.add_argument("--seed", type=int, default=0, help="corpus and order seed")
    parser.add_argument("--factors", default="2,4",
                        help="dataset size / memory limit, one run per factor (default 2,4)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="systems to run")
    parser.add_argument("--threads", type=int, default=1, help="reader threads (default 1)")
    parser.add_argument("--runs", type=int, default=3,
                        help="rounds, medians reported (default 3)")
    parser.add_argument("--steps", action="store_true",
                        help="time open, isatty and read apart (plain files and mounts)")
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown systems {unknown}; the systems are {', '.join(SYSTEMS)}")
    if os.geteuid() != 0:
        sys.exit("larger_than_memory: run as root (cgroups, drop_caches, mounts)")
    OUT.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    corpus, manifest = make_corpus(args.files, args.seed)
    dataset, image, cache = fold_and_pack(corpus)
    st = os.stat(WORK)
    paths = {"corpus": corpus, "manifest": manifest, "dataset": dataset, "image": image,
             "cache": cache, "device": f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"}
    size = tree_bytes(corpus)
    runs = []
    for round_index in range(args.runs):
        order = systems[round_index % len(systems):] + systems[:round_index % len(systems)]
        for factor in [int(f) for f in args.factors.split(",")]:
            for system in order:
                for row in measure(system, factor, size // factor, args, paths):
                    runs.append(dict(row, round=round_index))
    rows = medians(runs)
    write_runs(runs)

    fields = ["factor", "limit_bytes", "system", "threads", "epoch", "rounds", "files", "seconds",
              "wall_seconds", "files_per_s", "disk_bytes", "page_cache_bytes",
              "daemon_anon_bytes", "daemon_file_bytes"]
    with open(WORK / "larger_than_memory.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in fields})
    print(f"\n{args.files:,} files, {size / 2**30:.2f} GiB; {args.threads} reader thread(s); "
          f"medians of {args.runs} rounds")
    print(f"{'factor':>6} {'system':<13} {'epoch':>5} {'files/s':>9} {'vs plain':>8} "
          f"{'disk MiB':>9} {'vs plain':>8} {'cache MiB':>9} {'anon MiB':>8} {'file MiB':>8}")
    for row in rows:
        plain = next((r for r in rows if r["system"] == "plain" and r["factor"] == row["factor"]
                      and r["epoch"] == row["epoch"]), None)
        speed = f"{row['files_per_s'] / plain['files_per_s']:.2f}x" if plain else ""
        disk = (f"{row['disk_bytes'] / plain['disk_bytes']:.2f}x"
                if plain and plain["disk_bytes"] else "")
        print(f"{row['factor']:>6} {row['system']:<13} {row['epoch']:>5} "
              f"{row['files_per_s']:>9,.0f} {speed:>8} {row['disk_bytes'] / 2**20:>9,.0f} "
              f"{disk:>8} {row['page_cache_bytes'] / 2**20:>9,.0f} "
              f"{row['daemon_anon_bytes'] / 2**20:>8.1f} {row['daemon_file_bytes'] / 2**20:>8.1f}")
    stepped = [row for row in rows if row["steps_us"]]
    if stepped:
        print(f"\nmedian microseconds per file, by step")
        print(f"{'factor':>6} {'system':<13} {'epoch':>5} {'open':>7} {'isatty':>7} {'read':>7}")
        for row in stepped:
            steps = row["steps_us"]
            print(f"{row['factor']:>6} {row['system']:<13} {row['epoch']:>5} "
                  f"{steps['open']:>7.1f} {steps['isatty']:>7.1f} {steps['read']:>7.1f}")
    print(f"\nwritten {WORK / 'larger_than_memory.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
