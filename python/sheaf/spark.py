"""Fold a tree with Apache Spark: the driver plans, each task folds one part, the driver commits.

>>> from pyspark.sql import SparkSession
>>> import sheaf.spark
>>> spark = SparkSession.builder.getOrCreate()
>>> result = sheaf.spark.fold(spark, "hdfs://nn:9000/raw/clips", "hdfs://nn:9000/datasets/clips",
...                           partitions=2000, threshold="4MiB", compress="auto")
>>> result.files, result.containers, result.objects_before, result.objects_after

Tasks run through Spark's Arrow path (`mapInArrow`) and return only their part's summary:
data never reaches the driver. The native library travels inside this package, so executors
need nothing but `pip install sheaf[spark]`. A retried or speculative task writes the same
containers under the same names; a failed job publishes nothing, and running it again reuses
the parts that finished (`sheaf gc` removes what a failed attempt left).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from . import folding
from . import manifest as sheaf_manifest

log = logging.getLogger("sheaf.spark")

# What each task returns: its part's summary (see sheaf::fold::parts::PartSummary).
_PART_FIELDS = [
    ("part", "int"), ("already_done", "boolean"), ("files_folded", "long"),
    ("bytes_folded", "long"), ("symlinks", "long"), ("dirs", "long"), ("files_kept", "long"),
    ("bytes_kept", "long"), ("special_skipped", "long"), ("containers", "long"),
    ("bytes_stored", "long"), ("containers_reused", "long"), ("elapsed_secs", "double"),
]
_PART_SCHEMA = ", ".join(f"{name} {kind}" for name, kind in _PART_FIELDS)


@dataclass
class FoldResult:
    """What a Spark fold did: the committed generation and the counts of the whole tree."""

    dataset: str
    generation: int
    parts: int
    #: Parts an earlier, unfinished run of the same fold had finished (not folded again).
    resumed_parts: int
    files: int
    bytes: int
    symlinks: int
    dirs: int
    files_kept: int
    bytes_kept: int
    containers: int
    bytes_stored: int
    objects_before: int
    objects_after: int
    #: In place with `remove_originals`: originals deleted, and kept because they changed.
    originals_removed: int
    originals_changed: int
    elapsed_secs: float
    #: The commit's summary (see `sheaf fold --commit --json`).
    summary: dict[str, Any]
    #: Each part's summary, in part order (files, bytes, containers, seconds of its task).
    part_summaries: list[dict[str, Any]]


def fold(spark: Any, src: Union[str, os.PathLike], dst: Union[str, os.PathLike, None] = None,
         *, partitions: Optional[int] = None, threshold: folding.Size = "4MiB",
         container_size: folding.Size = "1GiB", max_entries: int = 1 << 20,
         compress: str = "none", append: bool = False, prefix: str = "",
         in_place: bool = False, remove_originals: bool = False, listing: str = "tasks",
         manifest: Union[str, os.PathLike, None] = None,
         task_hook: Optional[Callable[[int], None]] = None) -> FoldResult:
    """Folds `src` into `dst` with `spark`'s executors and commits one generation.

    `partitions` (default: twice Spark's default parallelism) is the most parts the tree is
    cut into, one task each. With `append`, the tree is added to the published dataset `dst`
    under `prefix`. With `in_place` (and no `dst`), `src` is folded where it lies (its
    containers under `src/.sheaf/`, large files left as they are); `remove_originals` then
    deletes each folded original once the committed generation re-reads clean.

    Where the parts are cut (about equal bytes each) is learnt from a listing of the tree: with
    `listing="tasks"` (the default) the driver lists only the top levels and Spark tasks list
    the ranges between them in parallel (a first, short stage); `listing="driver"` lists the
    whole tree from the driver; `manifest` (a Parquet or CSV listing with `path` or `key` and
    `size` columns, such as an S3 inventory, or a `hdfs dfs -ls -R` dump: see
    `sheaf.manifest`) replaces the listing, sampled by the driver. Each part lists its own
    range when it is folded, whichever is used.

    `task_hook`, when given, is called on the executor with the part number before each part
    is folded (for instrumentation, or to inject faults in tests).

    Raises what the plan or the commit raises; a task that keeps failing fails the job (after
    Spark's retries) and nothing is published. Calling `fold` again with the same arguments
    continues the unfinished plan: the parts that finished are not folded again.
    """
    started = time.monotonic()
    if partitions is None:
        partitions = 2 * spark.sparkContext.defaultParallelism
    if listing not in ("tasks", "driver"):
        raise ValueError(f"listing must be 'tasks' or 'driver', not {listing!r}")
    known: dict[str, Any] = {}
    if manifest is not None:
        known["sample"] = sheaf_manifest.sample(manifest, src, limit=_CUT_SAMPLES * partitions)
        log.info("sheaf: sampled %d of the %d files (%d bytes) the manifest %s lists",
                 len(known["sample"]["sample"]), known["sample"]["rows"],
                 known["sample"]["bytes"], os.fsdecode(manifest))
    elif listing == "tasks":
        known["surveys"] = _survey_in_tasks(spark, src, partitions, threshold, in_place)
    plan = folding.plan(src, dst, partitions=partitions, threshold=threshold,
                        container_size=container_size, max_entries=max_entries,
                        compress=compress, append=append, prefix=prefix, in_place=in_place,
                        remove_originals=remove_originals, **known)
    if dst is None:
        dst = src
    location, parts = plan["location"], len(plan["parts"])
    log.info("sheaf: %s %d parts of %d entries (%d bytes) from %s: %s",
             "continuing the unfinished plan of" if plan["resumed"] else "planned", parts,
             plan["entries"], plan["bytes"], os.fsdecode(src), location)

    def fold_parts(batches):
        # Runs on the executors: one part per row, each part's summary back as one row.
        import pyarrow as pa
        from pyspark import TaskContext

        # A task folds with the cores Spark gave it (spark.task.cpus), not the machine's: set
        # before the library's first fold in this worker starts its thread pool.
        os.environ.setdefault("RAYON_NUM_THREADS", str(TaskContext.get().cpus()))
        from sheaf import folding as on_executor

        schema = pa.schema([(name, _ARROW[kind]) for name, kind in _PART_FIELDS])
        for batch in batches:
            for part in batch.column(0).to_pylist():
                if task_hook is not None:
                    task_hook(int(part))
                done = on_executor.fold_part(location, int(part))
                yield pa.RecordBatch.from_pylist([done], schema=schema)

    ids = spark.range(0, parts, 1, numPartitions=parts).withColumnRenamed("id", "part")
    spark.sparkContext.setJobDescription(f"sheaf fold: {parts} parts of {os.fsdecode(src)}")
    rows = ids.mapInArrow(fold_parts, _PART_SCHEMA).collect()
    folded = sum(r["bytes_folded"] + r["bytes_kept"] for r in rows)
    seconds = time.monotonic() - started
    log.info("sheaf: %d parts folded %d files, %d bytes in %.1f s (%.1f MiB/s); committing",
             len(rows), sum(r["files_folded"] + r["files_kept"] for r in rows), folded,
             seconds, folded / max(seconds, 1e-9) / (1 << 20))
    summary = folding.commit(location)
    result = FoldResult(
        dataset=os.fsdecode(dst), generation=summary["generation"], parts=parts,
        resumed_parts=sum(1 for r in rows if r["already_done"]),
        files=summary["files_folded"] + summary["files_kept"], bytes=summary["bytes_folded"],
        symlinks=summary["symlinks"], dirs=summary["dirs"], files_kept=summary["files_kept"],
        bytes_kept=summary["bytes_kept"], containers=summary["containers"],
        bytes_stored=summary["bytes_stored"], objects_before=summary["objects_before"],
        objects_after=summary["objects_after"],
        originals_removed=summary["originals_removed"],
        originals_changed=summary["originals_changed"], elapsed_secs=time.monotonic() - started,
        summary=summary,
        part_summaries=sorted((r.asDict() for r in rows), key=lambda r: r["part"]),
    )
    log.info("sheaf: committed generation %d of %s: %d containers, %d -> %d objects",
             result.generation, result.dataset, result.containers, result.objects_before,
             result.objects_after)
    return result


# Cut candidates the planner keeps per part (as the native planner does).
_CUT_SAMPLES = 64

# Ranges surveyed per part asked for: many small ranges keep one large directory from being
# surveyed by a single task with too few samples for its share of the cuts.
_RANGES_PER_PART = 4


def _survey_in_tasks(spark: Any, src: Any, partitions: int, threshold: folding.Size,
                     in_place: bool) -> list[dict[str, Any]]:
    """Lists the tree in Spark tasks: the driver lists the top levels into ranges, a task
    lists each range and returns its survey (counts and sampled paths, never the listing)."""
    started = time.monotonic()
    ranges = folding.branches(src, _RANGES_PER_PART * partitions)
    limit = max(_CUT_SAMPLES,
                min(_CUT_SAMPLES * partitions,
                    _CUT_SAMPLES * partitions * _RANGES_PER_PART // len(ranges)))
    source = os.fsdecode(src)

    def survey_ranges(batches):
        import pyarrow as pa

        from sheaf import folding as on_executor

        for batch in batches:
            for i in batch.column(0).to_pylist():
                found = on_executor.survey(source, ranges[i], limit=limit,
                                           threshold=threshold, in_place=in_place)
                yield pa.RecordBatch.from_pylist(
                    [{"i": i, "survey": json.dumps(found)}],
                    schema=pa.schema([("i", pa.int64()), ("survey", pa.string())]))

    ids = spark.range(0, len(ranges), 1, numPartitions=len(ranges)).withColumnRenamed("id", "i")
    spark.sparkContext.setJobDescription(f"sheaf fold: listing {len(ranges)} ranges of {source}")
    rows = sorted(ids.mapInArrow(survey_ranges, "i long, survey string").collect(),
                  key=lambda r: r["i"])
    surveys = [json.loads(r["survey"]) for r in rows]
    log.info("sheaf: %d tasks listed %d entries (%d bytes) in %.1f s", len(surveys),
             sum(s["entries"] for s in surveys), sum(s["bytes"] for s in surveys),
             time.monotonic() - started)
    return surveys


class _ArrowTypes(dict):
    """Spark's type names to pyarrow types, resolved on first use (pyarrow only on demand)."""

    def __missing__(self, kind: str):
        import pyarrow as pa

        value = {"int": pa.int32(), "long": pa.int64(), "boolean": pa.bool_(),
                 "double": pa.float64()}[kind]
        self[kind] = value
        return value


_ARROW = _ArrowTypes()
