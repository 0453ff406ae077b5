#!/usr/bin/env python3
"""Generations side by side: appending 1 % new files to a large dataset against refolding it
and against tar's --append, and compacting a dataset of several generations against folding
the same bytes.

    python3 benches/generations.py [--entries 1000000] [--add 10000] [--runs 3] [--skip ...]

Steps (the release binary is built and copied first, so a rebuild cannot swap it):

  append   The tiny-file corpus of benches/compare.py (ENTRIES files of 16-1,024 bytes, 1,000
           a directory; made once under bench-out/) is folded; ADD more tiny files in a new
           directory are then, each round: appended (`sheaf fold ADD DATASET --append --prefix
           new`, the generation and its containers removed again afterwards, untimed); the
           whole tree refolded (`sheaf fold` of the corpus with the new directory in it:
           hard links, made once); and appended to a tar of the corpus (`tar --append`, on a
           fresh copy of the tar each round). `sync` before every timed command.
  compact  The training-shaped corpus of benches/compare.py (bench-out/corpus-n20000-s0) is
           folded one top-level directory at a time (`train`, then `val` and `test` appended:
           three generations), then `sheaf compact` is timed against `sheaf fold` of the whole
           corpus, each round on fresh copies.

Prints medians and ratios; writes bench-out/generations.csv.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (the corpora and the build of the binary)

WORK = compare.WORK / "generations"


def sh(*argv, capture=False) -> str:
    result = subprocess.run([str(a) for a in argv], text=True,
                            stdout=subprocess.PIPE if capture else subprocess.DEVNULL)
    if result.returncode != 0:
        sys.exit(f"generations: failed ({result.returncode}): {' '.join(map(str, argv))}")
    return result.stdout if capture else ""


def timed(*argv) -> float:
    sh("sync")
    started = time.monotonic()
    sh(*argv)
    return time.monotonic() - started


def added_tree(root: Path, count: int) -> Path:
    """`count` tiny files under root/new/NNN/, like the corpus's."""
    done = Path(f"{root}.done")
    if root.is_dir() and done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    payload = os.urandom(2048)
    for i in range(count):
        directory = root / f"{i // 1000:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        size = 16 + (i * 7919) % 1009
        (directory / f"{i:09d}.txt").write_bytes(i.to_bytes(8, "little") + payload[:size - 8])
    done.write_text(f"{count}\n")
    return root


def combined_tree(corpus: Path, added: Path, root: Path) -> Path:
    """The corpus with the added files under new/, by hard links (made once)."""
    done = Path(f"{root}.done")
    if root.is_dir() and done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    sh("cp", "-al", corpus, root)
    sh("cp", "-al", added, root / "new")
    done.write_text("ok\n")
    return root


def new_files(before: set, dataset: Path) -> list:
    sheaf_dir = dataset / ".sheaf"
    now = {p for p in sheaf_dir.rglob("*") if p.is_file()}
    return sorted(now - before)


def step_append(args, sheaf: Path, rows: list) -> None:
    corpus = compare.scale_corpus(args.entries)
    added = added_tree(WORK / f"added-n{args.add}", args.add)
    combined = combined_tree(corpus, added, WORK / f"combined-n{args.entries}-{args.add}")
    dataset = WORK / "append-dataset"
    if not (dataset / ".sheaf").is_dir():
        shutil.rmtree(dataset, ignore_errors=True)
        sh(sheaf, "fold", "--quiet", corpus, dataset)
    base = {p for p in (dataset / ".sheaf").rglob("*") if p.is_file()}
    tar_base = WORK / "base.tar"
    if not tar_base.exists():
        sh("tar", "-cf", tar_base, "-C", corpus, ".")
    refold = WORK / "refold"
    tar_copy = WORK / "appended.tar"
    times = {"sheaf fold --append": [], "sheaf fold (whole tree again)": [], "tar --append": []}
    for round_ in range(args.runs):
        times["sheaf fold --append"].append(timed(
            sheaf, "fold", "--quiet", added, dataset, "--append", "--prefix", "new"))
        for leftover in new_files(base, dataset):
            leftover.unlink()
        shutil.rmtree(refold, ignore_errors=True)
        times["sheaf fold (whole tree again)"].append(timed(
            sheaf, "fold", "--quiet", combined, refold))
        shutil.copy(tar_base, tar_copy)
        times["tar --append"].append(timed(
            "tar", "--append", "-f", tar_copy, "-C", added.parent, added.name))
        print(f"append round {round_ + 1}/{args.runs} done", flush=True)
    shutil.rmtree(refold, ignore_errors=True)
    tar_copy.unlink(missing_ok=True)
    append = statistics.median(times["sheaf fold --append"])
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(("append", name, median, append / median))


def step_compact(args, sheaf: Path, rows: list) -> None:
    corpus = compare.WORK / "corpus-n20000-s0"
    if not corpus.is_dir():
        sys.exit(f"{corpus}: run benches/compare.py --only fold once to make it")
    staged = WORK / "compact-staged"
    if not (staged / ".sheaf").is_dir():
        shutil.rmtree(staged, ignore_errors=True)
        sh(sheaf, "fold", "--quiet", corpus / "train", staged)
        for part in ("val", "test"):
            sh(sheaf, "fold", "--quiet", corpus / part, staged, "--append", "--prefix", part)
    work = WORK / "compact-run"
    folded = WORK / "fold-run"
    times = {"sheaf compact (3 generations)": [], "sheaf fold (the same bytes)": []}
    for round_ in range(args.runs):
        shutil.rmtree(work, ignore_errors=True)
        sh("cp", "-a", staged, work)
        times["sheaf compact (3 generations)"].append(timed(sheaf, "compact", "--quiet", work))
        shutil.rmtree(folded, ignore_errors=True)
        times["sheaf fold (the same bytes)"].append(timed(sheaf, "fold", "--quiet", corpus, folded))
        print(f"compact round {round_ + 1}/{args.runs} done", flush=True)
    check = sh(sheaf, "verify", work, capture=True)
    if "all good" not in check:
        sys.exit(f"the compacted dataset does not verify:\n{check}")
    size = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())
    compact = statistics.median(times["sheaf compact (3 generations)"])
    for name, values in times.items():
        median = statistics.median(values)
        rows.append(("compact", name, median, compact / median, size / median / 2**20))
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(folded, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--add", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated: append,compact")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    WORK.mkdir(parents=True, exist_ok=True)
    sheaf = compare.sheaf_binary()
    rows: list = []
    if "append" not in skip:
        step_append(args, sheaf, rows)
    if "compact" not in skip:
        step_compact(args, sheaf, rows)
    with open(compare.WORK / "generations.csv", "w") as out:
        out.write("step,command,median_s,sheaf_over_this,mib_per_s\n")
        for row in rows:
            mib = f"{row[4]:.0f}" if len(row) > 4 else ""
            out.write(f"{row[0]},{row[1]},{row[2]:.3f},{row[3]:.4f},{mib}\n")
    print(f"{'step':<8} {'command':<34} {'median s':>10} {'sheaf / this':>13}")
    for row in rows:
        print(f"{row[0]:<8} {row[1]:<34} {row[2]:>10.3f} {row[3]:>12.3f}x")


if __name__ == "__main__":
    main()
