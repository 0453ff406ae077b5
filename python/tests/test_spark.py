"""Folding on Apache Spark (PySpark in local mode, Java from the machine) against the real test
servers: local -> HDFS, HDFS -> HDFS, S3 -> S3; a task that fails on its first attempt; a job
that fails half way and is run again; the same dataset as one machine's `sheaf fold`."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest

import sheaf
import sheaf.spark
from conftest import fold
from sheaf import folding


def small_tree(root: Path, seed: int, files: int = 240) -> dict[str, bytes]:
    """Files of 0.1-40 KiB in 8 directories and one above the 64 KiB threshold used here."""
    rng = random.Random(seed)
    out = {}
    for i in range(files):
        rel = f"d{i % 8}/f{i:04}.bin"
        out[rel] = rng.randbytes(rng.randint(100, 40 << 10))
    out["big/large.bin"] = rng.randbytes(100 << 10)
    for rel, data in out.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return out


def listing(sheaf_bin: str, dataset: str) -> str:
    run = subprocess.run([sheaf_bin, "ls", dataset, "-R", "-l"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def read_all(dataset: str, expected: dict[str, bytes]) -> None:
    with sheaf.open(dataset) as ds:
        for rel, data in expected.items():
            assert ds.read(rel) == data, rel


def remote(var: str) -> str:
    if os.environ.get("SHEAF_TEST_LOCAL_ONLY"):
        pytest.skip("SHEAF_TEST_LOCAL_ONLY is set: the remote back-ends are not tested")
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{var} is not set: run `bash scripts/servers.sh start` and "
                    "`set -a; . target/test-servers.env; set +a` (or `bash .ci/run`)")
    return value


@pytest.fixture(scope="module")
def spark():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    # local[2,3]: two cores, and a failed task retried (local mode retries nothing otherwise).
    session = (SparkSession.builder.master("local[2,3]").appName("sheaf-tests")
               .config("spark.ui.enabled", "false")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def hdfs_put(spark, uri: str, files: dict[str, bytes]) -> None:
    """Writes the files under `uri` with Hadoop's own client (the one inside Spark)."""
    jvm = spark._jvm
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(
        jvm.java.net.URI(uri), spark._jsc.hadoopConfiguration())
    for rel, data in files.items():
        out = fs.create(jvm.org.apache.hadoop.fs.Path(f"{uri}/{rel}"))
        out.write(bytearray(data))
        out.close()


def s3_put(uri: str, files: dict[str, bytes]) -> None:
    """Writes the files under `s3://bucket/prefix` to the S3 test server."""
    endpoint = remote("AWS_ENDPOINT_URL").rstrip("/")
    bucket_and_prefix = uri.removeprefix("s3://")
    for rel, data in files.items():
        request = urllib.request.Request(
            f"{endpoint}/{bucket_and_prefix}/{rel}", data=data, method="PUT",
            headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert answer.status == 200


def test_plan_parts_and_commit_without_spark(sheaf_bin, tmp_path):
    src = tmp_path / "src"
    expected = small_tree(src, 1)
    plan = folding.plan(src, tmp_path / "ds", partitions=3, threshold="64KiB",
                        container_size="128KiB")
    assert len(plan["parts"]) == 3 and plan["resumed"] is False
    for k in reversed(range(3)):
        assert folding.fold_part(plan["location"], k)["already_done"] is False
    assert folding.fold_part(plan["location"], 1)["already_done"] is True
    summary = folding.commit(plan["location"])
    assert summary["files_folded"] + summary["files_kept"] == len(expected)
    read_all(str(tmp_path / "ds"), expected)
    with pytest.raises(sheaf.Error, match="no plan is there"):
        folding.commit(plan["location"])
    with pytest.raises(ValueError):
        folding.parse_size("4 parsecs")


def fold_planned(plan: dict) -> dict:
    for k in range(len(plan["parts"])):
        folding.fold_part(plan["location"], k)
    return folding.commit(plan["location"])


def weight_shares(plan: dict) -> list[float]:
    total = sum(p["weight"] for p in plan["parts"])
    return [p["weight"] / total for p in plan["parts"]]


def test_ranges_listed_apart_cut_the_tree_as_one_listing_does(sheaf_bin, tmp_path):
    src = tmp_path / "src"
    expected = small_tree(src, 7, files=400)
    ranges = folding.branches(src, 12)
    assert 2 <= len(ranges) <= 12
    assert ranges[0]["from_hex"] is None and ranges[-1]["until_hex"] is None
    for before, after in zip(ranges, ranges[1:]):
        assert before["until_hex"] == after["from_hex"]
    surveys = [folding.survey(src, r, limit=256, threshold="64KiB") for r in ranges]
    assert sum(s["entries"] for s in surveys) == len(expected) + 9  # the files and 9 dirs
    options = dict(partitions=4, threshold="64KiB", container_size="128KiB")
    listed = folding.plan(src, tmp_path / "listed", **options)
    surveyed = folding.plan(src, tmp_path / "surveyed", surveys=surveys, **options)
    assert (surveyed["entries"], surveyed["bytes"]) == (listed["entries"], listed["bytes"])
    assert len(surveyed["parts"]) == 4
    assert max(weight_shares(surveyed)) < 0.35
    fold_planned(surveyed)
    read_all(str(tmp_path / "surveyed"), expected)
    # Out of path order, the surveys are refused.
    with pytest.raises(sheaf.Error, match="not in path order"):
        folding.plan(src, tmp_path / "refused", surveys=surveys[::-1], **options)


def ls_r_dump(root: Path, shown_as: str) -> str:
    """`hdfs dfs -ls -R` output for the tree at `root`, its paths under `shown_as`."""
    lines = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        kind, size = ("d", 0) if path.is_dir() else ("-", path.stat().st_size)
        lines.append(f"{kind}rw-r--r--   {'-' if kind == 'd' else 3} hdfs supergroup "
                     f"{size:>10} 2026-12-07 10:00 {shown_as}/{rel}")
    return "\n".join(lines) + "\n"


def test_a_manifest_replaces_the_listing_in_each_format(sheaf_bin, tmp_path):
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from sheaf import manifest

    src = tmp_path / "src"
    expected = small_tree(src, 8, files=400)
    files = sorted(p for p in src.rglob("*") if p.is_file())
    sizes = [p.stat().st_size for p in files]
    # An S3 inventory names bucket keys; a CSV here names absolute paths; a dump, URIs.
    inventory = pa.table({"bucket": ["raw"] * len(files),
                          "key": [f"trees/src/{p.relative_to(src).as_posix()}" for p in files],
                          "size": sizes})
    pq.write_table(inventory, tmp_path / "inventory.parquet")
    pcsv.write_csv(pa.table({"path": [str(p) for p in files], "size": sizes}),
                   tmp_path / "listing.csv")
    (tmp_path / "dump.txt").write_text(ls_r_dump(src, "hdfs://nn:9000/trees/src"))
    for name, shown_as in [("inventory.parquet", "s3://raw/trees/src"),
                           ("listing.csv", str(src)),
                           ("dump.txt", "hdfs://nn:9000/trees/src")]:
        sample = manifest.sample(tmp_path / name, shown_as, limit=100_000, seed=1)
        assert sample["rows"] == len(files) and sample["bytes"] == sum(sizes), name
        relative = sorted(bytes.fromhex(h).decode() for h, _ in sample["sample"])
        assert relative == sorted(expected), name
        # A small sample still gives cuts of about equal weight.
        small = manifest.sample(tmp_path / name, shown_as, limit=60, seed=2)
        assert 60 <= len(small["sample"]) <= 120, name
        dst = tmp_path / f"ds-{name}"
        plan = folding.plan(src, dst, partitions=4, threshold="64KiB", container_size="128KiB",
                            sample=small)
        assert len(plan["parts"]) == 4 and max(weight_shares(plan)) < 0.45, name
        fold_planned(plan)
        read_all(str(dst), expected)


def test_spark_folds_local_to_hdfs_into_what_one_machine_folds(spark, sheaf_bin, tmp_path):
    base = remote("SHEAF_TEST_HDFS")
    src = tmp_path / "src"
    expected = small_tree(src, 2)
    reference = tmp_path / "reference"
    fold(sheaf_bin, src, reference, "--threshold", "64KiB", "--container-size", "128KiB")
    dst = f"{base}/spark-{uuid.uuid4().hex[:10]}"
    result = sheaf.spark.fold(spark, src, dst, partitions=4, threshold="64KiB",
                              container_size="128KiB")
    assert result.generation == 0 and result.parts == 4
    assert result.files == len(expected) and result.files_kept == 1
    assert result.containers >= 4 and result.objects_after < result.objects_before
    assert listing(sheaf_bin, dst) == listing(sheaf_bin, str(reference))
    read_all(dst, expected)


def test_spark_folds_hdfs_to_hdfs_and_s3_to_s3(spark, sheaf_bin, tmp_path):
    expected = small_tree(tmp_path / "local", 3, files=120)
    hdfs = remote("SHEAF_TEST_HDFS")
    bucket = remote("SHEAF_TEST_S3_BUCKET")
    run = uuid.uuid4().hex[:10]
    for raw, dst, put in [
        (f"{hdfs}/raw-{run}", f"{hdfs}/folded-{run}", lambda u, f: hdfs_put(spark, u, f)),
        (f"s3://{bucket}/raw-{run}", f"s3://{bucket}/folded-{run}", s3_put),
    ]:
        put(raw, expected)
        result = sheaf.spark.fold(spark, raw, dst, partitions=3, threshold="64KiB",
                                  container_size="128KiB")
        assert result.files == len(expected), dst
        read_all(dst, expected)


def test_spark_folds_hdfs_planned_from_a_listing_dump_without_listing(spark, tmp_path):
    hdfs = remote("SHEAF_TEST_HDFS")
    local = tmp_path / "local"
    expected = small_tree(local, 9, files=200)
    raw = f"{hdfs}/dumped-{uuid.uuid4().hex[:10]}"
    hdfs_put(spark, raw, expected)
    dump = tmp_path / "ls-R.txt"
    dump.write_text(ls_r_dump(local, raw))
    result = sheaf.spark.fold(spark, raw, f"{raw}-folded", partitions=3, threshold="64KiB",
                              container_size="128KiB", manifest=dump)
    assert result.parts == 3 and result.files == len(expected)
    read_all(f"{raw}-folded", expected)


def test_a_task_failing_on_its_first_attempt_is_retried_without_duplicates(spark, tmp_path):
    # Nested, so Spark ships it by value: the executors cannot import this test module.
    failed = tmp_path / "first-attempt-failed"

    def fail_first_attempt(part: int, failed=str(failed)) -> None:
        from pyspark import TaskContext

        if TaskContext.get().attemptNumber() == 0 and part == 1:
            open(failed, "w").close()
            raise RuntimeError("a first attempt failing on purpose")

    src = tmp_path / "src"
    expected = small_tree(src, 4)
    dst = tmp_path / "ds"
    result = sheaf.spark.fold(spark, src, dst, partitions=4, threshold="64KiB",
                              container_size="128KiB", task_hook=fail_first_attempt,
                              listing="driver")
    assert failed.exists(), "part 1's first attempt failed and was retried"
    read_all(str(dst), expected)
    # Only the containers the catalog lists: the retry rewrote the same names.
    on_disk = sorted(os.listdir(dst / ".sheaf" / "containers"))
    assert len(on_disk) == result.containers
    assert not (dst / ".sheaf" / "staging").exists()


def test_a_failed_job_publishes_nothing_and_a_rerun_reuses_finished_parts(spark, tmp_path):
    src = tmp_path / "src"
    expected = small_tree(src, 5)
    dst = tmp_path / "ds"
    marker = tmp_path / "part-2-fails"
    marker.write_text("while this file exists, part 2 fails on every attempt")

    def fail_part_2(part: int, marker=str(marker)) -> None:
        if part == 2 and os.path.exists(marker):
            raise RuntimeError("part 2 failing on purpose")

    options = dict(partitions=4, threshold="64KiB", container_size="128KiB",
                   task_hook=fail_part_2)
    with pytest.raises(Exception, match="part 2 failing on purpose"):
        sheaf.spark.fold(spark, src, dst, **options)
    with pytest.raises(sheaf.NotADataset):
        sheaf.open(dst)
    marker.unlink()
    result = sheaf.spark.fold(spark, src, dst, **options)
    assert result.resumed_parts == 3, "the parts that finished were not folded again"
    read_all(str(dst), expected)


def hdfs_file_count(spark, uri: str) -> int:
    """Files under `uri`, as Hadoop's own `hdfs dfs -count` reports them."""
    jvm = spark._jvm
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(
        jvm.java.net.URI(uri), spark._jsc.hadoopConfiguration())
    return fs.getContentSummary(jvm.org.apache.hadoop.fs.Path(uri)).getFileCount()


def test_spark_folds_in_place_on_hdfs_and_then_removes_the_originals(spark, tmp_path):
    hdfs = remote("SHEAF_TEST_HDFS")
    expected = small_tree(tmp_path / "local", 6, files=150)
    uri = f"{hdfs}/in-place-{uuid.uuid4().hex[:10]}"
    hdfs_put(spark, uri, expected)
    assert hdfs_file_count(spark, uri) == len(expected)
    result = sheaf.spark.fold(spark, uri, in_place=True, remove_originals=True, partitions=3,
                              threshold="64KiB", container_size="128KiB")
    assert result.files == len(expected) and result.files_kept == 1
    assert result.originals_removed == result.files - result.files_kept
    # What HDFS tracks now: the containers, the generation file and the large file.
    assert hdfs_file_count(spark, uri) == result.containers + 1 + result.files_kept
    assert result.objects_after == result.containers + 1 + result.files_kept
    read_all(uri, expected)
