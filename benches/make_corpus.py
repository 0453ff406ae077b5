#!/usr/bin/env python3
"""Deterministic synthetic corpus shaped like an ML training set, for benchmarking `sheaf fold`.

    python3 benches/make_corpus.py OUT [--files N] [--seed S] [--classes C]

Layout: OUT/{train,val,test}/class_CCC/shard_KKKK/, each shard holding up to 9 "images"
(img_NNNNNNNN.jpg, 20-200 KiB of pseudo-random bytes behind a JPEG header) and one
labels.json (0.1-2 KiB of annotations for the shard's images), so about 90% of the files are
images and 10% labels, spread over a few hundred (N=2000) to a few thousand (N=20000)
directories. Every file and directory gets mode 0644/0755 and the same fixed mtime.

The output depends only on N, S and C (standard library only, no os.urandom): the layout and
sizes come from random.Random(S).random(), whose sequence Python guarantees to keep stable, and
the bytes of image i come from SHAKE-256 over (S, i). OUT must be missing or empty.
"""

import argparse
import hashlib
import json
import os
import random
import sys
import time

FIXED_MTIME_NS = 1_700_000_000 * 1_000_000_000  # 2023-11-14T22:13:20Z
FILES_PER_SHARD = 10  # 9 images + 1 labels.json
IMAGE_MIN, IMAGE_MAX = 20 * 1024, 200 * 1024
LABEL_MIN, LABEL_MAX = 100, 2048
SPLITS = (("train", 0.8), ("val", 0.9), ("test", 1.0))  # cumulative shares of the shards

# A minimal JFIF start-of-image + APP0 segment and the end-of-image marker, so `file` calls the
# images JPEG; the payload in between is incompressible, like real JPEG entropy-coded data.
JPEG_HEAD = bytes.fromhex("ffd8ffe000104a46494600010100000100010000")
JPEG_TAIL = bytes.fromhex("ffd9")


class Rng:
    """Integer and choice helpers built only on random.Random.random(), the one method whose
    sequence Python promises to keep across versions (randrange/randbytes may change)."""

    def __init__(self, seed: int):
        self._r = random.Random(seed)

    def uniform_int(self, lo: int, hi: int) -> int:
        """An integer in [lo, hi]."""
        return lo + min(int(self._r.random() * (hi - lo + 1)), hi - lo)

    def random(self) -> float:
        return self._r.random()


def image_bytes(seed: int, index: int, size: int) -> bytes:
    payload = size - len(JPEG_HEAD) - len(JPEG_TAIL)
    body = hashlib.shake_256(f"sheaf-bench-corpus/{seed}/{index}".encode()).digest(payload)
    return JPEG_HEAD + body + JPEG_TAIL


def labels_bytes(rng: Rng, split: str, cls: int, shard: int, images: list, target: int) -> bytes:
    """A JSON annotation file of about `target` bytes (never above LABEL_MAX): boxes for the
    shard's images are appended round-robin until the target is reached."""
    head = json.dumps({"split": split, "class": cls, "shard": shard}, separators=(",", ":"))
    head = head[:-1] + ',"annotations":['
    tail = "]}\n"
    parts, length = [], len(head) + len(tail)
    i = 0
    while True:
        name = images[i % len(images)] if images else "none"
        ann = {
            "image": name,
            "label": cls,
            "bbox": [rng.uniform_int(0, 511), rng.uniform_int(0, 511),
                     rng.uniform_int(8, 256), rng.uniform_int(8, 256)],
            "score": round(rng.random(), 4),
        }
        piece = json.dumps(ann, separators=(",", ":"))
        extra = len(piece) + (1 if parts else 0)
        if parts and (length + extra > LABEL_MAX or length >= target):
            break
        parts.append(piece)
        length += extra
        i += 1
    return (head + ",".join(parts) + tail).encode()


def set_meta(path: str, mode: int) -> None:
    os.chmod(path, mode)
    os.utime(path, ns=(FIXED_MTIME_NS, FIXED_MTIME_NS), follow_symlinks=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output directory (missing or empty)")
    parser.add_argument("--files", type=int, default=20000, help="number of files (default 20000)")
    parser.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    parser.add_argument("--classes", type=int, default=100, help="classes per split (default 100)")
    args = parser.parse_args()
    if args.files < 1 or args.classes < 1:
        parser.error("--files and --classes must be at least 1")
    if os.path.exists(args.out) and (not os.path.isdir(args.out) or os.listdir(args.out)):
        parser.error(f"{args.out} exists and is not an empty directory")

    started = time.monotonic()
    rng = Rng(args.seed)
    os.makedirs(args.out, exist_ok=True)
    shards_per_dir = {}  # (split, class) -> next shard number
    dirs = set()
    n_files = n_images = n_labels = total_bytes = 0
    next_index = 0
    n_shards = -(-args.files // FILES_PER_SHARD)
    for _ in range(n_shards):
        in_shard = min(FILES_PER_SHARD, args.files - n_files)
        u = rng.random()
        split = next(name for name, upto in SPLITS if u < upto)
        cls = rng.uniform_int(0, args.classes - 1)
        shard = shards_per_dir.get((split, cls), 0)
        shards_per_dir[(split, cls)] = shard + 1
        rel = os.path.join(split, f"class_{cls:03d}", f"shard_{shard:04d}")
        shard_dir = os.path.join(args.out, rel)
        os.makedirs(shard_dir)
        dirs.update({split, os.path.dirname(rel), rel})

        # One file per shard is the labels file, unless the shard holds a single file.
        n_img = in_shard - 1 if in_shard > 1 else 1
        names = []
        for _ in range(n_img):
            size = rng.uniform_int(IMAGE_MIN, IMAGE_MAX)
            name = f"img_{next_index:08d}.jpg"
            data = image_bytes(args.seed, next_index, size)
            path = os.path.join(shard_dir, name)
            with open(path, "wb") as f:
                f.write(data)
            set_meta(path, 0o644)
            names.append(name)
            next_index += 1
            total_bytes += size
        n_images += n_img
        if in_shard > 1:
            target = rng.uniform_int(LABEL_MIN, LABEL_MAX)
            data = labels_bytes(rng, split, cls, shard, names, target)
            path = os.path.join(shard_dir, "labels.json")
            with open(path, "wb") as f:
                f.write(data)
            set_meta(path, 0o644)
            n_labels += 1
            total_bytes += len(data)
        n_files += in_shard

    # Directories last, deepest first, so creating children does not move their mtimes again.
    for rel in sorted(dirs, key=lambda d: (-d.count(os.sep), d)):
        set_meta(os.path.join(args.out, rel), 0o755)
    set_meta(args.out, 0o755)

    elapsed = time.monotonic() - started
    print(
        f"{n_files} files ({n_images} images, {n_labels} labels), {total_bytes} bytes "
        f"({total_bytes / 2**20:.1f} MiB), {len(dirs) + 1} directories in {args.out} "
        f"[seed {args.seed}, {elapsed:.1f}s]"
    )
    assert n_files == args.files
    return 0


if __name__ == "__main__":
    sys.exit(main())
