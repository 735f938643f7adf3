"""Job handles (state, wait, cancel, live metrics, Ctrl-C) and declared options (unknown
options, ``--help``, option views)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import beamline
from beamline.metrics import Metrics


class _Slow(beamline.DoFn):
    def process(self, x):
        time.sleep(0.001)
        Metrics.counter("t", "seen").inc()
        yield str(x)


def _eventually(what, pred, limit=30.0):
    start = time.monotonic()
    while not pred():
        assert time.monotonic() - start < limit, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_run_returns_a_handle_with_live_metrics_and_cancel(tmp_path):
    p = beamline.Pipeline(argv=["--threads=2"])
    (p | beamline.Create(range(50_000)) | beamline.ParDo(_Slow())
       | beamline.WriteToText(str(tmp_path / "out")))
    result = p.run()
    assert result.state == beamline.PipelineState.RUNNING
    _eventually("metrics while running", lambda: (result.metrics().counter("t", "seen") or 0) > 0)
    assert result.wait_until_finish(duration=50) == "RUNNING"
    asked = time.monotonic()
    assert result.cancel() == "CANCELLED"
    assert time.monotonic() - asked < 5
    assert result.state == "CANCELLED"
    assert result.metrics().counter("t", "seen") < 50_000
    assert os.listdir(tmp_path) == []


def test_a_finished_job_is_done():
    p = beamline.Pipeline()
    p | beamline.Create([1, 2, 3]) | beamline.ParDo(_Slow())
    result = p.run()
    assert result.wait_until_finish() == "DONE"
    assert result.metrics().counter("t", "seen") == 3
    assert result.cancel() == "DONE"


_SCRIPT = textwrap.dedent(
    """
    import sys, time
    import beamline
    from beamline.options.pipeline_options import PipelineOptions

    class WordOptions(PipelineOptions):
        @classmethod
        def _add_argparse_args(cls, parser):
            parser.add_argument("--output", help="where the lines go")
            parser.add_argument("--limit", type=int, default=5, help="how many numbers")

    class Slow(beamline.DoFn):
        def process(self, x):
            time.sleep(0.001)
            yield str(x)

    options = PipelineOptions(sys.argv[1:])
    mine = options.view_as(WordOptions)
    with beamline.Pipeline(options=options) as p:
        (p | beamline.Create(range(mine.limit)) | beamline.ParDo(Slow())
           | beamline.WriteToText(mine.output))
        print("started", flush=True)
    print("finished", flush=True)
    """
)


def _script(tmp_path):
    path = tmp_path / "job.py"
    path.write_text(_SCRIPT)
    return path


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_a_batch_job_promptly_and_commits_nothing(tmp_path, sig):
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, str(_script(tmp_path)), f"--output={out}/lines", "--limit=100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A test run started in the background inherits SIGINT ignored, and Python then
        # leaves it ignored: the job's process gets Ctrl-C's default, as in a terminal.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout.readline().strip() == "started"
        time.sleep(1.0)  # the job is running by now (100 s of work)
        sent = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=15)
    finally:
        proc.kill()
    assert time.monotonic() - sent < 10
    assert "KeyboardInterrupt" in err, err
    assert proc.returncode != 0
    assert os.listdir(out) == [], "a cancelled job left files behind"


def test_options_of_a_program_are_read_and_listed_by_help(tmp_path):
    script = _script(tmp_path)
    out = tmp_path / "lines"
    done = subprocess.run([sys.executable, str(script), f"--output={out}", "--limit=3"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = sorted(open(f).read() for f in tmp_path.glob("lines-*"))
    assert sorted("".join(lines).split()) == ["0", "1", "2"]
    shown = subprocess.run([sys.executable, str(script), "--help"],
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    for needle in ["--output", "where the lines go", "--limit=N", "--runner", "--threads=N",
                   "--memory-budget=SIZE", "--python_workers=N"]:
        assert needle in shown.stdout, (needle, shown.stdout)


def test_unknown_option_is_an_error_naming_the_closest():
    with pytest.raises(ValueError, match=r"unknown option --thread; did you mean --threads\?"):
        beamline.Pipeline(argv=["--thread=2"])
    with pytest.raises(ValueError, match="--threads: 'x' is not a whole number"):
        beamline.Pipeline(argv=["--threads=x"])
    # Beam's own options that ported programs pass are accepted.
    beamline.Pipeline(argv=["--save_main_session", "--job_name=j"])


def test_too_many_threads_is_an_error():
    p = beamline.Pipeline(argv=["--threads=5000"])
    p | beamline.Create([1])
    with pytest.raises(RuntimeError, match="--threads: 5000 is more than 4 threads"):
        p.run().wait_until_finish()


@pytest.mark.parametrize("runner", ["local", "distributed"])
def test_restarts_need_checkpoints(runner):
    p = beamline.Pipeline(argv=[f"--runner={runner}", "--streaming", "--restarts=2"])
    p | beamline.Create([1])
    with pytest.raises(RuntimeError, match="--restarts: .* pass --checkpoint-dir as well"):
        p.run().wait_until_finish()
    with pytest.raises(ValueError, match="--restarts: 'many' is not a whole number"):
        beamline.Pipeline(argv=[f"--runner={runner}", "--restarts=many"])


class _Stats:
    """A custom accumulator object: crosses an encoding only pickled."""

    def __init__(self):
        self.n, self.longest = 0, ""


class _LongestFn(beamline.CombineFn):
    def create_accumulator(self):
        return _Stats()

    def add_input(self, acc, x):
        acc.n += 1
        if len(x) > len(acc.longest):
            acc.longest = x
        return acc

    def merge_accumulators(self, accs):
        out = _Stats()
        for a in accs:
            out.n += a.n
            out.longest = max(out.longest, a.longest, key=len)
        return out

    def extract_output(self, acc):
        return (acc.n, acc.longest)


def test_python_accumulators_are_encodable():
    from beamline import _native

    out, size = _native.accumulator_roundtrip(_LongestFn(), ["bb", "a", "dddd"])
    assert out == (3, "dddd") and size > 0
    # Native accumulators (lists, numbers) keep their shape through the encoding.
    out, _ = _native.accumulator_roundtrip(beamline.combiners.ToListCombineFn(), [3, 1, 2])
    assert out == [3, 1, 2]
    out, _ = _native.accumulator_roundtrip(beamline.combiners.MeanCombineFn(), [1, 2, 6])
    assert out == 3
