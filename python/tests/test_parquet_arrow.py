"""Parquet read/write through Arrow, and record batches crossing to and from pyarrow without copies."""

import glob
import os

import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)
import pyarrow.parquet as pq
import pytest

import beamline
from beamline import _native
from beamline.testing import assert_that, equal_to

SCHEMA = pa.schema([("id", pa.int64()), ("name", pa.string()), ("score", pa.float64())])


def rows(n, start=0):
    return [
        {"id": i, "name": None if i % 5 == 0 else f"user-{i}", "score": i / 4}
        for i in range(start, start + n)
    ]


def read_all(prefix):
    files = sorted(glob.glob(prefix + "*"))
    assert files, prefix
    table = pa.concat_tables([pq.read_table(f) for f in files])
    return sorted(table.to_pylist(), key=lambda r: r["id"]), files


def test_rust_batch_reaches_pyarrow_without_copy():
    batch, rust_address = _native.arrow_export_sample(1000)
    assert isinstance(batch, pa.RecordBatch)
    assert batch.column(0).to_pylist() == list(range(1000))
    assert batch.column(0).buffers()[1].address == rust_address


def test_pyarrow_batch_reaches_rust_without_copy():
    batch = pa.record_batch([pa.array(range(1000), pa.int64())], names=["x"])
    assert _native.arrow_import_address(batch) == batch.column(0).buffers()[1].address


def test_batches_stay_the_same_buffers_between_fused_python_stages(runner_args):
    # One Python stage makes a batch, the next checks it sees the very same buffers.
    def make(n):
        b = pa.record_batch([pa.array(range(n), pa.int64())], names=["x"])
        return (b.column(0).buffers()[1].address, b)

    def same(pair):
        address, b = pair
        return (b.num_rows, b.column(0).buffers()[1].address == address)

    with beamline.Pipeline(argv=runner_args) as p:
        got = (
            p
            | beamline.Create([10, 20])
            | "Make" >> beamline.Map(make)
            | "Check" >> beamline.Map(same)
        )
        assert_that(got, equal_to([(10, True), (20, True)]))


def test_batches_survive_a_shuffle(runner_args):
    # Across GroupByKey the batch is encoded as Arrow IPC and decoded back to a batch.
    with beamline.Pipeline(argv=runner_args) as p:
        got = (
            p
            | beamline.Create([("k", 3), ("k", 4)])
            | "Make" >> beamline.Map(
                lambda kv: (kv[0], pa.record_batch([pa.array(range(kv[1]))], names=["v"]))
            )
            | beamline.GroupByKey()
            | "Sum" >> beamline.Map(
                lambda kv: (kv[0], sorted(sum(b.column(0).to_pylist()) for b in kv[1]))
            )
        )
        assert_that(got, equal_to([("k", [3, 6])]))


def test_write_rows_then_read_rows_and_tables(tmp_path, runner_args):
    prefix = str(tmp_path / "people")
    data = rows(2500)
    with beamline.Pipeline(argv=runner_args) as p:
        names = (
            p
            | beamline.Create(data)
            | beamline.WriteToParquet(
                prefix, SCHEMA, record_batch_size=300, codec="snappy",
                file_name_suffix=".parquet", num_shards=3,
            )
        )
        assert_that(
            names,
            equal_to([f"{prefix}-{i:05d}-of-00003.parquet" for i in range(3)]),
        )
    got, files = read_all(prefix)
    assert got == data
    assert len(files) == 3
    assert pq.ParquetFile(files[0]).metadata.row_group(0).column(0).compression == "SNAPPY"

    with beamline.Pipeline(argv=runner_args) as p:
        back = p | beamline.ReadFromParquet(prefix + "-*.parquet")
        assert_that(back, equal_to(data))
        ids = (
            p
            | "Tables" >> beamline.ReadFromParquetBatched(prefix + "-*.parquet", columns=["id"])
            | "Types" >> beamline.Map(lambda t: (type(t).__name__, t.column_names))
            | beamline.Reshuffle()
        )
        total = (
            p
            | "Tables2" >> beamline.ReadFromParquetBatched(prefix + "-*.parquet", columns=["id"])
            | "Sum" >> beamline.Map(lambda t: pa.compute.sum(t.column("id")).as_py())
            | beamline.CombineGlobally(sum)
        )
        assert_that(total, equal_to([sum(range(2500))]), label="TotalIds")
        kinds = ids | "Distinct" >> beamline.combiners.Count.PerElement() | beamline.Keys()
        assert_that(kinds, equal_to([("Table", ["id"])]), label="Kinds")


def test_pyarrow_files_read_and_batched_write(tmp_path, runner_args):
    # A file written by pyarrow, with several row groups, read by Beamline...
    src = tmp_path / "src.parquet"
    pq.write_table(pa.Table.from_pylist(rows(1000), schema=SCHEMA), src, row_group_size=128)
    out = str(tmp_path / "copy")
    with beamline.Pipeline(argv=runner_args) as p:
        tables = p | beamline.ReadFromParquetBatched(str(src), columns=["score", "id"])
        # ...then written back from tables (their buffers go to Rust uncopied).
        tables | beamline.WriteToParquetBatched(out, codec="zstd", num_shards=1)
    got = pq.read_table(out + "-00000-of-00001")
    assert got.column_names == ["score", "id"]
    assert sorted(got.to_pylist(), key=lambda r: r["id"]) == [
        {"score": r["score"], "id": r["id"]} for r in rows(1000)
    ]


def test_parquet_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"definitely not parquet")
    p = beamline.Pipeline()
    p | beamline.ReadFromParquet(str(bad))
    with pytest.raises(RuntimeError, match="bad.parquet is not a readable Parquet file"):
        p.run().wait_until_finish()

    good = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pylist(rows(3), schema=SCHEMA), good)
    p = beamline.Pipeline()
    p | beamline.ReadFromParquet(str(good), columns=["nope"])
    with pytest.raises(RuntimeError, match=r"has no column 'nope' \(columns: id, name, score\)"):
        p.run().wait_until_finish()

    # A row that does not fit the schema names the schema and shows pyarrow's error.
    p = beamline.Pipeline()
    (
        p
        | beamline.Create([{"id": "not a number", "name": "x", "score": 1.0}])
        | beamline.WriteToParquet(str(tmp_path / "out"), SCHEMA, num_shards=1)
    )
    with pytest.raises(RuntimeError, match="rows do not fit the Parquet schema") as e:
        p.run().wait_until_finish()
    assert "Traceback" in str(e.value)
    assert not glob.glob(str(tmp_path / "out*"))

    p = beamline.Pipeline()
    nums = p | beamline.Create([1])
    with pytest.raises(ValueError, match="unsupported Parquet codec 'lzo'"):
        nums | beamline.WriteToParquet(str(tmp_path / "x"), SCHEMA, codec="lzo")
    with pytest.raises(ValueError, match="needs a schema"):
        nums | "NoSchema" >> beamline.WriteToParquet(str(tmp_path / "y"), None)

    p = beamline.Pipeline()
    p | beamline.Create([1, 2]) | beamline.WriteToParquetBatched(str(tmp_path / "z"))
    with pytest.raises(RuntimeError, match="expects pyarrow.RecordBatch or pyarrow.Table"):
        p.run().wait_until_finish()
    assert os.listdir(tmp_path).count("z") == 0
