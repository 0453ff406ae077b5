"""Every exception class is raised by the case that causes it, and never as a crash."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import sheaf
from conftest import fold

FOOTER = 64
VERSION_AT = 40  # offset of the u16 format version inside the footer (formats/SPEC.md)


@pytest.fixture(scope="module")
def tricky(sheaf_bin, tmp_path_factory):
    """A dataset with links that cannot be followed."""
    src = tmp_path_factory.mktemp("tricky") / "src"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "file.txt").write_bytes(b"inside\n")
    os.symlink("../../../etc/passwd", src / "dir" / "escape")
    os.symlink("loop-b", src / "loop-a")
    os.symlink("loop-a", src / "loop-b")
    dst = src.parent / "dataset"
    fold(sheaf_bin, src, dst)
    with sheaf.open(dst) as dataset:
        yield dataset


@pytest.fixture(scope="module")
def ds(folded):
    with sheaf.open(folded) as dataset:
        yield dataset


def test_missing_paths_are_not_found_and_file_not_found(ds):
    with pytest.raises(sheaf.NotFound) as caught:
        ds.read("labels/c00/missing.json")
    assert isinstance(caught.value, FileNotFoundError)
    assert "labels/c00/missing.json" in str(caught.value)
    with pytest.raises(FileNotFoundError):
        ds.stat("nope")
    with pytest.raises(sheaf.NotFound):
        ds.listdir("no/such/dir")


def test_hostile_paths_are_invalid(ds):
    for path in ["../etc/passwd", "labels/../../x", "a\0b"]:
        with pytest.raises(sheaf.InvalidPath) as caught:
            ds.read(path)
        assert isinstance(caught.value, ValueError)


def test_reading_a_directory_is_a_directory_error(ds):
    with pytest.raises(sheaf.IsADirectory) as caught:
        ds.read("labels")
    assert isinstance(caught.value, IsADirectoryError)
    with pytest.raises(sheaf.IsADirectory):
        ds.read("")


def test_listing_a_file_is_not_a_directory(ds):
    with pytest.raises(sheaf.NotADirectory) as caught:
        ds.listdir("labels/c00/00000.json")
    assert isinstance(caught.value, NotADirectoryError)
    with pytest.raises(sheaf.NotADirectory):
        list(ds.files("empty.txt"))


def test_links_out_of_the_dataset_or_in_a_loop_are_wrong_kind(tricky):
    with pytest.raises(sheaf.WrongKind, match="outside the dataset"):
        tricky.read("dir/escape")
    with pytest.raises(sheaf.WrongKind, match="too many levels"):
        tricky.read("loop-a")
    assert tricky.read("dir/file.txt") == b"inside\n"
    assert tricky.lstat("dir/escape").is_symlink()


def test_a_flipped_byte_is_corrupt_data_never_wrong_bytes(folded_copy, source_tree):
    victim = "labels/c05/00005.json"
    original = (source_tree / victim).read_bytes()
    flipped = 0
    for container in (folded_copy / ".sheaf" / "containers").iterdir():
        blob = bytearray(container.read_bytes())
        at = blob.find(original)
        if at >= 0:
            blob[at + len(original) // 2] ^= 0x40
            container.write_bytes(bytes(blob))
            flipped += 1
    assert flipped == 1
    with sheaf.open(folded_copy) as damaged:
        with pytest.raises(sheaf.CorruptData, match="checksum mismatch"):
            damaged.read(victim)
        with pytest.raises(sheaf.CorruptData):
            damaged.open(victim)
        # Its neighbours are unharmed and still read.
        assert damaged.read("labels/c04/00004.json") == (source_tree / "labels/c04/00004.json").read_bytes()


def test_a_catalog_from_a_future_version_is_unsupported(folded_copy):
    catalog = folded_copy / ".sheaf" / "generations" / ("0" * 20 + ".sheaf")
    blob = bytearray(catalog.read_bytes())
    version_at = len(blob) - FOOTER + VERSION_AT
    blob[version_at : version_at + 2] = (999).to_bytes(2, "little")
    catalog.write_bytes(bytes(blob))
    with pytest.raises(sheaf.UnsupportedVersion, match="upgrade sheaf"):
        sheaf.open(folded_copy)


def test_a_truncated_catalog_is_corrupt(folded_copy):
    catalog = folded_copy / ".sheaf" / "generations" / ("0" * 20 + ".sheaf")
    catalog.write_bytes(catalog.read_bytes()[:-10])
    with pytest.raises(sheaf.CorruptData):
        sheaf.open(folded_copy)


def test_a_directory_without_a_dataset_is_not_a_dataset(tmp_path):
    with pytest.raises(sheaf.NotADataset, match="not a sheaf dataset"):
        sheaf.open(tmp_path)
    with pytest.raises(sheaf.NotADataset):
        sheaf.open(tmp_path / "does-not-exist")


def test_an_unreachable_store_is_an_origin_error(tmp_path):
    # In a child process: the endpoint variable must not leak into other tests.
    script = (
        "import sheaf\n"
        "try:\n"
        "    sheaf.open('s3://no-bucket/dataset')\n"
        "except sheaf.OriginError as e:\n"
        "    assert isinstance(e, OSError)\n"
        "    print('OriginError:', e)\n"
    )
    env = dict(
        os.environ,
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ALLOW_HTTP="true",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_REGION="us-east-1",
    )
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("OriginError:") and "s3://no-bucket" in run.stdout


def test_a_cache_path_that_is_a_file_is_a_storage_error(folded, tmp_path):
    not_a_dir = tmp_path / "plain-file"
    not_a_dir.write_bytes(b"x")
    with pytest.raises(sheaf.StorageError) as caught:
        sheaf.open(folded, cache=not_a_dir)
    assert isinstance(caught.value, OSError)


def test_a_small_buffer_is_refused_and_left_untouched(ds, source_tree):
    size = len((source_tree / "train/c00/00000.jpg").read_bytes())
    buffer = bytearray(b"\xaa" * 100)
    with pytest.raises(sheaf.BufferTooSmall) as caught:
        ds.readinto("train/c00/00000.jpg", buffer)
    assert caught.value.needed == size and isinstance(caught.value, ValueError)
    assert buffer == bytearray(b"\xaa" * 100)
    with pytest.raises(TypeError):
        ds.readinto("empty.txt", b"read-only bytes")


def test_every_exception_is_a_sheaf_error():
    for name in sheaf.__all__:
        value = getattr(sheaf, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, sheaf.Error), name


def test_status_codes_map_to_their_classes():
    from sheaf.errors import from_status

    # A panic inside the library arrives as InternalError (the guard is tested in Rust:
    # capi/src/status.rs); an unknown code is never silently taken for success.
    assert isinstance(from_status(15, "boom"), sheaf.InternalError)
    assert isinstance(from_status(99, "?"), sheaf.InternalError)
    assert isinstance(from_status(3, "gone"), sheaf.NotFound)
