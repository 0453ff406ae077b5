"""Folding split into a plan, parts and one commit, for any engine that runs workers.

>>> from sheaf import folding
>>> plan = folding.plan("hdfs://nn:9000/raw/clips", "hdfs://nn:9000/datasets/clips", partitions=64)
>>> for k in range(len(plan["parts"])):          # on any worker, in any order, retried freely
...     folding.fold_part(plan["location"], k)
>>> folding.commit(plan["location"])             # once, when every part has finished

These are the calls behind `sheaf fold --plan`, `--part K` and `--commit`, and behind
`sheaf.spark.fold`. Parts name their containers after the plan and their number, so a retried
or duplicated part writes the same bytes under the same names; only the commit publishes.
"""

from __future__ import annotations

import json
import os
import re
from ctypes import byref, string_at
from typing import Any, Optional, Union

from . import _native
from ._native import Bytes, lib
from .errors import from_status

Size = Union[int, str]

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}


def parse_size(size: Size) -> int:
    """Bytes in `size`: an int, or text such as "4MiB", "512 KiB", "1GiB"."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", size)
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"{size!r} is not a size: use a number of bytes or e.g. 4MiB, 1GiB")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _call(function, *args) -> dict[str, Any]:
    out = Bytes()
    status = function(*args, byref(out))
    if status != _native.OK:
        raise from_status(status, _native.last_error())
    try:
        return json.loads(string_at(out.data, out.len))
    finally:
        lib.sheaf_bytes_free(byref(out))


def _text(location: Union[str, os.PathLike]) -> bytes:
    return os.fsencode(location)


def plan(src: Union[str, os.PathLike], dst: Union[str, os.PathLike, None] = None, *,
         partitions: int, threshold: Size = "4MiB", container_size: Size = "1GiB",
         max_entries: int = 1 << 20, compress: str = "none", append: bool = False,
         prefix: str = "", in_place: bool = False, remove_originals: bool = False,
         surveys: Optional[list[dict[str, Any]]] = None,
         sample: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """Plans folding `src` into `dst` (a new root, or with `append` a published dataset, under
    `prefix`; with `in_place`, no `dst`: `src` is folded where it lies, and with
    `remove_originals` the commit then deletes the folded originals) in at most `partitions`
    parts of about equal bytes. Returns the plan (its `parts`, `entries`, `bytes`, ...) with
    its `location`, the argument of the other calls, and `resumed` (an unfinished plan of the
    same fold continued).

    The planner lists the whole tree itself unless it is given `surveys` (what `survey`
    returned for each of `branches`' ranges, in order: the listing made by many workers) or
    `sample` (from `manifest_sample`: no listing at all). Either only decides where the parts
    are cut; each part lists its own range when it is folded."""
    request = {
        "src": os.fsdecode(src), "dst": None if dst is None else os.fsdecode(dst),
        "partitions": int(partitions), "threshold": parse_size(threshold),
        "container_size": parse_size(container_size), "max_entries": int(max_entries),
        "compress": compress, "append": bool(append), "prefix": prefix,
        "in_place": bool(in_place), "remove_originals": bool(remove_originals),
    }
    if surveys is not None:
        request["surveys"] = surveys
    if sample is not None:
        request["sample"] = sample
    return _call(lib.sheaf_fold_plan, json.dumps(request).encode())


def branches(src: Union[str, os.PathLike], ranges: int) -> list[dict[str, Optional[str]]]:
    """Cuts the tree at `src` into at most `ranges` consecutive ranges (`from_hex`, `until_hex`)
    by listing its top levels only; each is then listed apart with `survey`."""
    request = {"src": os.fsdecode(src), "ranges": int(ranges)}
    return _call(lib.sheaf_fold_branches, json.dumps(request).encode())["ranges"]


def survey(src: Union[str, os.PathLike], branch: dict[str, Optional[str]], *, limit: int,
           threshold: Size = "4MiB", in_place: bool = False) -> dict[str, Any]:
    """Lists one range from `branches` and returns its counts and at most `limit` sampled
    paths: one element of `plan`'s `surveys`."""
    request = {"src": os.fsdecode(src), "from_hex": branch.get("from_hex"),
               "until_hex": branch.get("until_hex"), "threshold": parse_size(threshold),
               "in_place": bool(in_place), "limit": int(limit)}
    return _call(lib.sheaf_fold_survey, json.dumps(request).encode())


def fold_part(location: Union[str, os.PathLike], part: int) -> dict[str, Any]:
    """Folds part `part` of the plan at `location`; returns its summary (`already_done` when an
    earlier run had finished it)."""
    return _call(lib.sheaf_fold_part, _text(location), int(part))


def commit(location: Union[str, os.PathLike]) -> dict[str, Any]:
    """Publishes every part of the plan at `location` as one generation; returns the fold's
    summary. Refused, publishing nothing, while a part has not finished."""
    return _call(lib.sheaf_fold_commit, _text(location))
