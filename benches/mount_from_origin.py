#!/usr/bin/env python3
"""A first epoch straight from the origin: `sheaf mount` of a dataset on S3 (moto) or HDFS
(MiniDFSCluster) without a cache, against the plain files in the same store.

    sudo python3 benches/mount_from_origin.py [--files N] [--threads 1,8] [--runs R]
                                              [--stores s3,hdfs] [--container-size SIZE]

The corpus is N files (default 2,000) of 20-180 KB of random bytes (the generator of
benches/larger_than_memory.py), folded into STORE/origin-<id>/ds with `sheaf fold` and uploaded
file by file to STORE/origin-<id>/plain. Systems, each reading every file once in a seeded
random order split over T threads (the first epoch: a fresh mount, caches dropped):

    sheaf-mount   open(p, "rb").read() through `sheaf mount STORE/.../ds` (no --cache)
    client        the plain objects fetched whole with the store's client (the Rust clients
                  sheaf itself uses: object_store for S3, hdfs-native for HDFS), one request a
                  file: cargo bench --bench origin_plain
    s3fs          open(p, "rb").read() through s3fs-fuse (Debian's s3fs) of the bucket, plain
                  files (S3 only)

files/s counts the reads alone; every file read is checked against the source (untimed).
--container-size is passed to the fold (default: the fold's, 1 GiB). moto serves a ranged GET
in time proportional to the whole object (about 330 ms for 100 KB of a 190 MB container on the
benchmark machine, against 4 ms for a whole 100 KB object), where S3 and HDFS serve the range
alone; with moto, small containers (8MiB) show what the mount costs rather than what moto does.
--runs R (default 3) rounds, the systems rotated each round; medians. The test servers are
started with scripts/servers.sh when they are not running (and stopped again).

Needs root (mounts, drop_caches), /dev/fuse, cargo, python3; installs fuse3 and s3fs from
Debian when missing. Results: a table on stdout and bench-out/mount_from_origin.csv.
"""

from __future__ import annotations

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
OUT = WORK / "origin"
sys.path.insert(0, str(ROOT / "benches"))
import compare  # noqa: E402  (the test servers' settings)
import larger_than_memory as ltm  # noqa: E402  (the corpus generator and helpers)


log, run, drop_caches = ltm.log, ltm.run, ltm.drop_caches


# --- the reader of a mount ---------------------------------------------------------------------

def reader_main(argv: list[str]) -> int:
    """`--reader ROOT MANIFEST SEED THREADS`: every file of the manifest once, in a seeded
    random order over THREADS threads; prints one JSON line."""
    root, manifest_path, seed, threads = argv
    threads = int(threads)
    manifest = json.loads(Path(manifest_path).read_text())
    order = list(manifest)
    random.Random(int(seed)).shuffle(order)

    def read_all(paths: list[str]) -> float:
        busy = 0.0
        for rel in paths:
            started = time.perf_counter()
            with open(os.path.join(root, rel), "rb") as f:
                data = f.read()
            busy += time.perf_counter() - started
            size, crc = manifest[rel]
            if len(data) != size or zlib.crc32(data) != crc:
                sys.exit(f"mount_from_origin: {rel} came back wrong ({len(data)} bytes)")
        return busy

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        busy = max(pool.map(read_all, [order[i::threads] for i in range(threads)]))
    wall = time.perf_counter() - started
    print(json.dumps({"files": len(order), "seconds": busy, "wall_seconds": wall,
                      "files_per_s": len(order) / busy}))
    return 0


# --- set-up ------------------------------------------------------------------------------------

def servers_env(started: list[bool]) -> dict[str, str]:
    status = subprocess.run(["bash", ROOT / "scripts/servers.sh", "status", "--s3", "--hdfs"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if status.returncode != 0:
        run("bash", ROOT / "scripts/servers.sh", "start", "--s3", "--hdfs")
        started.append(True)
    return compare.servers_env()


def ensure_tools() -> None:
    need = [pkg for pkg, cmd in (("fuse3", "fusermount3"), ("s3fs", "s3fs"))
            if shutil.which(cmd) is None]
    if need:
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", *need,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    run("cargo", "build", "--locked", "--release", "--quiet", "--bin", "sheaf", cwd=ROOT)
    global PLAIN_CLIENT
    PLAIN_CLIENT = built_bench("origin_plain")


PLAIN_CLIENT = None


def built_bench(name: str) -> str:
    """Builds a bench target once and returns its executable, so that later runs cannot
    rebuild it (a source edit during a long run would otherwise recompile between rounds)."""
    out = run("cargo", "bench", "--locked", "--no-run", "--quiet", "--message-format=json",
              "--bench", name, cwd=ROOT, text=True, stdout=subprocess.PIPE).stdout
    for line in out.splitlines():
        message = json.loads(line)
        if message.get("target", {}).get("name") == name and message.get("executable"):
            return message["executable"]
    sys.exit(f"mount_from_origin: cargo built no executable for bench {name}")


def plain_client(env, *args) -> dict:
    out = run(PLAIN_CLIENT, *args, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("{")))


def wait_mounted(mnt: Path) -> None:
    deadline = time.monotonic() + 60
    while not os.path.ismount(mnt):
        if time.monotonic() > deadline:
            sys.exit(f"mount_from_origin: nothing mounted on {mnt} after 60 s")
        time.sleep(0.1)


# --- one measurement ---------------------------------------------------------------------------

def read_mount(mnt: Path, manifest: Path, seed: int, threads: int, prefix: str = "") -> dict:
    out = run(sys.executable, __file__, "--reader", mnt / prefix, manifest, seed, threads,
              text=True, stdout=subprocess.PIPE).stdout
    return json.loads(out.splitlines()[-1])


def measure(system: str, store: str, uri: str, threads: int, seed: int, env, paths) -> dict:
    mnt = OUT / "mnt"
    mnt.mkdir(parents=True, exist_ok=True)
    drop_caches()
    if system == "client":
        return plain_client(env, "read", "--uri", f"{uri}/plain", "--source", paths["corpus"],
                            "--threads", threads, "--seed", seed)
    if system == "sheaf-mount":
        run(ROOT / "target/release/sheaf", "mount", f"{uri}/ds", mnt, "--threads",
            max(8, threads), env=env)
        prefix = ""
    else:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        run("s3fs", bucket, mnt, "-o", f"url={env['AWS_ENDPOINT_URL']}", "-o",
            "use_path_request_style", "-o", f"passwd_file={paths['s3fs_passwd']}", "-o", "ro")
        prefix = f"{key}/plain"
    try:
        wait_mounted(mnt)
        drop_caches()
        return read_mount(mnt, paths["manifest"], seed, threads, prefix)
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)])


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        return reader_main(sys.argv[2:])
    parser = ltm.argument_parser(__doc__)
    parser.add_argument("--files", type=int, default=2000, help="files in the corpus")
    parser.add_argument("--threads", default="1,8", help="reader threads (default 1,8)")
    parser.add_argument("--runs", type=int, default=3, help="rounds, medians (default 3)")
    parser.add_argument("--stores", default="s3,hdfs", help="stores (default s3,hdfs)")
    parser.add_argument("--container-size", help="passed to sheaf fold (default its own)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("mount_from_origin: run as root (mounts, drop_caches)")
    OUT.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    started: list[bool] = []
    env = servers_env(started)
    try:
        corpus, manifest = ltm.make_corpus(args.files, 0)
        passwd = OUT / "s3fs-passwd"
        passwd.write_text(f"{env['AWS_ACCESS_KEY_ID']}:{env['AWS_SECRET_ACCESS_KEY']}\n")
        passwd.chmod(0o600)
        paths = {"corpus": corpus, "manifest": manifest, "s3fs_passwd": passwd}
        leaf = f"origin-{os.getpid()}-{int(time.time())}"
        bases = {"s3": f"s3://{env['SHEAF_TEST_S3_BUCKET']}/{leaf}",
                 "hdfs": f"{env['SHEAF_TEST_HDFS'].rstrip('/')}/{leaf}"}
        stores = [s for s in args.stores.split(",") if s]
        for store in stores:
            sizing = ["--container-size", args.container_size] if args.container_size else []
            run(ROOT / "target/release/sheaf", "fold", "--quiet", *sizing, corpus,
                f"{bases[store]}/ds", env=env)
            plain_client(env, "upload", "--uri", f"{bases[store]}/plain", "--source", corpus)
        runs = []
        for round_index in range(args.runs):
            for store in stores:
                systems = ["sheaf-mount", "client"] + (["s3fs"] if store == "s3" else [])
                turn = round_index % len(systems)
                for system in systems[turn:] + systems[:turn]:
                    for threads in [int(t) for t in args.threads.split(",")]:
                        result = measure(system, store, bases[store], threads, round_index + 1,
                                         env, paths)
                        runs.append(dict(result, store=store, system=system, threads=threads))
    finally:
        if started:
            subprocess.run(["bash", str(ROOT / "scripts/servers.sh"), "stop"])
    report(runs, args)
    return 0


def report(runs: list[dict], args) -> None:
    keys = list(dict.fromkeys((r["store"], r["system"], r["threads"]) for r in runs))
    rows = []
    for store, system, threads in keys:
        same = [r for r in runs if (r["store"], r["system"], r["threads"]) == (store, system, threads)]
        rows.append({"store": store, "system": system, "threads": threads, "rounds": len(same),
                     "files": same[0]["files"],
                     "files_per_s": statistics.median(r["files_per_s"] for r in same)})
    with open(WORK / "mount_from_origin.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    sizing = f"containers of {args.container_size}" if args.container_size else "default containers"
    print(f"\n{args.files:,} files of 20-180 KB, {sizing}, first epoch, medians of {args.runs} "
          f"rounds")
    print(f"{'store':<5} {'system':<12} {'threads':>7} {'files/s':>9} {'vs client':>9} "
          f"{'vs s3fs':>8}")
    for row in rows:
        def ratio(peer):
            other = next((r for r in rows if r["store"] == row["store"] and r["system"] == peer
                          and r["threads"] == row["threads"]), None)
            return f"{row['files_per_s'] / other['files_per_s']:.2f}x" if other else ""
        print(f"{row['store']:<5} {row['system']:<12} {row['threads']:>7} "
              f"{row['files_per_s']:>9,.0f} {ratio('client'):>9} {ratio('s3fs'):>8}")
    print(f"\nwritten {WORK / 'mount_from_origin.csv'}")


if __name__ == "__main__":
    sys.exit(main())
