"""Read folded sheaf datasets by the paths of the tree they were folded from.

>>> import sheaf
>>> ds = sheaf.open("s3://bucket/datasets/images", cache="/ssd/sheaf")
>>> data = ds.read("train/cat/0001.jpg")
>>> ds.listdir("train")
['cat', 'dog']

Paths are relative to the dataset root as in the source tree; `""`, `"."` and `"/"` name the
root. A `Dataset` may be shared by many threads (reads release the GIL) and survives `fork`
and pickling, so PyTorch DataLoader workers started either way get a working dataset.
"""

from __future__ import annotations

from ._dataset import Dataset, File, Routes, StatResult, open, open_routes
from ._order import Order, Samples, preload
from .errors import (
    BufferTooSmall,
    CorruptData,
    Error,
    InternalError,
    InvalidPath,
    IsADirectory,
    NotADataset,
    NotADirectory,
    NotFound,
    OriginError,
    StorageError,
    UnsupportedVersion,
    WrongKind,
)
from ._native import lib as _lib

__version__: str = _lib.sheaf_version().decode()

__all__ = [
    "BufferTooSmall",
    "CorruptData",
    "Dataset",
    "Error",
    "File",
    "InternalError",
    "InvalidPath",
    "IsADirectory",
    "NotADataset",
    "NotADirectory",
    "NotFound",
    "Order",
    "OriginError",
    "Routes",
    "Samples",
    "StatResult",
    "StorageError",
    "UnsupportedVersion",
    "WrongKind",
    "open",
    "open_routes",
    "preload",
]
