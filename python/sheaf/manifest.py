"""Read a listing someone else made (an S3 inventory, a `hdfs dfs -ls -R` dump) so a planned
fold need not list the tree at all.

>>> from sheaf import folding, manifest
>>> sample = manifest.sample("s3://logs/inventory.parquet", "s3://raw/clips", limit=128_000)
>>> plan = folding.plan("s3://raw/clips", "s3://datasets/clips", partitions=2000, sample=sample)

A manifest is a Parquet file, a CSV file with a header, or a `hdfs dfs -ls -R` text dump, on
local disk or any filesystem pyarrow opens. Parquet and CSV name the path column `path` or
`key` and the size column `size` (an S3 inventory's `key` and `size` work as they are); rows
need not be in any order. The planner only needs where to cut the tree into parts of about
equal bytes, so it gets a uniform random sample of the rows (at most `limit` of them) and the
manifest's totals, never the whole listing.
"""

from __future__ import annotations

import math
import os
import random
import re
from typing import Any, Iterator, Optional, Union
from urllib.parse import urlsplit

# One `hdfs dfs -ls -R` line: permissions, replication (or -), owner, group, size, date, time,
# path (which may hold spaces).
_LS_LINE = re.compile(rb"^([-dl])[-rwxXsStT+]{9}\S*\s+\S+\s+\S+\s+\S+\s+(\d+)\s+\S+\s+\S+\s+(.+)$")

_BATCH = 1 << 16


def sample(manifest: Union[str, os.PathLike], src: Union[str, os.PathLike], *, limit: int,
           seed: Optional[int] = None) -> dict[str, Any]:
    """A uniform sample of at most about `limit` of the files `manifest` lists, with its
    totals: `{"rows": N, "bytes": B, "sample": [[path_hex, size], ...]}`, what
    `folding.plan(sample=...)` takes. Paths are made relative to `src` (a row naming
    `src/a/b.jpg` in full, as a URI, an absolute path or a bucket key, becomes `a/b.jpg`)."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    strip = _prefixes(os.fsdecode(src))
    sampler = _Sampler(limit, random.Random(seed))
    for paths, sizes in _rows(os.fsdecode(manifest)):
        sampler.add(paths, sizes)
    return {
        "rows": sampler.rows,
        "bytes": sampler.bytes,
        "sample": [[_relative(path, strip).hex(), size] for path, size in sampler.kept],
    }


class _Sampler:
    """Bernoulli sampling whose rate halves whenever the sample outgrows twice `limit` (the
    kept rows are thinned by the same coin), so any number of rows is sampled uniformly in one
    pass. Rows are skipped by geometric jumps: the work is per kept row, not per row."""

    def __init__(self, limit: int, rng: random.Random):
        self.limit, self.rng = limit, rng
        self.rate = 1.0
        self.rows = self.bytes = 0
        self.kept: list[tuple[bytes, int]] = []
        self._skip = 0

    def add(self, paths: list, sizes: list) -> None:
        n = len(sizes)
        self.rows += n
        self.bytes += sum(sizes) if isinstance(sizes, list) else int(sizes.sum())
        at = self._skip
        while at < n:
            self.kept.append((_as_bytes(paths[at]), int(sizes[at])))
            if len(self.kept) > 2 * self.limit:
                self.rate /= 2
                self.kept = [row for row in self.kept if self.rng.random() < 0.5]
            at += 1 + self._gap()
        self._skip = at - n

    def _gap(self) -> int:
        """Rows skipped before the next kept one, at the current rate."""
        if self.rate >= 1.0:
            return 0
        u = 1.0 - self.rng.random()
        return int(math.log(u) / math.log1p(-self.rate))


def _as_bytes(path) -> bytes:
    if isinstance(path, bytes):
        return path
    return os.fsencode(str(path))


def _prefixes(src: str) -> list[bytes]:
    """What a manifest's path may begin with when it names a file under `src` in full."""
    found = [src.rstrip("/") + "/"]
    parts = urlsplit(src)
    if parts.scheme and parts.netloc:
        path = parts.path.strip("/")
        found += [f"/{path}/" if path else "/", f"{path}/" if path else ""]
    elif not parts.scheme:
        found.append(os.path.abspath(src).rstrip("/") + "/")
    return [os.fsencode(p) for p in found if p]


def _relative(path: bytes, prefixes: list[bytes]) -> bytes:
    for prefix in prefixes:
        if path.startswith(prefix):
            return path[len(prefix):]
    return path.lstrip(b"/")


def _rows(manifest: str) -> Iterator[tuple[list, Any]]:
    """The manifest's `(paths, sizes)` in batches, by its format."""
    lower = manifest.lower()
    if lower.endswith(".parquet") or lower.endswith(".parq"):
        yield from _parquet_rows(manifest)
    elif lower.endswith(".csv") or lower.endswith(".csv.gz"):
        yield from _csv_rows(manifest)
    else:
        yield from _ls_rows(manifest)


def _columns(names: list[str], manifest: str) -> tuple[str, str]:
    path = next((c for c in ("path", "key") if c in names), None)
    if path is None or "size" not in names:
        raise ValueError(f"{manifest}: a manifest needs a `path` (or `key`) column and a "
                         f"`size` column; it has {names}")
    return path, "size"


def _parquet_rows(manifest: str) -> Iterator[tuple[Any, Any]]:
    import pyarrow.parquet as pq

    with _open(manifest, seekable=True) as stream:
        table = pq.ParquetFile(stream)
        path, size = _columns(table.schema_arrow.names, manifest)
        for batch in table.iter_batches(batch_size=_BATCH, columns=[path, size]):
            yield _batch_rows(batch, path, size)


def _csv_rows(manifest: str) -> Iterator[tuple[Any, Any]]:
    import pyarrow.csv as pcsv

    with _open(manifest) as stream:
        reader = pcsv.open_csv(stream)
        path, size = _columns(reader.schema.names, manifest)
        for batch in reader:
            yield _batch_rows(batch, path, size)


def _batch_rows(batch, path: str, size: str) -> tuple[list, Any]:
    import pyarrow.compute as pc

    sizes = batch.column(size).cast("int64")
    if sizes.null_count:
        sizes = pc.fill_null(sizes, 0)
    # Paths are converted only where sampled: a lazy view keeps a batch's cost per kept row.
    return _LazyColumn(batch.column(path)), _Sizes(sizes)


class _LazyColumn:
    def __init__(self, column):
        self.column = column

    def __getitem__(self, i: int):
        return self.column[i].as_py()


class _Sizes:
    """An int64 Arrow array that answers `len`, `[i]` and `sum()` without becoming a list."""

    def __init__(self, array):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, i: int) -> int:
        return self.array[i].as_py()

    def sum(self) -> int:
        import pyarrow.compute as pc

        return int(pc.sum(self.array).as_py() or 0)


def _ls_rows(manifest: str) -> Iterator[tuple[list, list]]:
    paths: list[bytes] = []
    sizes: list[int] = []
    with _open(manifest) as stream:
        for line in _lines(stream):
            match = _LS_LINE.match(line.rstrip(b"\r"))
            if match is None or match.group(1) != b"-":
                continue  # directories, links, "Found N items" headers
            paths.append(match.group(3))
            sizes.append(int(match.group(2)))
            if len(paths) == _BATCH:
                yield paths, sizes
                paths, sizes = [], []
    if paths:
        yield paths, sizes


def _lines(stream) -> Iterator[bytes]:
    rest = b""
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        *lines, rest = (rest + chunk).split(b"\n")
        yield from lines
    if rest:
        yield rest


def _open(manifest: str, seekable: bool = False):
    """The manifest as a binary stream (decompressed when its name ends in .gz and it is not
    Parquet), from local disk or any filesystem pyarrow opens by URI."""
    import pyarrow as pa
    from pyarrow import fs

    if "://" in manifest:
        filesystem, path = fs.FileSystem.from_uri(manifest)
    else:
        filesystem, path = fs.LocalFileSystem(), os.path.abspath(manifest)
    if seekable:
        return filesystem.open_input_file(path)
    stream = filesystem.open_input_stream(path, compression=None)
    if manifest.lower().endswith(".gz"):
        return pa.CompressedInputStream(stream, "gzip")
    return stream
