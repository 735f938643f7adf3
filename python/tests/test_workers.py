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
