"""--python-workers: element-wise Python stages in worker processes give the same results."""

import os

import beamline
from beamline import window
from beamline.testing import assert_that, equal_to


def pipeline_results(workers, tmp_path):
    out = str(tmp_path / f"out{workers}")
    with beamline.Pipeline(argv=[f"--python-workers={workers}", "--threads=2"]) as p:
        nums = p | "Nums" >> beamline.Create(range(5000))
        pids = nums | "Pid" >> beamline.Map(lambda x: (x % 7, os.getpid()))
        words = (
            nums
            | "Words" >> beamline.FlatMap(lambda x: [f"w{x % 13}"] * (x % 3))
            | "NotW0" >> beamline.Filter(lambda w: w != "w0")
            | "Count" >> beamline.combiners.Count.PerElement()
        )
        stamped = (
            nums
            | "Stamp" >> beamline.Map(lambda x: window.TimestampedValue((x % 2, 1), x))
            | "Win" >> beamline.WindowInto(window.FixedWindows(1000))
            | "PerWindow" >> beamline.CombinePerKey(sum)
        )
        words | "Write" >> beamline.WriteToText(out, num_shards=1)
        assert_that(stamped, equal_to([(0, 500), (1, 500)] * 5))
        pid_keys = pids | "Keys" >> beamline.Map(lambda kv: kv[1]) | "Distinct" >> beamline.combiners.Count.PerElement()
        pid_keys | "WritePids" >> beamline.WriteToText(out + "-pids", num_shards=1)
    with open(out + "-00000-of-00001") as f:
        counts = sorted(f.read().splitlines())
    with open(out + "-pids-00000-of-00001") as f:
        pids = [line for line in f.read().splitlines() if line]
    return counts, pids


def test_workers_match_in_process_results(tmp_path):
    one, pids_one = pipeline_results(1, tmp_path)
    two, pids_two = pipeline_results(2, tmp_path)
    assert one == two
    assert len(one) == 12
    # Without workers everything ran in this process; with workers, in other processes.
    assert all(str(os.getpid()) in line for line in pids_one)
    assert all(str(os.getpid()) not in line for line in pids_two)


class Tagging(beamline.DoFn):
    """A DoFn class with the whole lifecycle and metrics, run in the workers."""

    def setup(self):
        self.prefix = "n"

    def start_bundle(self):
        self.in_bundle = 0

    def process(self, x):
        from beamline.metrics import Metrics

        self.in_bundle += 1
        Metrics.counter("w", "seen").inc()
        Metrics.distribution("w", "values").update(x)
        if x % 3:
            yield (f"{self.prefix}{x % 5}", os.getpid())

    def finish_bundle(self):
        from beamline.metrics import Metrics

        Metrics.counter("w", "bundles").inc()


def dofn_results(workers):
    p = beamline.Pipeline(argv=[f"--python-workers={workers}", "--threads=2"])
    tagged = p | "Nums" >> beamline.Create(range(3000)) | "Tag" >> beamline.ParDo(Tagging())
    counts = tagged | "Keys" >> beamline.Map(lambda kv: kv[0]) | "PerKey" >> beamline.combiners.Count.PerElement()
    expected = {}
    for x in range(3000):
        if x % 3:
            expected[f"n{x % 5}"] = expected.get(f"n{x % 5}", 0) + 1
    assert_that(counts, equal_to(sorted(expected.items())))
    result = p.run()
    result.wait_until_finish()
    return result.metrics()


def test_dofn_classes_and_metrics_in_workers():
    one = dofn_results(1)
    two = dofn_results(2)
    for m in (one, two):
        assert m.counter("w", "seen") == 3000
        assert m.distribution("w", "values") == (3000, sum(range(3000)), 0, 2999)
        assert m.counter("w", "bundles") >= 1


def test_dofn_classes_run_in_worker_processes(tmp_path):
    out = str(tmp_path / "pids")
    with beamline.Pipeline(argv=["--python-workers=2"]) as p:
        (
            p
            | "Nums" >> beamline.Create(range(2000))
            | "Tag" >> beamline.ParDo(Tagging())
            | "Pid" >> beamline.Map(lambda kv: kv[1])
            | "Distinct" >> beamline.combiners.Count.PerElement()
            | "Write" >> beamline.WriteToText(out, num_shards=1)
        )
    with open(out + "-00000-of-00001") as f:
        lines = [line for line in f.read().splitlines() if line]
    assert lines and all(str(os.getpid()) not in line for line in lines)
