"""Generations from Python: a reader sees one snapshot until refresh(), older ones open by
number, and forked or pickled copies read the snapshot their parent read."""

import multiprocessing
import pickle
import subprocess

import pytest

import sheaf
from conftest import fold


def append(sheaf_bin: str, src, dst, *options: str) -> None:
    fold(sheaf_bin, src, dst, "--append", *options)


@pytest.fixture
def growing(sheaf_bin, tmp_path):
    first = tmp_path / "first"
    (first / "d").mkdir(parents=True)
    (first / "d" / "a.txt").write_bytes(b"a, first")
    dataset = tmp_path / "ds"
    fold(sheaf_bin, first, dataset)
    return dataset


def test_a_reader_sees_its_generation_until_it_refreshes(sheaf_bin, growing, tmp_path):
    ds = sheaf.open(growing)
    assert ds.generation == 0
    assert ds.refresh() is False
    second = tmp_path / "second"
    (second / "d").mkdir(parents=True)
    (second / "d" / "a.txt").write_bytes(b"a, second")
    (second / "d" / "b.txt").write_bytes(b"b")
    append(sheaf_bin, second, growing)
    assert ds.read("d/a.txt") == b"a, first"
    assert not ds.exists("d/b.txt")
    assert ds.refresh() is True
    assert ds.generation == 1
    assert ds.read("d/a.txt") == b"a, second"
    assert ds.listdir("d") == ["a.txt", "b.txt"]
    subprocess.run([sheaf_bin, "rm", str(growing), "d/b.txt"], check=True, capture_output=True)
    assert ds.refresh() is True
    assert ds.listdir("d") == ["a.txt"]
    with pytest.raises(sheaf.NotFound):
        ds.read("d/b.txt")


def test_an_older_generation_opens_by_number_and_a_missing_one_is_not_found(
    sheaf_bin, growing, tmp_path
):
    second = tmp_path / "second"
    (second / "d").mkdir(parents=True)
    (second / "d" / "a.txt").write_bytes(b"a, second")
    append(sheaf_bin, second, growing)
    old = sheaf.open(growing, generation=0)
    assert old.generation == 0
    assert old.read("d/a.txt") == b"a, first"
    assert sheaf.open(growing).read("d/a.txt") == b"a, second"
    with pytest.raises(sheaf.NotFound, match="no generation 9"):
        sheaf.open(growing, generation=9)
    with pytest.raises(ValueError):
        sheaf.open(growing, generation=-1)


def _read_in_child(ds, path, queue):
    queue.put((ds.generation, ds.read(path)))


def test_forked_and_pickled_copies_read_the_parent_s_generation(sheaf_bin, growing, tmp_path):
    ds = sheaf.open(growing)
    second = tmp_path / "second"
    (second / "d").mkdir(parents=True)
    (second / "d" / "a.txt").write_bytes(b"a, second")
    append(sheaf_bin, second, growing)
    copy = pickle.loads(pickle.dumps(ds))
    assert (copy.generation, copy.read("d/a.txt")) == (0, b"a, first")
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_in_child, args=(ds, "d/a.txt", queue))
    child.start()
    child.join(30)
    assert queue.get(timeout=5) == (0, b"a, first")
