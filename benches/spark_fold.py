#!/usr/bin/env python3
"""The Spark fold against one machine's fold, source and destination on the MiniDFSCluster.

    python3 benches/spark_fold.py [--files 10000] [--runs 3]

Needs the test servers (`bash scripts/servers.sh start`; started and stopped here when they are
not running). The release build of the package goes into bench-out/venv with PySpark, pyarrow
and pandas (python/requirements-spark.txt); this script then re-runs itself there.

The corpus is bench-out/corpus-nN-s0 (benches/make_corpus.py: the training-shaped tree of
benches/compare.py), copied once onto HDFS with Hadoop's own client. Each round, in a rotated
order, folds it from HDFS into a fresh HDFS directory with:

  machine-1   `sheaf fold SRC DST -j 1` (one worker thread)
  machine-2   `sheaf fold SRC DST -j 2`
  spark-1     `sheaf.spark.fold` on local[1] (one executor core; a task folds with one thread)
  spark-2     `sheaf.spark.fold` on local[2]

Spark's session is started before the timing (its start-up is not the fold's). Reports files/s
(medians), the Spark fold's scaling from one core to two, and each Spark fold against one
machine at equal cores, plus the per-task rates the scale model in BENCHMARKS.md uses; writes
bench-out/spark_fold.csv.

Then the planning alone (where the parts are cut), each way the planner can learn the tree:

  driver      `folding.plan` listing the whole tree from the driver
  tasks       the driver lists the top levels, Spark tasks (local[2]) list the ranges
  manifest    a `hdfs dfs -ls -R`-style dump of the tree, sampled by the driver (no listing)

reporting seconds and entries/s (medians).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import python_vs_files  # noqa: E402  (the bench venv)
from python_vs_files import log, run  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench-out"
SYSTEMS = ("machine-1", "machine-2", "spark-1", "spark-2")


def ensure_environment() -> None:
    """Re-executes this script in bench-out/venv with the release package and PySpark."""
    python_vs_files.ensure_environment(__file__, (ROOT / "python/requirements-spark.txt",))


def servers_env() -> dict[str, str]:
    for line in (ROOT / "target/test-servers.env").read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            os.environ[key] = value
    return dict(os.environ)


def corpus(files: int) -> Path:
    tree = WORK / f"corpus-n{files}-s0"
    if not Path(f"{tree}.done").exists():
        subprocess.run(["rm", "-rf", str(tree)], check=True)
        run(sys.executable, ROOT / "benches/make_corpus.py", tree, "--files", files, "--seed", 0)
        Path(f"{tree}.done").write_text(f"{files} files\n")
    return tree


def spark_session(cores: int):
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    session = (SparkSession.builder.master(f"local[{cores}]").appName(f"sheaf-bench-{cores}")
               .config("spark.ui.enabled", "false").getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session


def upload(spark, local: Path, uri: str) -> None:
    """Copies the tree to `uri` with Hadoop's own client, 32 files at a time (closing an HDFS
    file waits for the DataNode's report, so one at a time is a few files a second)."""
    from concurrent.futures import ThreadPoolExecutor

    jvm = spark._jvm
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI(uri),
                                                 spark._jsc.hadoopConfiguration())
    done = jvm.org.apache.hadoop.fs.Path(f"{uri}.done")
    if fs.exists(done):
        return
    log(f"copying {local} to {uri} (Hadoop's client)")
    files = [Path(d) / name for d, _, names in os.walk(local) for name in names]

    def put(path: Path) -> None:
        out = fs.create(jvm.org.apache.hadoop.fs.Path(f"{uri}/{path.relative_to(local)}"), True)
        out.write(bytearray(path.read_bytes()))
        out.close()

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, files))
    fs.create(done, True).close()


def count_files(local: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(local))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ensure_environment()
    started_servers = subprocess.run(
        ["bash", str(ROOT / "scripts/servers.sh"), "status", "--hdfs"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode != 0
    if started_servers:
        run("bash", ROOT / "scripts/servers.sh", "start", "--hdfs")
    try:
        measure(args)
    finally:
        if started_servers:
            subprocess.run(["bash", str(ROOT / "scripts/servers.sh"), "stop"])


def measure(args) -> None:
    import sheaf.spark

    env = servers_env()
    sheaf_bin = ROOT / "target/release/sheaf"
    tree = corpus(args.files)
    files = count_files(tree)
    base = env["SHEAF_TEST_HDFS"].rstrip("/")
    raw = f"{base}/bench/raw-n{args.files}"
    sessions: dict[int, object] = {}

    def session(cores: int):
        if cores not in sessions:
            for other in list(sessions.values()):
                other.stop()
            sessions.clear()
            sessions[cores] = spark_session(cores)
        return sessions[cores]

    upload(session(2), tree, raw)
    seconds: dict[str, list[float]] = {s: [] for s in SYSTEMS}
    task_rates: list[float] = []
    for round_ in range(args.runs):
        order = SYSTEMS[round_ % len(SYSTEMS):] + SYSTEMS[:round_ % len(SYSTEMS)]
        for system in order:
            dst = f"{base}/bench/out-{os.getpid()}-{round_}-{system}"
            kind, cores = system.split("-")
            if kind == "machine":
                started = time.monotonic()
                run(sheaf_bin, "fold", "--quiet", "-j", cores, raw, dst, env=env)
                took = time.monotonic() - started
            else:
                spark = session(int(cores))
                started = time.monotonic()
                result = sheaf.spark.fold(spark, raw, dst)
                took = time.monotonic() - started
                assert result.files == files, (result.files, files)
                for part in result.part_summaries:
                    task_rates.append((part["files_folded"] + part["files_kept"])
                                      / max(part["elapsed_secs"], 1e-9))
            seconds[system].append(took)
            log(f"round {round_ + 1}: {system}: {took:.2f} s ({files / took:,.0f} files/s)")
    for s in sessions.values():
        s.stop()
    median = {s: statistics.median(v) for s, v in seconds.items()}
    rate = {s: files / median[s] for s in SYSTEMS}
    print(f"\n{files:,} files from HDFS to HDFS (MiniDFSCluster), medians of {args.runs}")
    print(f"{'system':<10} {'seconds':>8} {'files/s':>9}")
    for s in SYSTEMS:
        print(f"{s:<10} {median[s]:>8.2f} {rate[s]:>9,.0f}")
    print(f"spark 2 cores / 1 core: {rate['spark-2'] / rate['spark-1']:.2f}x (goal >= 1.6x)")
    for cores in ("1", "2"):
        ratio = rate[f"spark-{cores}"] / rate[f"machine-{cores}"]
        print(f"spark vs one machine at {cores} core(s): {ratio:.2f}x (goal >= 0.90x)")
    print(f"per task: median {statistics.median(task_rates):,.0f} files/s over "
          f"{len(task_rates)} tasks")
    out = WORK / "spark_fold.csv"
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["system", "files", "median_secs", "files_per_sec", "runs"])
        for s in SYSTEMS:
            writer.writerow([s, files, f"{median[s]:.3f}", f"{rate[s]:.1f}",
                             " ".join(f"{x:.3f}" for x in seconds[s])])
        writer.writerow(["spark-task", "", "", f"{statistics.median(task_rates):.1f}",
                         len(task_rates)])
    print(f"written {out}")
    measure_planning(args, tree, raw, base)


def ls_r_dump(local: Path, shown_as: str, out: Path) -> None:
    """A `hdfs dfs -ls -R`-style listing of the tree at `local`, its paths under `shown_as`."""
    with out.open("w") as f:
        for d, dirs, names in os.walk(local):
            for name in sorted(dirs):
                rel = (Path(d) / name).relative_to(local).as_posix()
                f.write(f"drwxr-xr-x   - hdfs supergroup          0 2026-12-07 10:00 "
                        f"{shown_as}/{rel}\n")
            for name in sorted(names):
                path = Path(d) / name
                rel = path.relative_to(local).as_posix()
                f.write(f"-rw-r--r--   3 hdfs supergroup {path.stat().st_size:>10} "
                        f"2026-12-07 10:00 {shown_as}/{rel}\n")


def measure_planning(args, tree: Path, raw: str, base: str) -> None:
    import sheaf.spark
    from sheaf import folding, manifest

    partitions = 4
    dump = WORK / f"ls-R-n{args.files}.txt"
    ls_r_dump(tree, raw, dump)
    spark = spark_session(2)
    ways = ("driver", "tasks", "manifest")
    seconds: dict[str, list[float]] = {w: [] for w in ways}
    entries = 0
    for round_ in range(args.runs):
        for way in ways:
            dst = f"{base}/bench/plan-{os.getpid()}-{round_}-{way}"
            started = time.monotonic()
            known: dict = {}
            if way == "tasks":
                known["surveys"] = sheaf.spark._survey_in_tasks(spark, raw, partitions, "4MiB",
                                                                False)
            elif way == "manifest":
                known["sample"] = manifest.sample(dump, raw, limit=64 * partitions)
            plan = folding.plan(raw, dst, partitions=partitions, **known)
            seconds[way].append(time.monotonic() - started)
            entries = max(entries, plan["entries"])
            log(f"round {round_ + 1}: plan by {way}: {seconds[way][-1]:.2f} s, "
                f"{len(plan['parts'])} parts")
    spark.stop()
    print(f"\nplanning {entries:,} entries on HDFS into {partitions} parts, medians of "
          f"{args.runs}")
    for way in ways:
        median = statistics.median(seconds[way])
        print(f"{way:<10} {median:>8.2f} s {entries / median:>10,.0f} entries/s")


if __name__ == "__main__":
    main()
