"""A dataset on the S3 test server (moto on loopback), read through Python with and without
a cache."""

from __future__ import annotations

import os
import subprocess

import pytest

import sheaf
from conftest import fold, regular_files, s3_location


@pytest.fixture(scope="module")
def s3_dataset(sheaf_bin, source_tree) -> str:
    uri = s3_location("python")
    fold(sheaf_bin, source_tree, uri, "--threshold", "512KiB", "--container-size", "1MiB")
    return uri


def test_every_file_of_an_s3_dataset_reads_back(s3_dataset, source_tree):
    expected = regular_files(source_tree)
    with sheaf.open(s3_dataset) as ds:
        for path, data in expected.items():
            assert ds.read(path) == data, path
        assert ds.listdir("labels") == sorted(os.listdir(source_tree / "labels"))
        counters = ds.stats()
    stored = [p for p in expected if not os.path.islink(source_tree / p)]
    # One ranged request per folded entry (large files are not counted here).
    assert counters["origin_reads"] >= len(stored) - 1
    assert counters["hits"] == 0


def test_a_preloaded_s3_dataset_reads_from_the_cache_only(sheaf_bin, s3_dataset, source_tree, tmp_path):
    cache = tmp_path / "cache"
    run = subprocess.run([sheaf_bin, "preload", s3_dataset, "--cache", str(cache)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    with sheaf.open(s3_dataset, cache=cache) as ds:
        for path in ["labels/c00/00000.json", "train/c05/00005.jpg", "train/c01/alias.jpg"]:
            assert ds.read(path) == (source_tree / path).read_bytes()
        counters = ds.stats()
    assert counters["origin_reads"] == 0 and counters["hits"] >= 3
