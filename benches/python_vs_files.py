#!/usr/bin/env python3
"""Reading every file of a tree in random order from Python: the sheaf reader against
`open(p, "rb").read()` on the plain files, side by side in one run.

    python3 benches/python_vs_files.py [--files N] [--seed S] [--runs R] [--threads 1,4]
                                       [--corpus DIR]

Steps: builds the release CLI and installs the Python package (release native library) into
bench-out/venv, then re-runs itself there; generates the corpus with benches/make_corpus.py into
bench-out/corpus-nN-sS/ (reused when complete) or takes --corpus DIR; folds it into
bench-out/python-fold-<name>/ with `sheaf fold`; reads everything once through each side
(warm page cache and warm mappings); checks that both sides return the same bytes for every
file (SHA-256 over everything read, untimed); then R rounds, each timing one pass per
system and thread count over the same shuffled order:

    plain         open(p, "rb").read() on the source files
    sheaf         Dataset.read(p)
    sheaf-into    Dataset.readinto(p, buf) into a reused buffer (no allocation per file)
    sheaf-view    Dataset.view(p): a read-only memoryview of the checked bytes, no copy
    floor         bytes(v) of a view found before timing: making the new bytes object
                  alone, which bounds what any reader returning `bytes` can gain over plain

Results: a table of median files/s and ratios (sheaf / plain, > 1 means sheaf is faster) on
stdout and in bench-out/python_vs_files.csv, every run in bench-out/python_vs_files_runs.csv.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import hashlib
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench-out"
VENV = WORK / "venv"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def run(*command, **kwargs) -> None:
    subprocess.run([str(c) for c in command], check=True, **kwargs)


def ensure_environment(script: str = __file__, requirements: tuple = ()) -> None:
    """Re-executes `script` in bench-out/venv, with the package freshly built in release (and
    the pip requirement files given installed first)."""
    if os.environ.get("SHEAF_BENCH_IN_VENV") == "1":
        return
    log("cargo build --release --bin sheaf")
    run("cargo", "build", "--locked", "--release", "--bin", "sheaf", cwd=ROOT)
    if not (VENV / "bin" / "python").exists():
        run(sys.executable, "-m", "venv", VENV)
    pip = [VENV / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for requirement in requirements:
        run(*pip, "-r", requirement)
    log("pip install ./python (release native library)")
    run(*pip, "--force-reinstall", "--no-deps", ROOT / "python")
    env = dict(os.environ, SHEAF_BENCH_IN_VENV="1")
    os.execve(str(VENV / "bin" / "python"), [str(VENV / "bin" / "python"), script, *sys.argv[1:]], env)


def corpus_for(args) -> Path:
    if args.corpus:
        return Path(args.corpus).resolve()
    corpus = WORK / f"corpus-n{args.files}-s{args.seed}"
    stamp = Path(f"{corpus}.done")
    generator_hash = hashlib.sha256((ROOT / "benches/make_corpus.py").read_bytes()).hexdigest()[:16]
    if corpus.is_dir() and stamp.exists() and stamp.read_text().splitlines()[0] == generator_hash:
        log(f"reusing corpus {corpus}")
        return corpus
    log(f"generating corpus: {args.files} files, seed {args.seed}")
    run("rm", "-rf", corpus, stamp)
    run(sys.executable, ROOT / "benches/make_corpus.py", corpus, "--files", args.files, "--seed", args.seed)
    stamp.write_text(f"{generator_hash}\n{args.files} files\n")
    return corpus


def folded_for(corpus: Path) -> Path:
    dataset = WORK / f"python-fold-{corpus.name}"
    sheaf_bin = ROOT / "target/release/sheaf"
    if not (dataset / ".sheaf/generations").is_dir():
        log(f"sheaf fold {corpus} {dataset}")
        run("rm", "-rf", dataset)
        run(sheaf_bin, "fold", "--quiet", corpus, dataset)
    return dataset


def list_files(corpus: Path) -> list[str]:
    paths = []
    for dirpath, _, names in os.walk(corpus):
        for name in names:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full) and not os.path.islink(full):
                paths.append(os.path.relpath(full, corpus))
    return sorted(paths)


def pass_plain(corpus: Path, paths: list[str]) -> int:
    total = 0
    for p in paths:
        with open(os.path.join(corpus, p), "rb") as f:
            total += len(f.read())
    return total


def pass_sheaf(ds, paths: list[str]) -> int:
    read = ds.read
    return sum(len(read(p)) for p in paths)


def pass_sheaf_view(ds, paths: list[str]) -> int:
    view = ds.view
    total = 0
    for p in paths:
        with view(p) as v:  # checked bytes, no copy; released at once, as a consumer would
            total += v.nbytes
    return total


def pass_sheaf_into(ds, paths: list[str]) -> int:
    buffer = bytearray(8 << 20)
    readinto = ds.readinto
    return sum(readinto(p, buffer) for p in paths)


def pass_floor(in_hand: dict, paths: list[str]) -> int:
    return sum(len(bytes(in_hand[p])) for p in paths)


def timed(pass_fn, paths: list[str], threads: int) -> tuple[float, int]:
    """Seconds for one pass over `paths`, split into `threads` interleaved slices."""
    started = time.perf_counter()
    if threads == 1:
        total = pass_fn(paths)
    else:
        with concurrent.futures.ThreadPoolExecutor(threads) as pool:
            total = sum(pool.map(pass_fn, [paths[i::threads] for i in range(threads)]))
    return time.perf_counter() - started, total


def check_same_bytes(ds, corpus: Path, paths: list[str]) -> str:
    plain, folded = hashlib.sha256(), hashlib.sha256()
    for p in paths:
        with open(os.path.join(corpus, p), "rb") as f:
            plain.update(f.read())
        folded.update(ds.read(p))
    if plain.digest() != folded.digest():
        sys.exit("python_vs_files: the sheaf reader and the plain files returned different bytes")
    return plain.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", default="1,4")
    parser.add_argument("--corpus")
    args = parser.parse_args()
    WORK.mkdir(exist_ok=True)
    ensure_environment()
    import sheaf

    corpus = corpus_for(args)
    dataset = folded_for(corpus)
    paths = list_files(corpus)
    random.Random(args.seed).shuffle(paths)
    thread_counts = [int(t) for t in args.threads.split(",")]
    ds = sheaf.open(dataset)
    systems = {
        "plain": lambda ps: pass_plain(corpus, ps),
        "sheaf": lambda ps: pass_sheaf(ds, ps),
        "sheaf-into": lambda ps: pass_sheaf_into(ds, ps),
        "sheaf-view": lambda ps: pass_sheaf_view(ds, ps),
        "floor": lambda ps: pass_floor(in_hand, ps),
    }
    in_hand = {p: ds.view(p) for p in paths}
    log(f"{len(paths)} files; checking both sides return the same bytes")
    digest = check_same_bytes(ds, corpus, paths)
    for fn in systems.values():  # warm-up round, untimed
        timed(fn, paths, 1)
    rows = []
    for run_index in range(args.runs):
        for threads in thread_counts:
            for name, fn in systems.items():
                seconds, total = timed(fn, paths, threads)
                rows.append((run_index, name, threads, seconds, len(paths) / seconds, total))
        log(f"round {run_index + 1}/{args.runs} done")

    with open(WORK / "python_vs_files_runs.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "system", "threads", "seconds", "files_per_s", "bytes"])
        writer.writerows(rows)
    summary = []
    for threads in thread_counts:
        medians = {
            name: statistics.median(r[4] for r in rows if r[1] == name and r[2] == threads)
            for name in systems
        }
        for name, rate in medians.items():
            summary.append((name, threads, rate, rate / medians["plain"]))
    with open(WORK / "python_vs_files.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["system", "threads", "median_files_per_s", "over_plain"])
        writer.writerows(summary)
    total_bytes = rows[0][5]
    print(f"\n{len(paths)} files, {total_bytes / 2**30:.2f} GiB, random order, warm, "
          f"{args.runs} runs; sha256 of everything read {digest[:16]}")
    print(f"python {platform.python_version()}, sheaf {sheaf.__version__}, {os.cpu_count()} cpus\n")
    print(f"{'system':<12} {'threads':>7} {'files/s':>10} {'vs plain':>9}")
    for name, threads, rate, ratio in summary:
        print(f"{name:<12} {threads:>7} {rate:>10.0f} {ratio:>8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
