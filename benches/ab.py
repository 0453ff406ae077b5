#!/usr/bin/env python3
"""A/B of two builds of sheaf: the micro-benchmarks, the fold and the reader, alternated.

    python3 benches/ab.py OLD NEW [--rounds R] [--corpus DIR] [--skip micro,fold,reader]
                                  [--no-build]

OLD and NEW are git revisions. Each is checked out into its own worktree under bench-out/ab/
and built in release mode against this repository's target directory (so dependencies built
once serve both); the `sheaf` binary and the `micro` and `reader_vs_files` bench executables
are copied to bench-out/ab/<label>/ so a later build cannot swap them. Then R rounds, each
running every measurement once with each build, the order of the builds flipped every round,
so drift of a noisy machine falls on both alike (--no-build measures the executables a
previous run left under bench-out/ab/, so the machine can build something else meanwhile):

  micro   criterion's `dataset_open`, `lookup`, `read_64B_entry_mapped` and
          `container_write` (their medians; short warm-up and measurement times)
  fold    `sheaf fold --quiet CORPUS OUT` wall time, the corpus read once, OUT removed and
          `sync` run first
  reader  `reader_vs_files --corpus CORPUS --runs 1`: the reader's files/s and its ratio to the
          plain files of the same run (the ratio cancels the machine's drift)

Prints each measurement's median per build and NEW/OLD (for times, OLD/NEW, so above 1 means
NEW is faster); writes bench-out/ab.csv with every sample.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench-out" / "ab"
MICRO_FILTER = "^(dataset_open/|lookup/|read_64B_entry_mapped/|container_write/)"
UNITS = {"ps": 1e-12, "ns": 1e-9, "µs": 1e-6, "us": 1e-6, "ms": 1e-3, "s": 1.0}


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


def build(label, rev):
    """Checks REV out and builds it; returns the folder holding its executables."""
    src = OUT / f"src-{label}"
    if src.exists():
        run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(src)])
    run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(src), rev])
    env = dict(os.environ, CARGO_TARGET_DIR=str(REPO / "target"))
    run(["cargo", "build", "--release", "--bin", "sheaf"], cwd=src, env=env)
    shipped = OUT / label
    shipped.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "target" / "release" / "sheaf", shipped / "sheaf")
    built = run(
        ["cargo", "bench", "--no-run", "--message-format=json",
         "--bench", "micro", "--bench", "reader_vs_files"],
        cwd=src, env=env, stdout=subprocess.PIPE,
    ).stdout
    for line in built.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable"):
            name = message["target"]["name"]
            if name in ("micro", "reader_vs_files"):
                shutil.copy2(message["executable"], shipped / name)
    return shipped


def parse_criterion(text):
    """Criterion's report: a name, then `time: [low median high]` on that line or the next."""
    medians, name = {}, None
    for line in text.splitlines():
        if "time:" in line:
            before = line.split("time:")[0].strip()
            name = before or name
            values = re.findall(r"([\d.]+)\s*(ps|ns|µs|us|ms|s)\b", line.split("time:")[1])
            if name and len(values) == 3:
                medians[name] = float(values[1][0]) * UNITS[values[1][1]]
        elif line.strip() and not line.startswith(" "):
            name = line.strip().split()[0]
    return medians


def measure_micro(bin_dir):
    text = run(
        [str(bin_dir / "micro"), "--bench", MICRO_FILTER,
         "--warm-up-time", "1", "--measurement-time", "3", "--noplot"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    ).stdout
    return {f"micro {k} (s)": v for k, v in parse_criterion(text).items()}


def warm(corpus):
    """Reads every file of the corpus, so each fold starts with it in the page cache (the
    other measurements' datasets may have pushed it out)."""
    for path in sorted(corpus.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(1 << 20):
                    pass


def measure_fold(bin_dir, corpus):
    out = OUT / "fold-out"
    shutil.rmtree(out, ignore_errors=True)
    warm(corpus)
    run(["sync"])
    started = time.monotonic()
    run([str(bin_dir / "sheaf"), "fold", "--quiet", str(corpus), str(out)])
    elapsed = time.monotonic() - started
    shutil.rmtree(out, ignore_errors=True)
    return {"fold wall (s)": elapsed}


def measure_reader(bin_dir, corpus):
    run([str(bin_dir / "reader_vs_files"), "--corpus", str(corpus), "--runs", "1"],
        cwd=REPO, stdout=subprocess.DEVNULL)
    rows = (REPO / "bench-out" / "reader_vs_files.csv").read_text().splitlines()[1:]
    found = {}
    for row in rows:
        threads, system, _secs, rate, ratio = row.split(",")
        if system.startswith("sheaf"):
            found[f"reader {threads}t files/s"] = float(rate)
            found[f"reader {threads}t ratio to plain"] = float(ratio)
    return found


def summarize(samples):
    """Prints medians and NEW against OLD; higher is better unless the name ends in (s)."""
    names = sorted({name for label in samples for run_ in samples[label] for name in run_})
    print(f"{'measurement':<44} {'old':>12} {'new':>12} {'new vs old':>11}")
    for name in names:
        old = statistics.median(r[name] for r in samples["old"] if name in r)
        new = statistics.median(r[name] for r in samples["new"] if name in r)
        better = old / new if name.endswith("(s)") else new / old
        print(f"{name:<44} {old:>12.4g} {new:>12.4g} {better:>10.3f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=REPO / "bench-out" / "corpus-n20000-s0")
    parser.add_argument("--skip", default="", help="comma-separated: micro,fold,reader")
    parser.add_argument("--no-build", action="store_true",
                        help="measure the executables already under bench-out/ab/")
    args = parser.parse_args()
    if not args.corpus.is_dir():
        sys.exit(f"{args.corpus}: no such corpus (python3 benches/make_corpus.py makes one)")
    skip = set(filter(None, args.skip.split(",")))
    OUT.mkdir(parents=True, exist_ok=True)
    if args.no_build:
        bins = {"old": OUT / "old", "new": OUT / "new"}
    else:
        bins = {"old": build("old", args.old), "new": build("new", args.new)}
    steps = [
        ("micro", lambda b: measure_micro(b)),
        ("fold", lambda b: measure_fold(b, args.corpus)),
        ("reader", lambda b: measure_reader(b, args.corpus)),
    ]
    samples = {"old": [], "new": []}
    with open(REPO / "bench-out" / "ab.csv", "w") as csv:
        csv.write("round,build,measurement,value\n")
        for round_ in range(args.rounds):
            order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
            for step, measure in steps:
                if step in skip:
                    continue
                for label in order:
                    found = measure(bins[label])
                    samples[label].append(found)
                    for name, value in found.items():
                        csv.write(f"{round_},{label},{name},{value}\n")
                    csv.flush()
            print(f"round {round_ + 1}/{args.rounds} done", flush=True)
    print(f"old = {args.old}, new = {args.new}, {args.rounds} rounds, corpus {args.corpus}")
    summarize(samples)


if __name__ == "__main__":
    main()
