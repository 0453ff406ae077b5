"""A Dataset shared by threads, inherited across fork, sent to spawned workers, and used by a
PyTorch DataLoader: every byte still checked against the source."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import pickle
import random
import threading

import pytest

import sheaf
from conftest import regular_files


@pytest.fixture(scope="module")
def expected(source_tree) -> dict[str, str]:
    return {p: hashlib.sha256(d).hexdigest() for p, d in regular_files(source_tree).items()}


def digest_of(dataset: sheaf.Dataset, path: str) -> tuple[str, str]:
    return path, hashlib.sha256(dataset.read(path)).hexdigest()


def test_many_threads_read_random_files_at_once(folded, expected):
    paths = list(expected)
    failures: list[str] = []
    with sheaf.open(folded) as ds:

        def reader(seed: int) -> None:
            rng = random.Random(seed)
            for path in rng.choices(paths, k=400):
                if digest_of(ds, path)[1] != expected[path]:
                    failures.append(path)

        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []


def test_a_forked_child_reads_with_the_parents_dataset(folded, source_tree, expected):
    paths = sorted(expected)[::7]
    with sheaf.open(folded) as ds:
        # The child reopens the dataset, so its counters start at zero: one origin read per
        # folded file, plus one per symlink on the way (large files are read where they live).
        reads = sum(1 for p in paths if not ds.stat(p).external)
        reads += sum(1 for p in paths if os.path.islink(source_tree / p))
        ds.read(paths[0])  # the parent has used its reader before the fork
        pid = os.fork()
        if pid == 0:  # the child: exit status says whether every byte was right
            ok = all(digest_of(ds, p)[1] == expected[p] for p in paths)
            os._exit(0 if ok and ds.stats()["origin_reads"] == reads else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert digest_of(ds, paths[1])[1] == expected[paths[1]]  # the parent's still works


_worker_dataset: sheaf.Dataset | None = None


def _remember(dataset: sheaf.Dataset) -> None:
    global _worker_dataset
    _worker_dataset = dataset


def _digest_in_worker(path: str) -> tuple[str, str]:
    assert _worker_dataset is not None
    return digest_of(_worker_dataset, path)


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_worker_pools_started_any_way_read_every_file(folded, expected, start_method):
    context = multiprocessing.get_context(start_method)
    with sheaf.open(folded) as ds:
        ds.read(next(iter(expected)))
        with context.Pool(3, initializer=_remember, initargs=(ds,)) as pool:
            results = dict(pool.map(_digest_in_worker, list(expected), chunksize=50))
    assert results == expected


def test_a_dataset_pickles_as_how_to_open_it(folded, tmp_path):
    with sheaf.open(folded, cache=tmp_path / "cache") as ds:
        copy = pickle.loads(pickle.dumps(ds))
    with copy:
        assert copy.uri == os.fspath(folded)
        assert copy.read("empty.txt") == b""
        assert repr(copy).startswith("sheaf.Dataset(")


def _decode(path: str, data: bytes):
    import torch

    return torch.tensor(list(hashlib.sha256(data).digest()), dtype=torch.uint8)


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_dataloader_with_workers_reads_every_file(folded, expected, start_method):
    torch = pytest.importorskip(
        "torch", reason="torch is not installed: sheaf.torch.FoldedDataset is not exercised"
    )
    from torch.utils.data import DataLoader

    from sheaf.torch import FoldedDataset

    data = FoldedDataset(folded, prefix="labels", transform=_decode)
    assert len(data) == sum(1 for p in expected if p.startswith("labels/"))
    loader = DataLoader(data, batch_size=32, num_workers=2, multiprocessing_context=start_method)
    digests = [bytes(row.tolist()).hex() for batch in loader for row in batch]
    assert digests == [expected[p] for p in data.paths]
    assert isinstance(torch.utils.data.Dataset, type)
