"""`sheaf.open_routes`: the tree a routes table joins, read like one dataset."""

from __future__ import annotations

import os
import pickle
import subprocess
import time
from pathlib import Path

import pytest

import sheaf
from conftest import fold, regular_files


def route(sheaf_bin: str, *args: str) -> None:
    run = subprocess.run([sheaf_bin, "route", *args], capture_output=True, text=True)
    assert run.returncode == 0, f"sheaf route failed:\n{run.stdout}\n{run.stderr}"


@pytest.fixture(scope="module")
def joined(sheaf_bin, folded, tmp_path_factory) -> tuple[Path, Path]:
    """A routes table joining the training tree under /train-set and a small tree under
    /extra/small; returns (table, small tree)."""
    scratch = tmp_path_factory.mktemp("routes")
    small = scratch / "small"
    (small / "d").mkdir(parents=True)
    (small / "d" / "one.txt").write_bytes(b"one\n")
    (small / "two.txt").write_bytes(b"two\n")
    fold(sheaf_bin, small, scratch / "small-ds")
    table = scratch / "routes"
    route(sheaf_bin, "add", str(table), "/train-set", str(folded))
    route(sheaf_bin, "add", str(table), "/extra/small", str(scratch / "small-ds"))
    return table, small


def test_every_file_of_every_routed_dataset_reads_back(joined, source_tree):
    table, small = joined
    with sheaf.open_routes(table) as tree:
        for path, data in regular_files(source_tree).items():
            assert tree.read(f"/train-set/{path}") == data, path
        assert tree.read("extra/small/d/one.txt") == b"one\n"
        assert tree.view("/extra/small/two.txt") == b"two\n"
        buffer = bytearray(16)
        assert tree.readinto("/extra/small/two.txt", buffer) == 4 and buffer[:4] == b"two\n"
        with tree.open("/extra/small/d/one.txt") as f:
            assert f.read() == b"one\n"
        assert tree.listdir("/") == ["extra", "train-set"]
        assert tree.listdir("/extra") == ["small"]
        assert tree.listdir("/train-set") == sorted(os.listdir(source_tree))
        assert tree.stat("/extra").is_dir()
        assert tree.stat("/train-set/latest").is_dir()  # a symlink inside a dataset, followed
        assert tree.lstat("/train-set/latest").is_symlink()
        assert tree.exists("/extra/small/d") and not tree.exists("/extra/other")
        files = list(tree.files("/extra"))
        assert files == ["extra/small/d/one.txt", "extra/small/two.txt"]
        walked = {here: (sorted(d), sorted(f)) for here, d, f in tree.walk("/extra")}
        assert walked["extra/small"] == (["d"], ["two.txt"])
        assert tree.generation >= 1  # the table's version (the table has two rules or more)
        assert len(tree) > len(regular_files(source_tree))
        with pytest.raises(sheaf.NotFound):
            tree.read("/nowhere/file")
        with pytest.raises(sheaf.IsADirectory):
            tree.read("/extra")


def test_a_routed_tree_survives_pickling_and_fork_and_follows_the_table(
    sheaf_bin, joined, tmp_path
):
    table, _ = joined
    tree = sheaf.open_routes(table)
    copy = pickle.loads(pickle.dumps(tree))
    assert isinstance(copy, sheaf.Routes)
    assert copy.read("/extra/small/two.txt") == b"two\n"
    pid = os.fork()
    if pid == 0:
        os._exit(0 if tree.read("/extra/small/d/one.txt") == b"one\n" else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    late = tmp_path / "late"
    late.mkdir()
    (late / "l.txt").write_bytes(b"late\n")
    fold(sheaf_bin, late, tmp_path / "late-ds")
    route(sheaf_bin, "add", str(table), "/late", str(tmp_path / "late-ds"))
    try:
        assert not tree.exists("/late/l.txt")
        assert tree.refresh() is True
        assert tree.read("/late/l.txt") == b"late\n"
    finally:
        route(sheaf_bin, "rm", str(table), "/late")
    assert tree.refresh() is True
    assert not tree.exists("/late")


def test_an_unreachable_dataset_fails_its_prefix_at_once_and_not_the_others(
    sheaf_bin, joined, tmp_path
):
    table = tmp_path / "routes"
    _, small = joined
    fold(sheaf_bin, small, tmp_path / "small-ds")
    route(sheaf_bin, "add", str(table), "/here", str(tmp_path / "small-ds"))
    # Nothing listens on port 9 here: the NameNode of this rule cannot be reached.
    route(sheaf_bin, "add", str(table), "/away", "hdfs://127.0.0.1:9/data", "--no-check")
    with sheaf.open_routes(table) as tree:
        with pytest.raises(sheaf.OriginError):
            tree.read("/away/x")
        started = time.monotonic()
        with pytest.raises(sheaf.OriginError):
            tree.read("/away/y")
        assert time.monotonic() - started < 1.0, "a prefix known down fails at once"
        assert tree.read("/here/two.txt") == b"two\n"
    with pytest.raises(sheaf.StorageError):
        sheaf.open_routes(tmp_path / "no-table-here")
