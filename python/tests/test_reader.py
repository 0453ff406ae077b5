"""Reading a folded tree through Python gives back the source tree: bytes, listings, stat."""

from __future__ import annotations

import os
import stat as stat_module
import subprocess
import threading
from pathlib import Path

import pytest

import sheaf
from conftest import fold, regular_files


@pytest.fixture(scope="module")
def ds(folded):
    with sheaf.open(folded) as dataset:
        yield dataset


def test_every_file_reads_back_byte_for_byte(ds, source_tree):
    expected = regular_files(source_tree)
    assert len(expected) > 1200
    for path, data in expected.items():
        assert ds.read(path) == data, path


def test_reads_take_one_native_call_when_the_extension_is_built():
    # The package's install compiles sheaf._fastread (setup installs a C compiler and Python's
    # headers); a silent fallback to ctypes would only show as slower reads.
    assert sheaf._dataset._fast_read is not None


def test_reads_through_ctypes_alone_give_the_same_bytes_and_errors(ds, source_tree, monkeypatch):
    monkeypatch.setattr(sheaf._dataset, "_fast_read", None)
    for path, data in regular_files(source_tree).items():
        assert ds.read(path) == data, path
    with pytest.raises(sheaf.NotFound, match="no/such/file"):
        ds.read("no/such/file")
    with pytest.raises(sheaf.IsADirectory):
        ds.read("train")


def test_the_one_call_read_refuses_bad_arguments():
    fast_read = sheaf._dataset._fast_read
    with pytest.raises(TypeError):
        fast_read(1, "a str, not bytes")
    with pytest.raises(ValueError):
        fast_read(0, b"a/path")


def test_readinto_fills_a_caller_buffer_without_resizing_it(ds, source_tree):
    buffer = bytearray(256 << 10)
    for path, data in list(regular_files(source_tree).items())[::37]:
        n = ds.readinto(path, buffer)
        assert n == len(data) and buffer[:n] == data, path
    view = memoryview(buffer)[1000:]
    n = ds.readinto("labels/c00/00000.json", view)
    assert view[:n] == (source_tree / "labels/c00/00000.json").read_bytes()


def test_view_is_a_read_only_zero_copy_view_that_outlives_the_dataset(folded, source_tree):
    expected = (source_tree / "train/c04/00004.jpg").read_bytes()
    with sheaf.open(folded) as dataset:
        view = dataset.view("train/c04/00004.jpg")
        empty = dataset.view("empty.txt")
        label = dataset.view("labels/c00/00000.json")[10:20]
    assert view.readonly and view.nbytes == len(expected)
    assert view == expected and bytes(view[100:200]) == expected[100:200]
    assert empty.nbytes == 0 and bytes(empty) == b""
    assert label == (source_tree / "labels/c00/00000.json").read_bytes()[10:20]
    with pytest.raises(TypeError):
        view[0] = 0
    del view, label


def test_readinto_a_numpy_array_when_numpy_is_there(ds, source_tree):
    numpy = pytest.importorskip("numpy", reason="numpy is not installed; the bytearray test covers readinto")
    array = numpy.zeros(4096, dtype=numpy.uint8)
    n = ds.readinto("labels/c03/00003.json", array)
    assert array[:n].tobytes() == (source_tree / "labels/c03/00003.json").read_bytes()


def test_a_file_object_reads_seeks_and_closes(ds, source_tree):
    data = (source_tree / "train/c02/00002.jpg").read_bytes()
    with ds.open("train/c02/00002.jpg") as f:
        assert f.read(10) == data[:10]
        assert f.tell() == 10
        f.seek(-5, os.SEEK_END)
        assert f.read() == data[-5:]
        assert f.read() == b""
        f.seek(100)
        chunk = bytearray(50)
        assert f.readinto(chunk) == 50 and chunk == data[100:150]
        assert f.seekable() and f.readable() and not f.writable()
    assert f.closed
    with pytest.raises(ValueError):
        f.read()
    with ds.open("empty.txt") as empty:
        assert empty.read() == b""
    with pytest.raises(ValueError):
        ds.open("empty.txt", "wb")


def test_listdir_matches_os_listdir_everywhere(ds, source_tree):
    for dirpath, _, _ in os.walk(source_tree):
        rel = os.path.relpath(dirpath, source_tree)
        rel = "" if rel == "." else rel
        assert ds.listdir(rel) == sorted(os.listdir(dirpath)), rel
    assert ds.listdir("") == ds.listdir(".") == ds.listdir("/") == ds.listdir()
    assert ds.listdir(b"") == sorted(os.listdir(os.fsencode(source_tree)))
    # A symlink to a directory lists the directory, as os.listdir does.
    assert ds.listdir("latest") == sorted(os.listdir(source_tree / "latest"))


def test_walk_matches_os_walk(ds, source_tree):
    def as_dict(walk, root_of):
        return {root_of(d): (sorted(dirs), sorted(files)) for d, dirs, files in walk}

    def relative(d):
        rel = os.path.relpath(d, source_tree)
        return "" if rel == "." else rel

    assert as_dict(ds.walk(), str) == as_dict(os.walk(source_tree), relative)
    assert as_dict(ds.walk("train"), str) == as_dict(os.walk(source_tree / "train"), relative)


def test_stat_matches_os_stat_and_lstat_for_every_entry(ds, source_tree):
    checked = 0
    for dirpath, dirnames, filenames in os.walk(source_tree):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, source_tree)
            mine, theirs = ds.lstat(rel), os.lstat(full)
            assert mine.st_mode == theirs.st_mode, rel
            assert mine.st_mtime_ns == theirs.st_mtime_ns, rel
            if not stat_module.S_ISDIR(theirs.st_mode):
                assert mine.st_size == theirs.st_size, rel
            if os.path.exists(full):
                followed, theirs_followed = ds.stat(rel), os.stat(full)
                assert followed.st_mode == theirs_followed.st_mode, rel
                if followed.is_file():
                    assert followed.st_size == theirs_followed.st_size, rel
            checked += 1
    assert checked > 1200
    assert ds.stat("").is_dir() and ds.stat("/").is_dir()
    assert ds.stat("big.bin").external and not ds.stat("empty.txt").external
    assert ds.lstat("latest").is_symlink() and ds.stat("latest").is_dir()


def test_exists_isdir_isfile(ds):
    assert ds.exists("labels/c00/00000.json") and ds.isfile("labels/c00/00000.json")
    assert ds.exists("latest") and ds.isdir("latest") and not ds.isfile("latest")
    assert not ds.exists("labels/c00/99999.json")
    assert not ds.exists("broken")  # dangling, as os.path.exists
    assert not ds.exists("labels/c00/00000.json/inside")
    assert not ds.exists("../outside")
    assert ds.exists(Path("train") / "c01")


def test_files_streams_every_regular_file_in_path_order(ds, source_tree):
    expected = {
        os.path.relpath(os.path.join(d, n), source_tree)
        for d, _, names in os.walk(source_tree)
        for n in names
        if os.path.isfile(os.path.join(d, n)) and not os.path.islink(os.path.join(d, n))
    }
    listed = list(ds.files())
    assert set(listed) == expected and len(listed) == len(expected)
    under_train = list(ds.files("train"))
    assert under_train and all(p.startswith("train/") for p in under_train)
    assert under_train == [p for p in listed if p.startswith("train/")]


def test_len_counts_every_entry(ds, source_tree):
    entries = sum(len(dirs) + len(files) for _, dirs, files in os.walk(source_tree))
    assert len(ds) == entries


def test_non_utf8_names_round_trip(ds, source_tree):
    name = os.fsdecode(b"odd-\xff-name.bin")
    assert name in ds.listdir()
    assert ds.read(name) == ds.read(b"odd-\xff-name.bin") == b"not utf-8 named\n"


def test_a_dataset_and_a_cache_at_paths_that_are_not_utf8_open(folded, source_tree, tmp_path):
    root = os.path.join(os.fsencode(tmp_path), b"ds-\xff")
    os.symlink(folded, root)
    cache = os.path.join(os.fsencode(tmp_path), b"cache-\xfe")
    expected = (source_tree / "labels" / "c00" / "00000.json").read_bytes()
    for given in (root, os.fsdecode(root)):
        with sheaf.open(given, cache=os.fsdecode(cache)) as dataset:
            assert dataset.read("labels/c00/00000.json") == expected
    assert os.path.isdir(cache), "the cache was made at the path given, bytes and all"


def test_links_out_of_the_dataset_name_nothing_as_in_os_path(sheaf_bin, tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f.txt").write_bytes(b"f")
    os.symlink("/", src / "d" / "out")
    os.symlink("loop", src / "d" / "loop")
    os.symlink("f.txt", src / "d" / "in")
    fold(sheaf_bin, src, tmp_path / "ds")
    with sheaf.open(tmp_path / "ds") as dataset:
        for name in ("d/out", "d/loop"):
            assert not dataset.exists(name) and not dataset.isdir(name)
            assert not dataset.isfile(name)
            with pytest.raises(sheaf.WrongKind):
                dataset.stat(name)
        assert dataset.isfile("d/in")
        walked = list(dataset.walk())
        assert walked == [("", ["d"], []), ("d", [], ["f.txt", "in", "loop", "out"])]


def test_counters_count_origin_reads(folded):
    with sheaf.open(folded) as fresh:
        before = fresh.stats()
        fresh.read("labels/c00/00000.json")
        fresh.read("labels/c01/00001.json")
        after = fresh.stats()
    assert after["origin_reads"] - before["origin_reads"] == 2
    assert after["origin_bytes"] > before["origin_bytes"]
    assert set(after) >= {"hits", "misses", "fallbacks", "checksum_failures"}


def test_closed_datasets_refuse_calls(folded):
    dataset = sheaf.open(folded)
    dataset.close()
    dataset.close()
    assert dataset.closed
    with pytest.raises(ValueError):
        dataset.read("empty.txt")


def test_a_cache_directory_serves_preloaded_containers(sheaf_bin, folded, source_tree, tmp_path):
    cache = tmp_path / "cache"
    run = subprocess.run([sheaf_bin, "preload", str(folded), "--cache", str(cache)], capture_output=True)
    assert run.returncode == 0, run.stderr
    with sheaf.open(folded, cache=cache) as cached:
        for path in ["labels/c00/00000.json", "train/c03/00003.jpg"]:
            assert cached.read(path) == (source_tree / path).read_bytes()
        counters = cached.stats()
    assert counters["hits"] == 2 and counters["origin_reads"] == 0


def test_cached_reads_on_many_threads_and_from_a_damaged_copy_give_the_right_bytes(
    sheaf_bin, folded, source_tree, tmp_path
):
    # From a cached copy the one-call read copies and checks in one pass, the GIL released
    # while a file of 16 KiB or more is copied (the images) and held for smaller ones (labels).
    cache = tmp_path / "cache"
    run = subprocess.run([sheaf_bin, "preload", str(folded), "--cache", str(cache)], capture_output=True)
    assert run.returncode == 0, run.stderr
    expected = {p: d for p, d in regular_files(source_tree).items() if p != "big.bin"}
    wrong = []
    with sheaf.open(folded, cache=cache) as cached:
        def read_every_file(offset):
            paths = list(expected)
            for path in paths[offset:] + paths[:offset]:
                if cached.read(path) != expected[path]:
                    wrong.append(path)

        threads = [threading.Thread(target=read_every_file, args=(i * 97,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert cached.stats()["origin_reads"] == 0
    assert wrong == []
    # A flipped byte in every cached copy: each read still returns the right bytes (from the
    # origin), and the damaged copies are counted and moved aside.
    for container in (cache / "containers").iterdir():
        data = bytearray(container.read_bytes())
        data[100] ^= 0xFF
        container.write_bytes(data)
    with sheaf.open(folded, cache=cache) as damaged:
        for path, data in expected.items():
            assert damaged.read(path) == data, path
        counters = damaged.stats()
    assert counters["checksum_failures"] >= 1 and counters["origin_reads"] >= 1
