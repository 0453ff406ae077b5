"""Epoch orders over a dataset's files, look-ahead fetches and node-sharded preloads.

An epoch order shuffles the containers with (seed, epoch), shuffles the files within windows
of `window` containers, and cuts the result into `parts` equal slices (one per rank, or per
rank and DataLoader worker). It is computed in the native library, so every process and
every release gets the same order for the same files and settings.
"""

from __future__ import annotations

import ctypes
import json
import os
from ctypes import byref, c_uint64, c_void_p
from typing import Any, Iterable, Iterator, Optional, Sequence, Tuple, Union, overload

from . import _native
from ._native import Bytes, OrderSettings, lib
from .errors import from_status

#: Containers per shuffling window unless asked otherwise (the native library's default).
DEFAULT_WINDOW = 8


def _check(status: int) -> None:
    if status != _native.OK:
        raise from_status(status, _native.last_error())


def _settings(seed: int, epoch: int, window: int, part: int, parts: int,
              drop_last: bool) -> OrderSettings:
    for name, value in (("seed", seed), ("epoch", epoch), ("window", window), ("part", part),
                        ("parts", parts)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a whole number of 0 or more, not {value!r}")
    return OrderSettings(seed % 2**64, epoch, window, part, parts, 1 if drop_last else 0)


class Order(Sequence[int]):
    """Sample numbers in an epoch's order: indices into the files below the directory the
    samples were taken from, in path order. Held in native memory (8 bytes a sample)."""

    def __init__(self, out: Bytes):
        self._out = out
        count = out.len // 8
        if count:
            array = (c_uint64 * count).from_address(out.data)
            self._numbers = memoryview(array).cast("B").cast("Q")
        else:
            self._numbers = memoryview(b"").cast("Q")

    def __len__(self) -> int:
        return len(self._numbers)

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> list: ...

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._numbers[index].tolist()
        return self._numbers[index]

    def __iter__(self) -> Iterator[int]:
        # A generator keeps the Order (and so its native memory) alive while it runs.
        yield from self._numbers

    def tolist(self) -> list:
        return self._numbers.tolist()

    def __del__(self) -> None:
        numbers = getattr(self, "_numbers", None)
        if numbers is not None:
            numbers.release()
            lib.sheaf_bytes_free(byref(self._out))


class Samples:
    """The regular files below a directory of a dataset, numbered in path order (the order of
    `Dataset.files(under)`), with the container each is stored in. Make one with
    `Dataset.samples(under)`; it does not need the dataset afterwards."""

    def __init__(self, handle: int, under: bytes):
        self._handle: Optional[int] = None
        out = c_void_p()
        _check(lib.sheaf_samples_open(handle, under, len(under), byref(out)))
        self._handle = out.value

    def __len__(self) -> int:
        count = c_uint64()
        _check(lib.sheaf_samples_len(self._h(), byref(count)))
        return count.value

    def _h(self) -> int:
        if self._handle is None:
            raise ValueError("the samples were closed")
        return self._handle

    def order(self, *, seed: int = 0, epoch: int = 0, window: int = DEFAULT_WINDOW,
              part: int = 0, parts: int = 1, drop_last: bool = False, start: int = 0) -> Order:
        """Slice `part` of `parts` of the epoch's order, from its `start`-th sample on (to
        resume mid-epoch). Every slice has the same length: rounded up and padded by wrapping
        round to the epoch's start, or rounded down (`drop_last`)."""
        settings = _settings(seed, epoch, window, part, parts, drop_last)
        if not isinstance(start, int) or start < 0:
            raise ValueError(f"start must be a whole number of 0 or more, not {start!r}")
        out = Bytes()
        _check(lib.sheaf_samples_order(self._h(), byref(settings), start, byref(out)))
        return Order(out)

    def windows(self, *, seed: int = 0, epoch: int = 0, window: int = DEFAULT_WINDOW,
                part: int = 0, parts: int = 1, drop_last: bool = False) -> list:
        """The windows of the same slice, in order: `{"samples": n, "containers": [...]}`, the
        first n numbers of `order(...)` stored in the first window's containers, and so on."""
        settings = _settings(seed, epoch, window, part, parts, drop_last)
        out = Bytes()
        _check(lib.sheaf_samples_windows(self._h(), byref(settings), byref(out)))
        try:
            return json.loads(ctypes.string_at(out.data, out.len))
        finally:
            lib.sheaf_bytes_free(byref(out))

    def close(self) -> None:
        if self._handle is not None:
            lib.sheaf_samples_free(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()

    def __reduce__(self):
        raise TypeError("sheaf Samples hold native memory and cannot be pickled: make them "
                        "again with Dataset.samples() in the process that needs them")


def fetch_ahead(handle: int, containers: Iterable[int]) -> int:
    """Copies these containers (catalog positions) into the dataset's cache; bytes copied."""
    wanted = list(containers)
    array = (c_uint64 * len(wanted))(*wanted)
    copied = c_uint64()
    _check(lib.sheaf_fetch_ahead(handle, array, len(wanted), byref(copied)))
    return copied.value


def preload(dataset: Union[str, os.PathLike], cache: Union[str, os.PathLike], *,
            prefixes: Sequence[str] = (), pin: bool = False, jobs: int = 8,
            generation: Optional[int] = None, shard: Optional[Tuple[int, int]] = None,
            seed: int = 0, epoch: int = 0, window: int = DEFAULT_WINDOW,
            under: str = "") -> dict[str, Any]:
    """Copies the dataset's containers into the cache directory, as `sheaf preload` does, and
    returns its summary. With `shard=(rank, world)`, only the containers that rank reads first
    in `epoch` of the files below `under` (the order `ShuffledSampler` gives it with the same
    `seed` and `window`): every container lands on one node, and each node reads its share
    from its own cache."""
    request: dict[str, Any] = {"prefixes": list(prefixes), "pin": bool(pin), "jobs": int(jobs)}
    if generation is not None:
        request["generation"] = int(generation)
    if shard is not None:
        rank, world = shard
        request["shard"] = {"rank": int(rank), "world": int(world), "seed": int(seed) % 2**64,
                            "epoch": int(epoch), "window": int(window), "under": under}
    out = Bytes()
    _check(lib.sheaf_preload(os.fsencode(dataset), os.fsencode(cache),
                             json.dumps(request).encode(), byref(out)))
    try:
        return json.loads(ctypes.string_at(out.data, out.len))
    finally:
        lib.sheaf_bytes_free(byref(out))
