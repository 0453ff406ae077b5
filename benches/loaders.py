#!/usr/bin/env python3
"""sheaf against the data loaders ML teams pick: MosaicML Streaming (MDS), LitData, WebDataset,
plain files with a map-style Dataset, and FUSE mounts of plain files on S3 (s3fs-fuse, rclone).

    sudo python3 benches/loaders.py [--files N] [--tiny N] [--s3-files N] [--runs R]
                                    [--parts convert,local,s3] [--batch B]

Corpora (bench-out/, reused when complete): `training`, N files of 20-180 KB of random bytes
(default 20,000, 1.9 GiB; the generator of benches/larger_than_memory.py), and `tiny`, --tiny
files of 16-1,024 bytes (default 1,000,000; benches/compare.py's scale corpus).

Parts (each system's bytes are checked against the source: every sample's crc32 and length,
computed where the loader hands the sample over, is compared with the manifest's):

  convert  the corpus into each system's format, bytes kept as they are, warm source, each
           with its documented way to use two cores: `sheaf fold`; `MDSWriter` in two
           processes on halves of the files, then `merge_index`; `litdata.optimize` with
           num_workers=2; WebDataset `ShardWriter` in two processes. 64 MiB shards for all
           three peers. Files/s; --runs R rounds, medians.
  local    one shuffled epoch through `torch.utils.data.DataLoader` (batch --batch, default
           64) with num_workers 0 and 2, page cache dropped before (cold) and the epoch after
           (warm): sheaf (`FoldedDataset` + `ShuffledSampler`), the plain files (a map-style
           Dataset of paths, shuffle=True), MDS `StreamingDataset` and LitData
           `StreamingDataset` over their local output (shuffle=True); WebDataset reads its
           shards in order by design (its rate is reported beside). Samples/s.
  s3       the first epoch straight from S3 (moto on loopback), no preload: --s3-files of the
           training corpus, folded with 8 MiB containers (moto serves a ranged GET in time
           proportional to the whole object; S3 does not), uploaded as plain objects, and as
           MDS and LitData shards. Readers: `sheaf mount` (no cache), the Python reader
           (`sheaf.open(uri).read`, no cache) and `sheaf.torch.StreamingDataset` (a cache
           directory, next window fetched ahead), each in its own order, and the mount and
           the reader with an empty cache directory they fill as they read (`--fill`: a
           container missed twice is fetched whole in the background); s3fs-fuse and
           `rclone mount` (Debian's) of the plain objects with open().read() in a random
           order; MDS and LitData streaming from the bucket into an empty local cache. Mounts
           and the Python reader use 8 threads, the loaders 2 DataLoader workers. Files/s.

Needs root (drop_caches, mounts), /dev/fuse, cargo, python3. Installs what it needs: fuse3,
s3fs and rclone from Debian; torch, mosaicml-streaming, litdata and webdataset from PyPI
into bench-out/loaders-venv with the sheaf package. Results: a table on stdout,
bench-out/loaders.csv (one row per measure) and bench-out/loaders-runs.csv (every run).
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
OUT = WORK / "loaders"
VENV = WORK / "loaders-venv"
PEERS = ["torch==2.15.0", "mosaicml-streaming==0.13.0", "litdata==0.2.76", "webdataset==1.0.2"]
SHARD_BYTES = 64 << 20
MOUNTS = ("sheaf-mount", "sheaf-mount-fill", "s3fs", "rclone")
THREADED = MOUNTS + ("sheaf-reader", "sheaf-reader-fill")
SEED = 0

sys.path.insert(0, str(ROOT / "benches"))
import larger_than_memory as ltm  # noqa: E402  (logging, commands, cache drops, the corpus)
from mount_from_origin import wait_mounted  # noqa: E402

log, run, drop_caches = ltm.log, ltm.run, ltm.drop_caches




# =============================================================================================
# Inside the loaders venv: one measurement, printed as a JSON line.
# =============================================================================================

def crc_of(key: str, data: bytes) -> tuple[str, int, int]:
    return key, len(data), zlib.crc32(data)


def as_list(batch):
    return batch


class PlainFiles:
    """What an ImageFolder-style Dataset does per item: open and read one file."""

    def __init__(self, root: str, paths: list[str]):
        self.root, self.paths = root, paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        rel = self.paths[i]
        with open(os.path.join(self.root, rel), "rb") as f:
            return crc_of(rel, f.read())


def sheaf_item(path: str, data: bytes):
    return crc_of(path, data)


def mds_dataset(local: str, remote: str | None, batch: int):
    from streaming import StreamingDataset

    class Checked(StreamingDataset):
        def __getitem__(self, i):
            sample = super().__getitem__(i)
            return crc_of(sample["key"], sample["data"])

    return Checked(local=local, remote=remote, shuffle=True, shuffle_seed=SEED + 1,
                   batch_size=batch)


def litdata_dataset(source: str, cache: str | None):
    import litdata
    from litdata.streaming import downloader

    # LitData's object-store client refuses plain HTTP and has no setting for it: the test
    # server on loopback speaks HTTP (S3 itself would be HTTPS).
    downloader._OBSTORE_CLIENT_OPTIONS = dict(downloader._OBSTORE_CLIENT_OPTIONS or {},
                                              allow_http=True)

    class Checked(litdata.StreamingDataset):
        def __getitem__(self, i):
            sample = super().__getitem__(i)
            return crc_of(sample["key"], sample["data"])

    options = {"cache_dir": cache} if cache else {}
    return Checked(source, shuffle=True, seed=SEED + 1, **options)


def wds_pipeline(shards: list[str]):
    import webdataset as wds
    return wds.WebDataset(shards, shardshuffle=False, empty_check=False).map(
        lambda s: crc_of(s["path.txt"].decode(), s["bin"]))


def loader_for(spec: dict):
    """A DataLoader (or LitData's) over one system, yielding lists of (key, len, crc)."""
    from torch.utils.data import DataLoader
    system, workers, batch = spec["system"], spec["workers"], spec["batch"]
    common = dict(batch_size=batch, num_workers=workers, collate_fn=as_list)
    if system == "sheaf":
        from sheaf.torch import FoldedDataset, ShuffledSampler
        data = FoldedDataset(spec["dataset"], transform=sheaf_item, cache=spec.get("cache"))
        sampler = ShuffledSampler(data, seed=SEED + 1)
        return DataLoader(data, sampler=sampler, **common), sampler
    if system == "sheaf-stream":
        from sheaf.torch import StreamingDataset
        data = StreamingDataset(spec["dataset"], transform=sheaf_item, cache=spec.get("cache"),
                                seed=SEED + 1, batch_size=batch)
        return DataLoader(data, **common), data
    if system == "plain":
        paths = sorted(json.loads(Path(spec["manifest"]).read_text()))
        import torch
        generator = torch.Generator().manual_seed(SEED + 1)
        return DataLoader(PlainFiles(spec["root"], paths), shuffle=True, generator=generator,
                          **common), None
    if system == "mds":
        data = mds_dataset(spec["local"], spec.get("remote"), batch)
        return DataLoader(data, **common), data
    if system == "litdata":
        import litdata
        data = litdata_dataset(spec["source"], spec.get("cache"))
        return litdata.StreamingDataLoader(data, **common), data
    if system == "wds":
        shards = sorted(str(p) for p in Path(spec["root"]).glob("*.tar"))
        return DataLoader(wds_pipeline(shards), **common), None
    raise SystemExit(f"loaders: no system {system}")


def epoch_main(spec: dict) -> None:
    """Epochs of one loader; one JSON line per epoch. The first epoch after the caller
    dropped the page cache; later ones find what the first left."""
    manifest = json.loads(Path(spec["manifest"]).read_text())
    loader, epoch_setter = loader_for(spec)
    for epoch in range(spec["epochs"]):
        if epoch_setter is not None and hasattr(epoch_setter, "set_epoch"):
            epoch_setter.set_epoch(epoch)
        seen = 0
        started = time.perf_counter()
        for batch in loader:
            for rel, size, crc in batch:
                if manifest.get(rel) != [size, crc]:
                    raise SystemExit(f"loaders: {spec['system']} returned wrong bytes for {rel}")
            seen += len(batch)
        seconds = time.perf_counter() - started
        if seen < len(manifest) * 0.98:
            raise SystemExit(f"loaders: {spec['system']} returned {seen} of {len(manifest)}")
        print(json.dumps({"epoch": epoch + 1, "samples": seen, "seconds": seconds,
                          "samples_per_s": seen / seconds}), flush=True)


def threads_main(spec: dict) -> None:
    """Every file once in a seeded random order over threads: `open().read()` under a mount
    root, or the sheaf Python reader. One JSON line."""
    manifest = json.loads(Path(spec["manifest"]).read_text())
    order = sorted(manifest)
    random.Random(SEED + 2).shuffle(order)
    if spec["system"].startswith("sheaf-reader"):
        import sheaf
        cache = spec.get("cache")
        dataset = sheaf.open(spec["dataset"], cache=cache, fill=cache is not None)
        read = dataset.read
    else:
        root = spec["root"]

        def read(rel: str) -> bytes:
            with open(os.path.join(root, rel), "rb") as f:
                return f.read()

    def read_all(paths: list[str]) -> None:
        for rel in paths:
            data = read(rel)
            if [len(data), zlib.crc32(data)] != manifest[rel]:
                raise SystemExit(f"loaders: {spec['system']} returned wrong bytes for {rel}")

    threads = spec["threads"]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(read_all, [order[i::threads] for i in range(threads)]))
    seconds = time.perf_counter() - started
    print(json.dumps({"epoch": 1, "samples": len(order), "seconds": seconds,
                      "samples_per_s": len(order) / seconds}), flush=True)


# --- conversions ---------------------------------------------------------------------------

def halves(names: list[str]) -> list[list[tuple[int, str]]]:
    numbered = list(enumerate(names))
    return [numbered[: len(numbered) // 2], numbered[len(numbered) // 2:]]


def mds_write(out: str, corpus: str, items: list[tuple[int, str]]) -> None:
    from streaming import MDSWriter
    with MDSWriter(out=out, columns={"key": "str", "data": "bytes"}, size_limit=SHARD_BYTES,
                   progress_bar=False) as writer:
        for _, rel in items:
            with open(os.path.join(corpus, rel), "rb") as f:
                writer.write({"key": rel, "data": f.read()})


def wds_write(out: str, corpus: str, part: int, items: list[tuple[int, str]]) -> None:
    import webdataset as wds
    with wds.ShardWriter(os.path.join(out, f"shard-{part}-%06d.tar"), maxsize=SHARD_BYTES,
                         verbose=0) as sink:
        for i, rel in items:
            with open(os.path.join(corpus, rel), "rb") as f:
                sink.write({"__key__": f"{i:09d}", "bin": f.read(), "path.txt": rel.encode()})


def litdata_item(item):
    corpus, rel = item
    with open(os.path.join(corpus, rel), "rb") as f:
        return {"key": rel, "data": f.read()}


def convert_main(spec: dict) -> None:
    """One conversion of the corpus into `out`; one JSON line with its wall time."""
    import multiprocessing
    system, corpus, out = spec["system"], spec["corpus"], spec["out"]
    names = sorted(json.loads(Path(spec["manifest"]).read_text()))
    started = time.perf_counter()
    if system == "mds":
        from streaming.base.util import merge_index
        parts = [os.path.join(out, str(k)) for k in range(2)]
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.starmap(mds_write, [(parts[k], corpus, half) for k, half in
                                     enumerate(halves(names))])
        merge_index([os.path.join(p, "index.json") for p in parts], out, keep_local=True)
    elif system == "wds":
        os.makedirs(out, exist_ok=True)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            pool.starmap(wds_write, [(out, corpus, k, half) for k, half in
                                     enumerate(halves(names))])
    elif system == "litdata":
        import litdata
        litdata.optimize(fn=litdata_item, inputs=[(corpus, rel) for rel in names],
                         output_dir=out, num_workers=2, chunk_bytes=SHARD_BYTES,
                         mode="overwrite")
    else:
        raise SystemExit(f"loaders: no conversion for {system}")
    seconds = time.perf_counter() - started
    print(json.dumps({"files": len(names), "seconds": seconds,
                      "files_per_s": len(names) / seconds}), flush=True)


# =============================================================================================
# The orchestrator (system Python, root).
# =============================================================================================

def ensure_tools() -> None:
    need = [pkg for pkg, cmd in (("fuse3", "fusermount3"), ("s3fs", "s3fs"), ("rclone", "rclone"))
            if shutil.which(cmd) is None]
    if need:
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", *need,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    run("cargo", "build", "--locked", "--release", "--quiet", "--bin", "sheaf", cwd=ROOT)
    if not (VENV / "bin" / "python").exists():
        run(sys.executable, "-m", "venv", VENV)
    pip = [VENV / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run(*pip, *PEERS)
    run(*pip, "--force-reinstall", "--no-deps", ROOT / "python")


def venv_json(mode: str, spec: dict, env=None) -> list[dict]:
    """Runs this script in the venv for one measurement; its JSON lines."""
    out = run(VENV / "bin" / "python", __file__, mode, json.dumps(spec), cwd=OUT, env=env,
              text=True, stdout=subprocess.PIPE).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def manifest_of(corpus: Path) -> Path:
    """{relative path: [size, crc32]} of every file, kept beside the corpus."""
    manifest = Path(f"{corpus}.manifest.json")
    if manifest.exists():
        return manifest
    log(f"listing and checksumming {corpus}")
    entries = {}
    for directory, _, files in os.walk(corpus):
        for name in files:
            full = os.path.join(directory, name)
            with open(full, "rb") as f:
                data = f.read()
            entries[os.path.relpath(full, corpus)] = [len(data), zlib.crc32(data)]
    manifest.write_text(json.dumps(entries))
    return manifest


def corpora(args) -> dict[str, tuple[Path, Path]]:
    import compare
    out = {"training": ltm.make_corpus(args.files, SEED)}
    if args.tiny:
        tiny = compare.scale_corpus(args.tiny)
        out["tiny"] = (tiny, manifest_of(tiny))
    return out


def warm(corpus: Path) -> None:
    """Reads the corpus once so a conversion starts with it in the page cache (through a pipe:
    GNU tar writing to /dev/null itself skips reading the files)."""
    run("sh", "-c", 'tar -cf - -C "$1" . | cat > /dev/null', "warm", corpus)


def convert(name: str, corpus: Path, manifest: Path, runs: int, rows: list[dict]) -> dict:
    """Every system's conversion of one corpus, --runs rounds; the last outputs are kept for
    the reading parts."""
    outputs = {}
    systems = ["sheaf", "mds", "litdata", "wds"]
    for round_index in range(runs):
        turn = round_index % len(systems)
        for system in systems[turn:] + systems[:turn]:
            out = OUT / f"{name}-{system}"
            shutil.rmtree(out, ignore_errors=True)
            warm(corpus)
            if system == "sheaf":
                started = time.perf_counter()
                run(ROOT / "target/release/sheaf", "fold", "--quiet", corpus, out)
                seconds = time.perf_counter() - started
                files = len(json.loads(manifest.read_text()))
                result = {"files": files, "seconds": seconds, "files_per_s": files / seconds}
            else:
                result = venv_json("--convert", {"system": system, "corpus": str(corpus),
                                                 "out": str(out), "manifest": str(manifest)})[0]
            rows.append(dict(result, part="convert", corpus=name, system=system,
                             round=round_index + 1))
            outputs[system] = out
    return outputs


def read_locally(name: str, corpus: Path, manifest: Path, outputs: dict, args,
                 rows: list[dict]) -> None:
    specs = {
        "sheaf": {"dataset": str(outputs["sheaf"])},
        "plain": {"root": str(corpus)},
        "mds": {"local": str(outputs["mds"])},
        "litdata": {"source": str(outputs["litdata"])},
        "wds": {"root": str(outputs["wds"])},
    }
    for workers in (0, 2):
        for system, spec in specs.items():
            drop_caches()
            spec = dict(spec, system=system, workers=workers, batch=args.batch, epochs=2,
                        manifest=str(manifest))
            for result in venv_json("--epochs", spec):
                rows.append(dict(result, part="local", corpus=name, system=system,
                                 workers=workers,
                                 state="cold" if result["epoch"] == 1 else "warm"))


def s3_env() -> dict:
    import compare
    env = compare.servers_env()
    env["S3_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL"]  # MosaicML Streaming's name for it
    return env


def mount(system: str, base: str, mnt: Path, env: dict, cache: Path) -> list[str]:
    """Mounts one system's view of `base` on `mnt`; the command that unmounts it."""
    mnt.mkdir(parents=True, exist_ok=True)
    bucket, _, key = base.removeprefix("s3://").partition("/")
    if system == "sheaf-mount":
        run(ROOT / "target/release/sheaf", "mount", f"{base}/ds", mnt, "--threads", 8, env=env)
    elif system == "sheaf-mount-fill":
        run(ROOT / "target/release/sheaf", "mount", f"{base}/ds", mnt, "--threads", 8,
            "--cache", cache, "--fill", env=env)
    elif system == "s3fs":
        passwd = OUT / "s3fs-passwd"
        passwd.write_text(f"{env['AWS_ACCESS_KEY_ID']}:{env['AWS_SECRET_ACCESS_KEY']}\n")
        passwd.chmod(0o600)
        run("s3fs", f"{bucket}:/{key}/plain", mnt, "-o", f"url={env['AWS_ENDPOINT_URL']}",
            "-o", "use_path_request_style", "-o", f"passwd_file={passwd}", "-o", "ro")
    elif system == "rclone":
        rclone_env = dict(env, RCLONE_CONFIG_MOTO_TYPE="s3", RCLONE_CONFIG_MOTO_PROVIDER="Other",
                          RCLONE_CONFIG_MOTO_ENDPOINT=env["AWS_ENDPOINT_URL"],
                          RCLONE_CONFIG_MOTO_ACCESS_KEY_ID=env["AWS_ACCESS_KEY_ID"],
                          RCLONE_CONFIG_MOTO_SECRET_ACCESS_KEY=env["AWS_SECRET_ACCESS_KEY"],
                          RCLONE_CONFIG_MOTO_FORCE_PATH_STYLE="true")
        # rclone's S3 client cannot take a CA bundle over a plain-HTTP endpoint.
        rclone_env.pop("AWS_CA_BUNDLE", None)
        run("rclone", "mount", f"moto:{bucket}/{key}/plain", mnt, "--daemon", "--read-only",
            env=rclone_env)
    wait_mounted(mnt)
    return ["fusermount3", "-u", str(mnt)]


def upload_main(spec: dict) -> None:
    """The plain files as objects (eight uploads at a time), and the shard trees given."""
    import boto3
    client = boto3.client("s3")
    bucket, _, key = spec["base"].removeprefix("s3://").partition("/")
    corpus = spec["corpus"]
    names = sorted(json.loads(Path(spec["manifest"]).read_text()))

    def put(rel: str) -> None:
        with open(os.path.join(corpus, rel), "rb") as f:
            client.put_object(Bucket=bucket, Key=f"{key}/plain/{rel}", Body=f.read(),
                              ContentType="application/octet-stream")

    def put_tree(local: str, prefix: str) -> None:
        for directory, _, files in os.walk(local):
            for name in files:
                full = os.path.join(directory, name)
                with open(full, "rb") as f:
                    client.put_object(Bucket=bucket,
                                      Key=f"{key}/{prefix}/{os.path.relpath(full, local)}",
                                      Body=f.read(), ContentType="application/octet-stream")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, names))
    for prefix, local in spec.get("trees", {}).items():
        put_tree(local, prefix)
    print(json.dumps({"uploaded": len(names)}))


def read_from_s3(corpus: Path, manifest: Path, args, rows: list[dict]) -> None:
    env = s3_env()
    subset = OUT / f"s3-corpus-{args.s3_files}"
    subset_manifest = Path(f"{subset}.manifest.json")
    if not subset_manifest.exists():
        full = json.loads(manifest.read_text())
        chosen = sorted(full)[: args.s3_files]
        shutil.rmtree(subset, ignore_errors=True)
        for rel in chosen:
            (subset / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(corpus / rel, subset / rel)
        subset_manifest.write_text(json.dumps({rel: full[rel] for rel in chosen}))
    base = f"s3://{env['SHEAF_TEST_S3_BUCKET']}/loaders-{os.getpid()}-{int(time.time())}"
    run(ROOT / "target/release/sheaf", "fold", "--quiet", "--container-size", "8MiB", subset,
        f"{base}/ds", env=env)
    shards = {}
    for system in ("mds", "litdata"):
        local = OUT / f"s3-{system}"
        shutil.rmtree(local, ignore_errors=True)
        venv_json("--convert", {"system": system, "corpus": str(subset), "out": str(local),
                                "manifest": str(subset_manifest)})
        shards[system] = str(local)
    venv_json("--upload", {"corpus": str(subset), "manifest": str(subset_manifest),
                           "base": base, "trees": shards}, env=env)
    mnt = OUT / "mnt"
    for round_index in range(args.runs):
        for system in ("sheaf-mount", "sheaf-mount-fill", "s3fs", "rclone", "sheaf-reader",
                       "sheaf-reader-fill", "sheaf-stream", "mds", "litdata"):
            drop_caches()
            cache = OUT / "s3-cache"
            shutil.rmtree(cache, ignore_errors=True)
            spec = {"system": system, "manifest": str(subset_manifest), "threads": 8,
                    "workers": 2, "batch": args.batch, "epochs": 1}
            unmount = None
            try:
                if system in MOUNTS:
                    unmount = mount(system, base, mnt, env, cache)
                    results = venv_json("--threads", dict(spec, root=str(mnt)), env=env)
                elif system == "sheaf-reader":
                    results = venv_json("--threads", dict(spec, dataset=f"{base}/ds"), env=env)
                elif system == "sheaf-reader-fill":
                    results = venv_json("--threads", dict(spec, dataset=f"{base}/ds",
                                                          cache=str(cache)), env=env)
                elif system == "sheaf-stream":
                    results = venv_json("--epochs", dict(spec, dataset=f"{base}/ds",
                                                         cache=str(cache)), env=env)
                elif system == "mds":
                    results = venv_json("--epochs", dict(spec, local=str(cache),
                                                         remote=f"{base}/mds"), env=env)
                else:
                    results = venv_json("--epochs", dict(spec, source=f"{base}/litdata",
                                                         cache=str(cache)), env=env)
            finally:
                if unmount:
                    subprocess.run(unmount)
            for result in results:
                rows.append(dict(result, part="s3", corpus=f"training-{args.s3_files}",
                                 system=system, round=round_index + 1,
                                 workers=spec["threads"] if system in THREADED else 2))


# --- report --------------------------------------------------------------------------------

def summarise(rows: list[dict]) -> list[dict]:
    """Medians over rounds, one row per (part, corpus, system, workers, state)."""
    keys = []
    for r in rows:
        key = (r["part"], r["corpus"], r["system"], r.get("workers", ""), r.get("state", ""))
        if key not in keys:
            keys.append(key)
    out = []
    for part, corpus, system, workers, state in keys:
        same = [r for r in rows if (r["part"], r["corpus"], r["system"], r.get("workers", ""),
                                    r.get("state", "")) == (part, corpus, system, workers, state)]
        rate = "files_per_s" if part == "convert" else "samples_per_s"
        out.append({"part": part, "corpus": corpus, "system": system, "workers": workers,
                    "state": state, "runs": len(same),
                    "per_s": statistics.median(float(r[rate]) for r in same)})
    return out


def write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def report(summary: list[dict]) -> None:
    print(f"\n{'part':<8} {'corpus':<16} {'system':<13} {'workers':>7} {'state':<5} "
          f"{'per s':>10} {'sheaf / this':>12}")
    for row in summary:
        ours = sheaf_row(summary, row)
        ratio = f"{ours['per_s'] / row['per_s']:.2f}x" if ours and ours is not row else ""
        print(f"{row['part']:<8} {row['corpus']:<16} {row['system']:<13} {row['workers']!s:>7} "
              f"{row['state']:<5} {row['per_s']:>10,.0f} {ratio:>12}")
    print(f"\nwritten {WORK / 'loaders.csv'} and {WORK / 'loaders-runs.csv'}")


def sheaf_row(summary: list[dict], row: dict) -> dict | None:
    """The sheaf figure a row compares with: the fold, sheaf's DataLoader, or the mount."""
    ours = {"convert": "sheaf", "local": "sheaf", "s3": "sheaf-mount"}[row["part"]]
    return next((r for r in summary if r["part"] == row["part"] and r["corpus"] == row["corpus"]
                 and r["system"] == ours and r["state"] == row["state"]
                 and (row["part"] != "local" or r["workers"] == row["workers"])), None)


def main() -> int:
    if len(sys.argv) > 2 and sys.argv[1] in ("--epochs", "--threads", "--convert", "--upload"):
        spec = json.loads(sys.argv[2])
        {"--epochs": epoch_main, "--threads": threads_main, "--convert": convert_main,
         "--upload": upload_main}[sys.argv[1]](spec)
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--files", type=int, default=20_000, help="training corpus files")
    parser.add_argument("--tiny", type=int, default=1_000_000,
                        help="tiny-file corpus files (0 leaves it out)")
    parser.add_argument("--s3-files", type=int, default=2_000,
                        help="files of the training corpus read from S3")
    parser.add_argument("--runs", type=int, default=3, help="rounds of convert and s3, medians")
    parser.add_argument("--batch", type=int, default=64, help="DataLoader batch size")
    parser.add_argument("--parts", default="convert,local,s3", help="parts to run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("loaders: run as root (drop_caches, mounts, Debian packages)")
    parts = [p for p in args.parts.split(",") if p]
    OUT.mkdir(parents=True, exist_ok=True)
    ensure_tools()
    rows: list[dict] = []
    try:
        for name, (corpus, manifest) in corpora(args).items():
            if "convert" in parts or "local" in parts:
                outputs = convert(name, corpus, manifest, args.runs if "convert" in parts else 1,
                                  rows)
            if "local" in parts:
                read_locally(name, corpus, manifest, outputs, args, rows)
            if "s3" in parts and name == "training":
                read_from_s3(corpus, manifest, args, rows)
    finally:
        if rows:
            write_csv(WORK / "loaders-runs.csv", rows)
    summary = summarise(rows)
    write_csv(WORK / "loaders.csv", summary)
    report(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
