"""Errors, text IO and metrics from Python."""

import gzip
import os

import pytest

import beamline
from beamline.metrics import Metrics
from beamline.testing import assert_that, equal_to


def test_exception_in_dofn_has_traceback_and_transform_name():
    def explode(x):
        if x == 2:
            raise KeyError("no such thing")
        return x

    p = beamline.Pipeline()
    p | "Nums" >> beamline.Create([1, 2, 3]) | "Explode" >> beamline.Map(explode)
    with pytest.raises(RuntimeError) as e:
        p.run().wait_until_finish()
    msg = str(e.value)
    assert "transform 'Explode' failed" in msg
    assert "Traceback" in msg and "KeyError: 'no such thing'" in msg and "in explode" in msg


def test_wrong_arity_is_a_construction_error():
    p = beamline.Pipeline()
    nums = p | "Nums" >> beamline.Create([1])
    with pytest.raises(ValueError, match="cannot be called with an element"):
        nums | "Bad" >> beamline.Map(lambda a, b: a)

    class NoArgs(beamline.DoFn):
        def process(self):
            yield 1

    with pytest.raises(ValueError, match="process takes 0 positional"):
        nums | "BadDoFn" >> beamline.ParDo(NoArgs())


def test_group_by_key_needs_tuples():
    p = beamline.Pipeline()
    p | "Nums" >> beamline.Create([1]) | "G" >> beamline.GroupByKey()
    with pytest.raises(RuntimeError, match=r"expected a \(key, value\) tuple"):
        p.run().wait_until_finish()


def test_unknown_runner():
    # As in Beam, the pipeline is refused when it is built.
    with pytest.raises(ValueError, match="unknown runner 'nope'; available runners: distributed, local, portable"):
        beamline.Pipeline(argv=["--runner=nope"])


def test_text_io_round_trip(tmp_path):
    (tmp_path / "a.txt").write_text("x y\nz\n")
    with gzip.open(tmp_path / "b.txt.gz", "wt") as f:
        f.write("y\n")
    out = str(tmp_path / "out" / "counts")
    with beamline.Pipeline() as p:
        lines = p | "Read" >> beamline.ReadFromText(str(tmp_path / "*.txt*"))
        counts = (
            lines
            | "Split" >> beamline.FlatMap(str.split)
            | "Count" >> beamline.combiners.Count.PerElement()
        )
        counts | "Write" >> beamline.WriteToText(out, file_name_suffix=".txt", num_shards=1)
    text = (tmp_path / "out" / "counts-00000-of-00001.txt").read_text()
    assert sorted(text.splitlines()) == ["('x', 1)", "('y', 2)", "('z', 1)"]


def test_missing_input_names_the_glob(tmp_path):
    p = beamline.Pipeline()
    p | "Read" >> beamline.ReadFromText(str(tmp_path / "nothing-*.txt"))
    with pytest.raises(RuntimeError, match="no files match"):
        p.run().wait_until_finish()


class Counting(beamline.DoFn):
    def process(self, x):
        Metrics.counter("py", "seen").inc()
        Metrics.distribution("py", "values").update(x)
        Metrics.gauge("py", "last").set(7)
        yield x


def test_metrics():
    p = beamline.Pipeline()
    p | "Nums" >> beamline.Create(range(1, 101)) | "Count" >> beamline.ParDo(Counting())
    result = p.run()
    result.wait_until_finish()
    m = result.metrics()
    assert m.counter("py", "seen") == 100
    assert m.distribution("py", "values") == (100, 5050, 1, 100)
    assert m.gauge("py", "last") == 7
    assert m.counter("py", "missing") is None


def test_python_stages_use_threads_without_deadlock():
    with beamline.Pipeline(argv=["--threads=2"]) as p:
        nums = p | "Nums" >> beamline.Create(range(20000))
        sq = nums | "Sq" >> beamline.Map(lambda x: x * x) | "Sum" >> beamline.CombineGlobally(sum)
        assert_that(sq, equal_to([sum(x * x for x in range(20000))]))


def test_uncopyable_callables_and_dofns_are_construction_errors():
    import re
    import threading

    p = beamline.Pipeline()
    nums = p | "Nums" >> beamline.Create([1, 2])
    lock = threading.Lock()
    with pytest.raises(ValueError, match=r"Map 'Locked'.*cannot be copied.*DoFn.setup"):
        nums | "Locked" >> beamline.Map(lambda x: (lock, x)[1])

    class HoldsLock(beamline.DoFn):
        def __init__(self):
            self.lock = threading.Lock()

        def process(self, x):
            yield x

    with pytest.raises(ValueError, match=r"ParDo 'HoldsLock'.*the DoFn.*cannot be copied"):
        nums | "HoldsLock" >> beamline.ParDo(HoldsLock())

    with pytest.raises(ValueError, match="an extra argument"):
        nums | "LockArg" >> beamline.Map(lambda x, l: x, lock)

    # Resources made in setup, modules, compiled patterns and plain data are fine.
    class LockInSetup(beamline.DoFn):
        def setup(self):
            self.lock = threading.Lock()

        def process(self, x):
            with self.lock:
                yield x

    pattern = re.compile(r"\d")
    table = {"a": [1, 2]}
    out = (
        nums
        | "Setup" >> beamline.ParDo(LockInSetup())
        | "Captures" >> beamline.Map(lambda x: (bool(pattern.match(str(x))), len(table["a"]), re.escape("a")))
    )
    assert_that(out, equal_to([(True, 2, "a"), (True, 2, "a")]))
    p.run().wait_until_finish()
