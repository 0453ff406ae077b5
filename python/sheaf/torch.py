"""PyTorch integration: datasets over the files of a folded dataset, and a sampler that
shuffles by windows of containers.

>>> from sheaf.torch import FoldedDataset, ShuffledSampler
>>> data = FoldedDataset("s3://bucket/images", prefix="train", transform=decode_jpeg,
...                      cache="/ssd/sheaf")
>>> sampler = ShuffledSampler(data, seed=17)          # rank and world from torch.distributed
>>> loader = torch.utils.data.DataLoader(data, batch_size=64, sampler=sampler, num_workers=8)
>>> for epoch in range(epochs):
...     sampler.set_epoch(epoch)
...     for batch in loader: ...

A fully random order over a dataset larger than the node's cache makes every read a miss.
`ShuffledSampler` shuffles the containers by (seed, epoch), then the files within windows of
`window` containers, and gives each DDP rank an equal, contiguous share of that order, so a
rank reads a few containers at a time and each container from one rank. The same (seed,
epoch) gives the same order on every machine, and `set_epoch(epoch, start=n)` resumes after
the n samples already trained on. `sheaf preload --shard RANK/WORLD --seed S --epoch E`
copies exactly the containers a rank reads first, so a cluster preloads each byte once.

`StreamingDataset` yields the same order as an `IterableDataset`: DataLoader workers take
turns batch by batch (the loader's output is the rank's order), and with a cache directory each
window's containers are fetched whole (one sequential read each, shared among the workers)
before its samples are read, the next window's while the current one is read.

Works with DataLoader workers started by fork or spawn: the sheaf dataset reopens itself in
each worker.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple, Union

try:
    import torch.distributed as _distributed
    from torch.utils.data import Dataset as _TorchDataset
    from torch.utils.data import IterableDataset as _TorchIterableDataset
    from torch.utils.data import Sampler as _TorchSampler
    from torch.utils.data import get_worker_info as _worker_info
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sheaf.torch needs PyTorch: pip install torch (sheaf itself works without it)"
    ) from missing

from ._dataset import Dataset, PathArg
from ._order import DEFAULT_WINDOW

Transform = Callable[[str, bytes], Any]


def _open(dataset: Union[Dataset, PathArg], cache: Optional[PathArg]) -> Dataset:
    return dataset if isinstance(dataset, Dataset) else Dataset(dataset, cache=cache)


def _rank_and_world(rank: Optional[int], world: Optional[int]) -> Tuple[int, int]:
    """The caller's, else torch.distributed's when it is initialized, else 0 of 1."""
    if rank is None or world is None:
        joined = _distributed.is_available() and _distributed.is_initialized()
        if rank is None:
            rank = _distributed.get_rank() if joined else 0
        if world is None:
            world = _distributed.get_world_size() if joined else 1
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank {rank} of {world}: ranks count from 0 and stay below world")
    return rank, world


class FoldedDataset(_TorchDataset):
    """Item `i` is `transform(path, data)` (or the file's bytes when there is no transform)
    for the i-th path: the `paths` given, or every file below `prefix` in path order."""

    def __init__(
        self,
        dataset: Union[Dataset, PathArg],
        paths: Optional[Iterable[str]] = None,
        *,
        prefix: str = "",
        transform: Optional[Transform] = None,
        cache: Optional[PathArg] = None,
    ):
        self.dataset = _open(dataset, cache)
        #: The directory the items were listed from; None when the paths were given.
        self.prefix: Optional[str] = None if paths is not None else prefix
        self.paths = list(paths) if paths is not None else list(self.dataset.files(prefix))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        path = self.paths[index]
        data = self.dataset.read(path)
        return self.transform(path, data) if self.transform is not None else data


class ShuffledSampler(_TorchSampler):
    """Indices of a `FoldedDataset` in a container-aware shuffled order: containers shuffled
    by (seed, epoch), files shuffled within windows of `window` containers, the epoch cut into
    `world` equal contiguous shares (rank `rank` takes one). Shares are padded by wrapping
    round to the epoch's start, or cut short with `drop_last`, as `DistributedSampler` does."""

    def __init__(
        self,
        data: FoldedDataset,
        *,
        seed: int = 0,
        window: int = DEFAULT_WINDOW,
        rank: Optional[int] = None,
        world: Optional[int] = None,
        drop_last: bool = False,
    ):
        if not isinstance(data, FoldedDataset) or data.prefix is None:
            raise ValueError(
                "ShuffledSampler orders a FoldedDataset listed from a prefix (not one given "
                "its paths): it needs to know which container holds each file"
            )
        self.rank, self.world = _rank_and_world(rank, world)
        self.seed, self.window, self.drop_last = seed, window, drop_last
        self.samples = data.dataset.samples(data.prefix)
        if len(self.samples) != len(data):
            raise ValueError(
                f"the dataset changed under the FoldedDataset: {len(data)} paths listed, "
                f"{len(self.samples)} files now"
            )
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Orders the coming pass as `epoch`; `start` skips the first samples of this rank's
        share (those already trained on, to resume mid-epoch)."""
        self.epoch, self.start = epoch, start

    def order(self):
        """This rank's share of the epoch from `start`, as a sequence of indices."""
        return self.samples.order(seed=self.seed, epoch=self.epoch, window=self.window,
                                  part=self.rank, parts=self.world, drop_last=self.drop_last,
                                  start=self.start)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order())

    def __len__(self) -> int:
        total = len(self.samples)
        share = total // self.world if self.drop_last else -(-total // self.world)
        return max(share - self.start, 0)


class StreamingDataset(_TorchIterableDataset):
    """The files below `prefix` in the order `ShuffledSampler` gives this rank (the same
    seed, window and epoch), as an iterable: items are `transform(path, data)` or the bytes.

    DataLoader workers take turns by `batch_size` samples (give the loader's batch size), so
    the loader yields exactly the rank's order, and `set_epoch(epoch, start=n)` resumes after
    n samples. With a `cache` directory, each window's containers are fetched whole before its
    samples are read, and the next window's in the background (the workers share the
    fetching), so a dataset on an object store is read one large sequential request per
    container."""

    def __init__(
        self,
        dataset: Union[Dataset, PathArg],
        *,
        prefix: str = "",
        transform: Optional[Transform] = None,
        cache: Optional[PathArg] = None,
        seed: int = 0,
        window: int = DEFAULT_WINDOW,
        batch_size: int = 1,
        rank: Optional[int] = None,
        world: Optional[int] = None,
        drop_last: bool = False,
        fetch_ahead: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size!r}")
        self.dataset = _open(dataset, cache)
        self.prefix, self.transform = prefix, transform
        self.rank, self.world = _rank_and_world(rank, world)
        self.seed, self.window, self.drop_last = seed, window, drop_last
        self.batch_size = batch_size
        self.fetch_ahead = fetch_ahead
        self.epoch = 0
        self.start = 0
        self._listed: Optional[tuple] = None

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Streams `epoch` next, skipping the first `start` samples of this rank's share."""
        self.epoch, self.start = epoch, start

    def __getstate__(self) -> dict:
        # Workers list the files themselves: native samples do not travel.
        state = dict(self.__dict__)
        state["_listed"] = None
        return state

    def _list(self) -> tuple:
        if self._listed is None:
            self._listed = (self.dataset.samples(self.prefix), list(self.dataset.files(self.prefix)))
        return self._listed

    def __len__(self) -> int:
        total = len(self._list()[0])
        share = total // self.world if self.drop_last else -(-total // self.world)
        return max(share - self.start, 0)

    def __iter__(self) -> Iterator[Any]:
        info = _worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        samples, paths = self._list()
        settings = dict(seed=self.seed, epoch=self.epoch, window=self.window, part=self.rank,
                        parts=self.world, drop_last=self.drop_last)
        order = samples.order(**settings)
        windows = samples.windows(**settings)
        ahead = _FetchAhead(self.dataset, worker, workers) if self._fetches() else None
        try:
            yield from self._stream(order, windows, worker, workers, paths, ahead)
        finally:
            if ahead is not None:
                ahead.stop()

    def _fetches(self) -> bool:
        return self.fetch_ahead and self.dataset._cache is not None

    def _stream(self, order, windows, worker, workers, paths, ahead) -> Iterator[Any]:
        """This worker's turns of the rank's order from `start`. On entering a window, its
        containers are made sure of (a whole fetch beats a ranged read per sample, and a
        container another worker is fetching is waited for, not fetched twice) and the next
        window's are fetched in the background."""
        ends, at = [], 0
        for window in windows:
            at += window["samples"]
            ends.append(at)
        current = None
        for position in range(self.start, len(order)):
            window = current if current is not None else 0
            while window < len(ends) and position >= ends[window]:
                window += 1
            if window != current:
                current = window
                if ahead is not None and current < len(windows):
                    ahead.wait_for(windows[current]["containers"])
                    if current + 1 < len(windows):
                        ahead.fetch(windows[current + 1]["containers"])
            if (position - self.start) // self.batch_size % workers != worker:
                continue
            path = paths[order[position]]
            data = self.dataset.read(path)
            yield self.transform(path, data) if self.transform is not None else data


class _FetchAhead:
    """A worker's background thread copying its turn of each coming window's containers
    into the cache (container j of a window is fetched by worker j mod workers)."""

    def __init__(self, dataset: Dataset, worker: int, workers: int):
        self.dataset, self.worker, self.workers = dataset, worker, workers
        self.pending: list = []
        self.ready = threading.Condition()
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="sheaf-fetch-ahead", daemon=True)
        self.thread.start()

    def _mine_first(self, containers: list) -> list:
        mine = [c for j, c in enumerate(containers) if j % self.workers == self.worker]
        return mine + [c for c in containers if c not in mine]

    def fetch(self, containers: list) -> None:
        """Fetches this worker's turn of `containers` in the background."""
        mine = [c for j, c in enumerate(containers) if j % self.workers == self.worker]
        if mine:
            with self.ready:
                self.pending.append(mine)
                self.ready.notify()

    def wait_for(self, containers: list) -> None:
        """Returns once every container is in the cache (fetching this worker's turn first,
        then waiting out the others' fetches), or failed to get there: reads then go to the
        origin."""
        try:
            self.dataset.fetch_ahead(self._mine_first(containers))
        except Exception:  # noqa: BLE001 - a failed fetch only means reads go to the origin
            pass

    def stop(self) -> None:
        with self.ready:
            self.stopped = True
            self.ready.notify()

    def _run(self) -> None:
        while True:
            with self.ready:
                while not self.pending and not self.stopped:
                    self.ready.wait()
                if self.stopped:
                    return
                containers = self.pending.pop(0)
            try:
                self.dataset.fetch_ahead(containers)
            except Exception:  # noqa: BLE001 - a failed fetch only means reads go to the origin
                pass
