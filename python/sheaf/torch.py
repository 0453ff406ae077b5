"""PyTorch integration: a map-style Dataset over the files of a folded dataset.

>>> from sheaf.torch import FoldedDataset
>>> data = FoldedDataset("s3://bucket/images", prefix="train", transform=decode_jpeg)
>>> loader = torch.utils.data.DataLoader(data, batch_size=64, num_workers=8)

Works with DataLoader workers started by fork or spawn: the sheaf dataset reopens itself in
each worker.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

try:
    from torch.utils.data import Dataset as _TorchDataset
except ImportError as missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sheaf.torch needs PyTorch: pip install torch (sheaf itself works without it)"
    ) from missing

from ._dataset import Dataset, PathArg


class FoldedDataset(_TorchDataset):
    """Item `i` is `transform(path, data)` (or the file's bytes when there is no transform)
    for the i-th path: the `paths` given, or every file below `prefix` in path order."""

    def __init__(
        self,
        dataset: Union[Dataset, PathArg],
        paths: Optional[Iterable[str]] = None,
        *,
        prefix: str = "",
        transform: Optional[Callable[[str, bytes], Any]] = None,
        cache: Optional[PathArg] = None,
    ):
        self.dataset = dataset if isinstance(dataset, Dataset) else Dataset(dataset, cache=cache)
        self.paths = list(paths) if paths is not None else list(self.dataset.files(prefix))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        path = self.paths[index]
        data = self.dataset.read(path)
        return self.transform(path, data) if self.transform is not None else data
