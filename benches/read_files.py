#!/usr/bin/env python3
"""Reads every file named in a list the way Python training code does, `open(p, "rb").read()`,
with N threads taking the next path from a shared iterator. Prints what benches/read_files.c
prints (seconds, files, bytes, and a sum of the bytes' 64-bit little-endian words), so the two
readers are interchangeable in benches/mount_vs_squashfuse.sh (--reader python). Only the reads
are timed; the checksum is taken afterwards.

    read_files.py LIST ROOT THREADS
"""

from __future__ import annotations

import sys
import threading
import time


def checksum(data: bytes) -> int:
    """The sum read_files.c takes: little-endian u64 words, then the trailing bytes, mod 2^64."""
    whole = len(data) - len(data) % 8
    total = sum(memoryview(data)[:whole].cast("Q")) if whole else 0
    return (total + sum(data[whole:])) % (1 << 64)


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit("usage: read_files.py LIST ROOT THREADS")
    with open(sys.argv[1]) as listing:
        paths = [f"{sys.argv[2]}/{line.rstrip(chr(10))}" for line in listing if line.strip()]
    threads = int(sys.argv[3])
    contents: list[bytes | None] = [None] * len(paths)
    next_index = iter(range(len(paths)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            with open(paths[i], "rb") as f:
                contents[i] = f.read()

    started = time.perf_counter()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    secs = time.perf_counter() - started
    total = sum(len(c) for c in contents)
    digest = sum(checksum(c) for c in contents) % (1 << 64)
    print(f"{secs:.6f} {len(paths)} {total} {digest:016x}")


if __name__ == "__main__":
    main()
