"""Text and Parquet files and Kafka topics, read and written by Rust (lines, columns and
records enter Python only when a Python transform needs them; Arrow data crosses without
copying)."""

import json

from beamline import _native
from beamline.transforms import PTransform


class ReadFromText(PTransform):
    """Lines of the files matching a glob (``.gz`` read as gzip)."""

    def __init__(self, file_pattern):
        super().__init__()
        self.file_pattern = file_pattern

    def expand(self, pbegin):
        native = pbegin.pipeline._native.read_text(self._name(), self.file_pattern)
        return self._out(pbegin, native)


class WriteToText(PTransform):
    """Writes ``str`` of each element as a line to ``PREFIX-SSSSS-of-NNNNN[SUFFIX]``."""

    def __init__(self, file_path_prefix, file_name_suffix="", num_shards=0):
        super().__init__()
        self.prefix, self.suffix, self.num_shards = file_path_prefix, file_name_suffix, num_shards

    def expand(self, pcoll):
        native = pcoll.pipeline._native.write_text(
            pcoll._native, self._name(), self.prefix, self.suffix, self.num_shards
        )
        return self._out(pcoll, native)


def _require_pyarrow(what):
    try:
        import pyarrow  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"{what} needs pyarrow: pip install 'beamline[parquet]' (or pyarrow)") from e


class ReadFromParquetBatched(PTransform):
    """Parquet files matching a glob as ``pyarrow.Table``s (one per row-group slice).

    Rust reads the files (row groups in parallel); the tables reference the Rust buffers,
    so no column data is copied into Python.
    """

    def __init__(self, file_pattern, columns=None, batch_size=65536):
        super().__init__()
        _require_pyarrow("ReadFromParquetBatched")
        self.file_pattern, self.columns, self.batch_size = file_pattern, columns, batch_size

    def _batches(self, pbegin):
        columns = None if self.columns is None else [str(c) for c in self.columns]
        native = pbegin.pipeline._native.read_parquet(
            self._name(), self.file_pattern, columns, int(self.batch_size)
        )
        return self._out(pbegin, native)

    def expand(self, pbegin):
        import pyarrow as pa

        from beamline.transforms import Map

        return self._batches(pbegin) | f"{self._name()}/ToTables" >> Map(
            lambda b: pa.Table.from_batches([b])
        )


class ReadFromParquet(ReadFromParquetBatched):
    """The rows of Parquet files matching a glob, as dicts (column name to value)."""

    def expand(self, pbegin):
        from beamline.transforms import FlatMap

        return self._batches(pbegin) | f"{self._name()}/ToRows" >> FlatMap(lambda b: b.to_pylist())


class WriteToParquet(PTransform):
    """Writes dict rows to ``PREFIX-SSSSS-of-NNNNN[SUFFIX]`` Parquet files with ``schema``.

    Rows are turned into Arrow record batches of ``record_batch_size`` rows by pyarrow,
    then written by Rust. ``codec`` is one of none, snappy, gzip, lz4, zstd. Returns the
    names of the files written.
    """

    def __init__(self, file_path_prefix, schema, record_batch_size=1000, codec="none",
                 file_name_suffix="", num_shards=0, row_group_size=None):
        super().__init__()
        _require_pyarrow("WriteToParquet")
        self.prefix, self.schema, self.batch_size = file_path_prefix, schema, record_batch_size
        self.codec, self.suffix, self.num_shards = codec, file_name_suffix, num_shards
        self.row_group_size = row_group_size

    def _write(self, pcoll, batch_size):
        native = pcoll.pipeline._native.write_parquet(
            pcoll._native, self._name(), self.prefix, self.suffix, self.num_shards,
            self.codec, self.schema, self.row_group_size, batch_size,
        )
        return self._out(pcoll, native)

    def expand(self, pcoll):
        if self.schema is None:
            raise ValueError("WriteToParquet needs a schema (a pyarrow.Schema)")
        return self._write(pcoll, int(self.batch_size))


class WriteToParquetBatched(WriteToParquet):
    """Writes ``pyarrow.Table`` or ``pyarrow.RecordBatch`` elements to Parquet files.

    The batches' buffers are handed to Rust without copying. Without ``schema``, each file
    takes the schema of its first batch.
    """

    def __init__(self, file_path_prefix, schema=None, codec="none", file_name_suffix="",
                 num_shards=0, row_group_size=None):
        super().__init__(file_path_prefix, schema, None, codec, file_name_suffix, num_shards,
                         row_group_size)

    def expand(self, pcoll):
        from beamline.transforms import FlatMap

        def to_batches(t):
            # Tables are sequences of batches; both share the table's buffers.
            return t.to_batches() if type(t).__name__ == "Table" else [t]

        batches = pcoll | f"{self._name()}/ToBatches" >> FlatMap(to_batches)
        return self._write(batches, None)


_STARTS = {"committed": "Committed", "earliest": "Earliest", "latest": "Latest"}
_TIMESTAMPS = {"record": "Record", "processing_time": "ProcessingTime"}


class ReadFromKafka(PTransform):
    """``(key, value)`` records (bytes; ``b""`` for no key) of Kafka topics, as an unbounded
    source: partitions are split among the readers; event time is the record's timestamp
    (``timestamps="record"``) or when it was read (``"processing_time"``); the watermark
    trails each partition's newest record by ``max_out_of_orderness_ms``. ``timestamps`` may
    also be a function ``f(key, value, record_time)`` of the record's bytes and its own time
    (seconds, or ``None``) returning the event time in seconds, or ``None`` to keep the
    record's; the readers call it for every record (an exception fails the job). With
    checkpoints (``--checkpoint-dir``) the offsets are in every checkpoint and committed
    to ``group`` once it is durable. ``start``: ``"committed"`` (the group's offsets, else
    the beginning), ``"earliest"`` or ``"latest"``. ``until_end``: stop once every
    partition was read to its end (its last stable offset when the job starts, found at
    the end for a second). ``properties``: more librdkafka settings."""

    def __init__(self, bootstrap_servers, topics, group=None, start="committed",
                 timestamps="record", max_out_of_orderness_ms=0, until_end=False,
                 properties=None):
        super().__init__()
        if isinstance(topics, str):
            topics = [topics]
        if start not in _STARTS:
            raise ValueError(f"ReadFromKafka: start must be one of {sorted(_STARTS)}, not {start!r}")
        self._timestamp_fn = timestamps if callable(timestamps) else None
        if self._timestamp_fn is None and timestamps not in _TIMESTAMPS:
            raise ValueError(
                f"ReadFromKafka: timestamps must be one of {sorted(_TIMESTAMPS)} or a function "
                f"(key, value, record_time) -> seconds, not {timestamps!r}")
        self.config = {
            "bootstrap_servers": bootstrap_servers,
            "topics": list(topics),
            "group": group,
            "start": _STARTS[start],
            "timestamps": None if self._timestamp_fn else _TIMESTAMPS[timestamps],
            "max_out_of_orderness_ms": int(max_out_of_orderness_ms),
            "until_end": bool(until_end),
            "properties": {str(k): str(v) for k, v in (properties or {}).items()},
        }

    def expand(self, pbegin):
        config = dict(self.config)
        if self._timestamp_fn is not None:
            # Registered by name in this process; a distributed job's workers run this
            # script too, so they register the same function under the same name.
            f = self._timestamp_fn
            name = f"python:{self._name()}:{getattr(f, '__module__', '')}.{getattr(f, '__qualname__', '')}"
            _native.register_kafka_timestamp(name, f)
            config["timestamps"] = {"Function": name}
        native = pbegin.pipeline._native.read_kafka(self._name(), json.dumps(config))
        return self._out(pbegin, native)


class WriteToKafka(PTransform):
    """Writes ``(key, value)`` pairs (bytes or str; ``None`` key for none) to a Kafka topic.
    With checkpoints, each checkpoint interval's records are written in one transaction
    committed with the checkpoint (``transactional_id``, default ``beamline-TOPIC``): a
    consumer reading committed records sees each exactly once, across restarts."""

    def __init__(self, bootstrap_servers, topic, transactional_id=None, properties=None):
        super().__init__()
        self.config = {
            "bootstrap_servers": bootstrap_servers,
            "topic": topic,
            "transactional_id": transactional_id,
            "properties": {str(k): str(v) for k, v in (properties or {}).items()},
        }

    def expand(self, pcoll):
        native = pcoll.pipeline._native.write_kafka(
            pcoll._native, self._name(), json.dumps(self.config))
        return self._out(pcoll, native)
