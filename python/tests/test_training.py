"""Training-loader features: container-aware epoch orders (split across ranks and workers,
deterministic, resumable), node-sharded preloads, and the PyTorch sampler and streaming
dataset over a dataset on the S3 test server (moto), with and without a cache."""

from __future__ import annotations

import collections
import subprocess
from pathlib import Path

import pytest

import sheaf
from conftest import fold, s3_location

PREFIX = "labels"  # 1,200 small files: divisible by 2, 3, 4 and 6


@pytest.fixture(scope="module")
def small_containers(sheaf_bin, source_tree, tmp_path_factory) -> Path:
    """The tree folded into 64 KiB containers, so an epoch spans many of them."""
    dst = tmp_path_factory.mktemp("training") / "dataset"
    fold(sheaf_bin, source_tree, dst, "--threshold", "512KiB", "--container-size", "64KiB")
    return dst


@pytest.fixture(scope="module")
def s3_small_containers(sheaf_bin, source_tree) -> str:
    uri = s3_location("training")
    fold(sheaf_bin, source_tree, uri, "--threshold", "512KiB", "--container-size", "64KiB")
    return uri


def test_every_file_is_read_once_per_epoch_across_ranks_and_workers(small_containers):
    with sheaf.open(small_containers) as ds:
        samples = ds.samples(PREFIX)
        count = len(samples)
        assert count == len(list(ds.files(PREFIX))) == 1200
        for parts in (1, 2, 3, 4, 6):  # ranks, or ranks times workers
            for seed, epoch in ((0, 0), (7, 3)):
                seen = collections.Counter()
                for part in range(parts):
                    order = samples.order(seed=seed, epoch=epoch, window=3, part=part, parts=parts)
                    assert len(order) == count // parts
                    seen.update(order)
                assert sorted(seen) == list(range(count))
                assert set(seen.values()) == {1}


def test_padding_and_drop_last_keep_every_share_the_same_length(small_containers):
    with sheaf.open(small_containers) as ds:
        samples = ds.samples(PREFIX)
        padded = [samples.order(part=p, parts=7) for p in range(7)]
        assert {len(o) for o in padded} == {-(-1200 // 7)}
        assert set().union(*map(set, padded)) == set(range(1200))
        dropped = [samples.order(part=p, parts=7, drop_last=True) for p in range(7)]
        assert {len(o) for o in dropped} == {1200 // 7}
        flat = [n for o in dropped for n in o]
        assert len(flat) == len(set(flat))


def test_the_same_seed_and_epoch_give_the_same_order_and_a_new_epoch_another(small_containers):
    with sheaf.open(small_containers) as ds:
        first = ds.samples(PREFIX).order(seed=11, epoch=2, part=1, parts=2).tolist()
    with sheaf.open(small_containers) as again:  # another handle, as another process would
        assert again.samples(PREFIX).order(seed=11, epoch=2, part=1, parts=2).tolist() == first
        other = again.samples(PREFIX).order(seed=11, epoch=3, part=1, parts=2).tolist()
    assert other != first
    assert first != sorted(first)


def test_resuming_mid_epoch_gives_the_rest_of_the_order(small_containers):
    with sheaf.open(small_containers) as ds:
        samples = ds.samples(PREFIX)
        whole = samples.order(seed=3, epoch=1, part=0, parts=3).tolist()
        for start in (0, 1, 217, len(whole) - 1, len(whole), len(whole) + 5):
            assert samples.order(seed=3, epoch=1, part=0, parts=3, start=start).tolist() == \
                whole[start:]


def test_windows_keep_a_share_on_few_containers_at_a_time(small_containers):
    with sheaf.open(small_containers) as ds:
        samples = ds.samples(PREFIX)
        windows = samples.windows(seed=1, window=2, part=0, parts=2)
        assert sum(w["samples"] for w in windows) == 600
        assert all(1 <= len(w["containers"]) <= 2 for w in windows)
        assert len(windows) >= 3, "the fixture should spread the share over several windows"


def test_bad_order_settings_are_refused_clearly(small_containers):
    with sheaf.open(small_containers) as ds:
        samples = ds.samples(PREFIX)
        with pytest.raises(sheaf.Error, match="part must be below"):
            samples.order(part=2, parts=2)
        with pytest.raises(sheaf.Error, match="window"):
            samples.order(window=0)
        with pytest.raises(ValueError):
            samples.order(epoch=-1)
        with pytest.raises(sheaf.NotADirectory):
            ds.samples("empty.txt")


def cached_ids(cache: Path) -> set[str]:
    return {p.name for p in (cache / "containers").iterdir()}


def preload_shard(sheaf_bin: str, uri: str, cache: Path, rank: int, world: int) -> None:
    run = subprocess.run(
        [sheaf_bin, "preload", uri, "--cache", str(cache), "--prefix", PREFIX, "--shard",
         f"{rank}/{world}", "--seed", "5", "--epoch", "1", "--window", "2", "--quiet"],
        capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_sharded_preloads_copy_disjoint_shares_whose_union_is_what_the_epoch_reads(
        sheaf_bin, s3_small_containers, source_tree, tmp_path):
    uri = s3_small_containers
    own = [tmp_path / "rank0", tmp_path / "rank1"]
    for rank, cache in enumerate(own):
        preload_shard(sheaf_bin, uri, cache, rank, 2)
    shares = [cached_ids(c) for c in own]
    assert shares[0] and shares[1] and not shares[0] & shares[1]

    # The Python call picks the same share.
    by_python = tmp_path / "python"
    summary = sheaf.preload(uri, by_python, prefixes=[PREFIX], shard=(1, 2), seed=5, epoch=1,
                            window=2, under=PREFIX)
    assert cached_ids(by_python) == shares[1] and summary["fetched"] == len(shares[1])

    # Both shares in one cache: the whole epoch reads from it, nothing from the origin.
    shared = tmp_path / "shared"
    for rank in range(2):
        preload_shard(sheaf_bin, uri, shared, rank, 2)
    assert cached_ids(shared) == shares[0] | shares[1]
    with sheaf.open(uri, cache=shared) as ds:
        samples, paths = ds.samples(PREFIX), list(ds.files(PREFIX))
        for rank in range(2):
            for number in samples.order(seed=5, epoch=1, window=2, part=rank, parts=2):
                assert ds.read(paths[number]) == (source_tree / paths[number]).read_bytes()
        assert ds.stats()["origin_reads"] == 0

    # Each rank through its own cache: only the container its share starts in (preloaded by
    # the rank before it) comes from the origin.
    for rank, cache in enumerate(own):
        with sheaf.open(uri, cache=cache) as ds:
            samples, paths = ds.samples(PREFIX), list(ds.files(PREFIX))
            settings = dict(seed=5, epoch=1, window=2, part=rank, parts=2)
            windows = samples.windows(**settings)
            for number in samples.order(**settings):
                ds.read(paths[number])
            counters = ds.stats()
        assert counters["hits"] > 0
        first_container_samples = windows[0]["samples"]
        assert counters["origin_reads"] <= first_container_samples
        if rank == 0:
            assert counters["origin_reads"] == 0


def test_fetching_a_window_ahead_makes_its_reads_cache_hits(s3_small_containers, source_tree,
                                                            tmp_path):
    cache = tmp_path / "cache"
    with sheaf.open(s3_small_containers, cache=cache) as ds:
        samples, paths = ds.samples(PREFIX), list(ds.files(PREFIX))
        settings = dict(seed=4, window=2, part=0, parts=2)
        first = samples.windows(**settings)[0]
        assert ds.fetch_ahead(first["containers"]) > 0
        assert len(cached_ids(cache)) == len(first["containers"])
        assert ds.fetch_ahead(first["containers"]) == 0  # already there
        for number in samples.order(**settings)[:first["samples"]]:
            assert ds.read(paths[number]) == (source_tree / paths[number]).read_bytes()
        counters = ds.stats()
    assert counters["origin_reads"] == 0 and counters["hits"] == first["samples"]
    with sheaf.open(s3_small_containers) as uncached:
        assert uncached.fetch_ahead(first["containers"]) == 0
        assert uncached.stats()["origin_reads"] == 0
        with pytest.raises(sheaf.Error, match="no container"):
            sheaf.open(s3_small_containers, cache=cache).fetch_ahead([10**6])


def test_a_sharded_preload_with_several_prefixes_is_refused(sheaf_bin, small_containers, tmp_path):
    run = subprocess.run(
        [sheaf_bin, "preload", str(small_containers), "--cache", str(tmp_path / "c"),
         "--prefix", "labels", "--prefix", "train", "--shard", "0/2"],
        capture_output=True, text=True)
    assert run.returncode != 0 and "at most one --prefix" in run.stderr
    run = subprocess.run(
        [sheaf_bin, "preload", str(small_containers), "--cache", str(tmp_path / "c"),
         "--shard", "2/2"], capture_output=True, text=True)
    assert run.returncode == 2 and "below the world size" in run.stderr


# --- PyTorch ---------------------------------------------------------------------------------

def _torch():
    return pytest.importorskip(
        "torch", reason="torch is not installed: the sampler and streaming dataset are not "
                        "exercised (scripts/python-tests.sh installs it unless SHEAF_TEST_TORCH=0)")


def _with_path(path: str, data: bytes):
    return path, data


def _read_back(source_tree: Path, batches) -> list[str]:
    out = []
    for paths, datas in batches:
        for path, data in zip(paths, datas):
            assert data == (source_tree / path).read_bytes(), path
            out.append(path)
    return out


def _collate(items):
    return [p for p, _ in items], [d for _, d in items]


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
@pytest.mark.parametrize("cached", [False, True])
def test_the_sampler_splits_an_s3_epoch_across_ranks_and_workers(
        s3_small_containers, source_tree, tmp_path, start_method, cached):
    _torch()
    from torch.utils.data import DataLoader

    from sheaf.torch import FoldedDataset, ShuffledSampler

    cache = tmp_path / "cache" if cached else None
    data = FoldedDataset(s3_small_containers, prefix=PREFIX, transform=_with_path, cache=cache)
    read = collections.Counter()
    for rank in range(2):
        sampler = ShuffledSampler(data, seed=9, window=2, rank=rank, world=2)
        sampler.set_epoch(4)
        assert len(sampler) == 600
        loader = DataLoader(data, batch_size=25, sampler=sampler, num_workers=2,
                            multiprocessing_context=start_method, collate_fn=_collate)
        got = _read_back(source_tree, loader)
        assert got == [data.paths[i] for i in sampler.order()]
        read.update(got)
    assert sorted(read) == sorted(data.paths) and set(read.values()) == {1}


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
@pytest.mark.parametrize("cached", [False, True])
def test_streaming_yields_the_rank_order_through_workers_and_resumes(
        s3_small_containers, source_tree, tmp_path, start_method, cached):
    _torch()
    from torch.utils.data import DataLoader

    from sheaf.torch import StreamingDataset

    cache = tmp_path / "cache" if cached else None
    stream = StreamingDataset(s3_small_containers, prefix=PREFIX, transform=_with_path,
                              cache=cache, seed=2, window=2, batch_size=16, rank=1, world=2)
    stream.set_epoch(6)
    with sheaf.open(s3_small_containers) as ds:
        paths = list(ds.files(PREFIX))
        expected = [paths[n] for n in ds.samples(PREFIX).order(seed=2, epoch=6, window=2,
                                                                part=1, parts=2)]
    loader = DataLoader(stream, batch_size=16, num_workers=2,
                        multiprocessing_context=start_method, collate_fn=_collate)
    assert _read_back(source_tree, loader) == expected
    if cached:
        # The workers fetched every container of the share ahead of reading it.
        assert len(list((cache / "containers").iterdir())) >= 2
    stream.set_epoch(6, start=16 * 7)
    assert _read_back(source_tree, loader) == expected[16 * 7:]
