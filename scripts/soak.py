#!/usr/bin/env python3
"""A long run of readers while the cache tier and the origin fail under them.

    sudo python3 scripts/soak.py [--minutes 30] [--files 3000] [--readers 8] [--seed S]

A dataset of random files (1 KB to 200 KB) is folded into 4 MiB containers on the test S3
server (moto, started by scripts/servers.sh) and preloaded into a cache directory. Then, for
--minutes, two readers run side by side, each with --readers threads reading random files and
checking every byte against the source's CRC-32: `sheaf mount` of the dataset with the cache
(files read with `open().read()`), and the Python package (`sheaf.open(uri, cache=..., fill=True)`).
Both reach S3 through a TCP proxy of this script's. Meanwhile, every few seconds, one fault:

    truncate    a cached container cut to a random length
    delete      a cached container removed
    flip        one byte of a cached container changed
    unreadable  the cache's containers directory moved away for 5 s, then back
    origin      the proxy refuses and drops every connection for 10 s

Every minute the mount daemon's and the Python reader's anonymous resident memory is sampled.
Reads that fail while both a cached copy and the origin are unavailable are counted as errors;
a read that returns wrong bytes, a reader or daemon that dies, or anonymous memory that keeps
growing (the last sample above twice the one taken a minute in, plus 16 MiB) fails the run
(exit status 1).
Results: a summary on stdout and bench-out/soak.json.

Needs root (the mount), /dev/fuse, fuse3, cargo, and the test servers' set-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench-out"
OUT = WORK / "soak"
VENV = WORK / "venv"
SHEAF = ROOT / "target/release/sheaf"


def log(message: str) -> None:
    print(f"==> {message}", file=sys.stderr, flush=True)


def run(*command, **kwargs) -> subprocess.CompletedProcess:
    argv = [str(c) for c in command]
    log(" ".join(argv))
    return subprocess.run(argv, check=True, **kwargs)


# --- the readers, each run as a process of its own ----------------------------------------------

def reader_main(argv: list[str]) -> int:
    """`--reader KIND ROOT MANIFEST THREADS SECONDS [CACHE]`: reads random files until the time
    is up, prints a JSON line of counts every 10 s and at the end."""
    kind, root, manifest_path, threads, seconds, *rest = argv
    manifest = json.loads(Path(manifest_path).read_text())
    paths = sorted(manifest)
    if kind == "mount":
        def read(rel: str) -> bytes:
            with open(os.path.join(root, rel), "rb") as f:
                return f.read()
    else:
        import sheaf
        dataset = sheaf.open(root, cache=rest[0], fill=True)
        read = dataset.read
    counts = {"reads": 0, "errors": 0, "wrong": 0}
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + float(seconds)

    def work(seed: int) -> None:
        rng = random.Random(seed)
        while time.monotonic() < stop_at:
            rel = rng.choice(paths)
            size, crc = manifest[rel]
            try:
                data = read(rel)
            except Exception as e:  # noqa: BLE001 - every failure is counted by its kind
                with lock:
                    counts["errors"] += 1
                    key = f"{type(e).__name__}: {str(e)[:80]}"
                    errors[key] = errors.get(key, 0) + 1
                time.sleep(0.05)
                continue
            wrong = len(data) != size or zlib.crc32(data) != crc
            with lock:
                counts["reads"] += 1
                counts["wrong"] += int(wrong)
            if wrong:
                print(json.dumps({"wrong_bytes": rel, "len": len(data)}), flush=True)

    workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(int(threads))]
    for worker in workers:
        worker.start()
    while any(w.is_alive() for w in workers):
        time.sleep(min(10.0, max(1.0, stop_at - time.monotonic() + 0.5)))
        with lock:
            print(json.dumps(dict(counts, errors_by_kind=errors)), flush=True)
    return 0


# --- the proxy in front of S3 -------------------------------------------------------------------

class Proxy:
    """A TCP proxy to `target` that can be told to refuse and drop every connection."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.down = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if self.down.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self.lock:
                self.open.discard(source)

    def go_down(self) -> None:
        self.down.set()
        with self.lock:
            for s in list(self.open):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def come_back(self) -> None:
        self.down.clear()


# --- set-up -------------------------------------------------------------------------------------

def servers_env() -> dict[str, str]:
    run("bash", ROOT / "scripts/servers.sh", "start", "--s3")
    env = {}
    for line in (ROOT / "target/test-servers.env").read_text().splitlines():
        key, _, value = line.partition("=")
        if key and not key.startswith("#"):
            env[key] = value
    return env


def ensure_tools() -> None:
    run("cargo", "build", "--locked", "--release", "--quiet", "--bin", "sheaf", cwd=ROOT)
    if not (VENV / "bin" / "python").exists():
        run(sys.executable, "-m", "venv", VENV)
    run(VENV / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
        "--force-reinstall", "--no-deps", ROOT / "python")


def make_corpus(files: int, seed: int) -> tuple[Path, Path]:
    corpus = WORK / f"soak-corpus-n{files}-s{seed}"
    manifest = Path(f"{corpus}.manifest.json")
    if corpus.is_dir() and manifest.exists():
        return corpus, manifest
    shutil.rmtree(corpus, ignore_errors=True)
    rng = random.Random(seed)
    entries = {}
    for i in range(files):
        rel = f"d{i // 100:03d}/f{i:06d}.bin"
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(1_000, 200_000))
        (corpus / rel).write_bytes(data)
        entries[rel] = [len(data), zlib.crc32(data)]
    manifest.write_text(json.dumps(entries))
    return corpus, manifest


def anon_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


# --- faults -------------------------------------------------------------------------------------

def cached_files(cache: Path) -> list[Path]:
    return sorted((cache / "containers").glob("*.sheaf"))


def inject(fault: str, cache: Path, proxy: Proxy, rng: random.Random) -> bool:
    """Injects one fault; false when there was nothing to inject it into."""
    files = cached_files(cache)
    if fault in ("truncate", "delete", "flip") and not files:
        return False
    if fault == "truncate":
        victim = rng.choice(files)
        os.truncate(victim, rng.randrange(max(1, victim.stat().st_size)))
    elif fault == "delete":
        rng.choice(files).unlink(missing_ok=True)
    elif fault == "flip":
        victim = rng.choice(files)
        size = victim.stat().st_size
        if size == 0:
            return False
        with open(victim, "r+b") as f:
            at = rng.randrange(size)
            f.seek(at)
            byte = f.read(1)
            f.seek(at)
            f.write(bytes([byte[0] ^ (1 << rng.randrange(8))]))
    elif fault == "unreadable":
        containers, away = cache / "containers", cache / "containers.away"
        containers.rename(away)
        time.sleep(5)
        containers.mkdir(exist_ok=True)
        for moved in away.iterdir():
            moved.rename(containers / moved.name)
        away.rmdir()
    elif fault == "origin":
        proxy.go_down()
        time.sleep(10)
        proxy.come_back()
    return True


# --- the run ------------------------------------------------------------------------------------

def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--reader":
        return reader_main(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--minutes", type=float, default=30, help="how long (default 30)")
    parser.add_argument("--files", type=int, default=3000, help="files in the dataset")
    parser.add_argument("--readers", type=int, default=8, help="threads of each reader")
    parser.add_argument("--seed", type=int, default=0, help="corpus and fault seed")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("soak: run as root (the mount)")
    env = dict(os.environ, **servers_env())
    ensure_tools()
    corpus, manifest = make_corpus(args.files, args.seed)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    uri = f"s3://{env['SHEAF_TEST_S3_BUCKET']}/soak-{os.getpid()}"
    run(SHEAF, "fold", "--quiet", "--container-size", "4MiB", corpus, uri, env=env)
    endpoint = env["SHEAF_TEST_S3_ENDPOINT"].rsplit(":", 1)
    proxy = Proxy(("127.0.0.1", int(endpoint[1])))
    proxied = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{proxy.port}",
                   SHEAF_TEST_S3_ENDPOINT=f"http://127.0.0.1:{proxy.port}")
    cache, mnt = OUT / "cache", OUT / "mnt"
    mnt.mkdir()
    run(SHEAF, "preload", "--quiet", uri, "--cache", cache, env=proxied)
    seconds = args.minutes * 60
    daemon = subprocess.Popen([str(SHEAF), "mount", "-f", uri, str(mnt), "--cache", str(cache)],
                              env=proxied, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not os.path.ismount(mnt):
        if daemon.poll() is not None or time.monotonic() > deadline:
            sys.exit("soak: the mount never came up")
        time.sleep(0.1)
    readers = {
        kind: subprocess.Popen([str(VENV / "bin/python"), __file__, "--reader", kind, root,
                                str(manifest), str(args.readers), str(seconds), *extra],
                               env=proxied, stdout=subprocess.PIPE, text=True)
        for kind, root, extra in (("mount", str(mnt), []), ("library", uri, [str(cache)]))
    }
    lines: dict[str, list[dict]] = {kind: [] for kind in readers}
    for kind, process in readers.items():
        def follow(kind=kind, process=process):
            for line in process.stdout:
                lines[kind].append(json.loads(line))
                log(f"{kind}: {line.strip()[:200]}")
        threading.Thread(target=follow, daemon=True).start()

    rng = random.Random(args.seed)
    faults = {name: 0 for name in ("truncate", "delete", "flip", "unreadable", "origin")}
    weights = [5, 3, 5, 1, 1]
    memory: list[dict] = []
    started = time.monotonic()
    next_sample = started
    while any(p.poll() is None for p in readers.values()):
        now = time.monotonic()
        if now >= next_sample:
            sample = {"minute": round((now - started) / 60, 1)}
            if daemon.poll() is None:
                sample["mount_anon"] = anon_bytes(daemon.pid)
            if readers["library"].poll() is None:
                sample["library_anon"] = anon_bytes(readers["library"].pid)
            memory.append(sample)
            log(f"memory {sample}")
            next_sample += 60
        if now - started < seconds - 15:
            fault = rng.choices(list(faults), weights)[0]
            if inject(fault, cache, proxy, rng):
                faults[fault] += 1
                log(f"fault {fault} at minute {(time.monotonic() - started) / 60:.1f}")
        time.sleep(rng.uniform(2, 5))
    daemon_alive = daemon.poll() is None
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        log("the mount did not unmount within 60 s: detaching it")
        subprocess.run(["fusermount3", "-u", "-z", str(mnt)])
        daemon.kill()
        crashed_unmount = True
    else:
        crashed_unmount = False

    final = {kind: next((line for line in reversed(lines[kind]) if "reads" in line), {})
             for kind in readers}
    wrong = sum(f.get("wrong", 0) for f in final.values())
    wrong_files = [line["wrong_bytes"] for kind in lines for line in lines[kind]
                   if "wrong_bytes" in line]
    crashed = [f"{kind} (exit status {p.returncode})" for kind, p in readers.items()
               if p.returncode != 0]
    if not daemon_alive:
        crashed.append("mount daemon")
    if crashed_unmount:
        crashed.append("mount did not unmount")

    def grew(key: str) -> bool:
        # Against the second sample, a minute in: the first is taken before anything is read.
        values = [s[key] for s in memory if key in s]
        return len(values) >= 4 and values[-1] > 2 * values[1] + (16 << 20)

    growing = [key for key in ("mount_anon", "library_anon") if grew(key)]
    result = {"minutes": args.minutes, "files": args.files, "readers": args.readers,
              "faults": faults, "reads": {k: v.get("reads", 0) for k, v in final.items()},
              "errors": {k: v.get("errors", 0) for k, v in final.items()},
              "errors_by_kind": {k: v.get("errors_by_kind", {}) for k, v in final.items()},
              "wrong_bytes": wrong, "wrong_files": wrong_files[:20], "crashed": crashed, "memory": memory,
              "memory_growing": growing}
    (WORK / "soak.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    failed = wrong or crashed or growing
    print("soak: FAILED" if failed else "soak: passed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
