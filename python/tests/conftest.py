"""Fixtures: real source trees, folded with the sheaf CLI, for the Python reader to read."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def sheaf_bin() -> str:
    """The sheaf CLI: $SHEAF_BIN, else the repository's debug build (built when missing)."""
    given = os.environ.get("SHEAF_BIN")
    if given:
        return given
    built = REPO / "target" / "debug" / "sheaf"
    if not built.exists():
        subprocess.run(["cargo", "build", "--bin", "sheaf"], cwd=REPO, check=True)
    return str(built)


def fold(sheaf_bin: str, src: Path | str, dst: Path | str, *options: str) -> None:
    run = subprocess.run(
        [sheaf_bin, "fold", str(src), str(dst), *options], capture_output=True, text=True
    )
    assert run.returncode == 0, f"sheaf fold failed:\n{run.stdout}\n{run.stderr}"


def s3_location(name: str) -> str:
    """A fresh location on the S3 test server, or a skip (SHEAF_TEST_LOCAL_ONLY) or a failure
    saying how to start the server."""
    if os.environ.get("SHEAF_TEST_LOCAL_ONLY"):
        pytest.skip("SHEAF_TEST_LOCAL_ONLY is set: the S3 back-end is not tested")
    bucket = os.environ.get("SHEAF_TEST_S3_BUCKET")
    if not bucket or not os.environ.get("AWS_ENDPOINT_URL"):
        pytest.fail(
            "the S3 test server is not configured: run `bash scripts/servers.sh start` and "
            "`set -a; . target/test-servers.env; set +a` (or `bash .ci/run`), or set "
            "SHEAF_TEST_LOCAL_ONLY=1"
        )
    return f"s3://{bucket}/{name}-{uuid.uuid4().hex[:12]}"


def make_training_tree(root: Path, seed: int = 7, labels: int = 1200, images: int = 60) -> None:
    """A small training-set-shaped tree: labels of 0.1-2 KiB and images of 20-200 KiB in
    class directories, plus the awkward cases (symlinks, empty file and directory, a name
    that is not UTF-8, a file above the fold threshold)."""
    rng = random.Random(seed)
    classes = [f"c{i:02}" for i in range(12)]
    for i in range(labels):
        d = root / "labels" / classes[i % len(classes)]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:05}.json").write_bytes(rng.randbytes(rng.randint(100, 2048)))
    for i in range(images):
        d = root / "train" / classes[i % len(classes)]
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{i:05}.jpg").write_bytes(rng.randbytes(rng.randint(20 << 10, 200 << 10)))
    (root / "empty-dir").mkdir()
    (root / "empty.txt").write_bytes(b"")
    (root / "big.bin").write_bytes(rng.randbytes(600 << 10))  # above the 512 KiB threshold
    os.symlink("train/c00", root / "latest")  # to a directory
    os.symlink("../c00/00000.jpg", root / "train" / "c01" / "alias.jpg")  # to a file
    os.symlink("nowhere", root / "broken")  # dangling
    (root / os.fsdecode(b"odd-\xff-name.bin")).write_bytes(b"not utf-8 named\n")


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tree") / "src"
    root.mkdir()
    make_training_tree(root)
    return root


@pytest.fixture(scope="session")
def folded(sheaf_bin, source_tree, tmp_path_factory) -> Path:
    """The source tree folded into several containers (1 MiB each)."""
    dst = tmp_path_factory.mktemp("folded") / "dataset"
    fold(sheaf_bin, source_tree, dst, "--threshold", "512KiB", "--container-size", "1MiB")
    return dst


@pytest.fixture
def folded_copy(folded, tmp_path) -> Path:
    """A private copy of the folded dataset, for tests that damage it."""
    copy = tmp_path / "dataset"
    shutil.copytree(folded, copy, symlinks=True)
    return copy


def regular_files(root: Path) -> dict[str, bytes]:
    """Every path below `root` that reads as a regular file (symlinks followed), with its
    bytes, keyed by the path relative to `root`."""
    out = {}
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.isfile(full):
                with open(full, "rb") as f:
                    out[os.path.relpath(full, root)] = f.read()
    return out
