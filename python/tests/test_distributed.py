"""Python pipelines on the distributed runner: the script is re-run in each worker process,
Python DoFns run there; the output equals the local runner's."""

import os
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python", "wordcount.py")


def _lines(prefix):
    d, stem = os.path.split(prefix)
    out = []
    for name in os.listdir(d):
        if name.startswith(stem + "-"):
            with open(os.path.join(d, name)) as f:
                out.extend(f.read().splitlines())
    return sorted(out)


def test_python_wordcount_on_two_processes_matches_local(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("".join(f"w{i % 101} x{i % 7} shared\n" for i in range(5000)))
    results = {}
    for name, extra in [("local", ["--runner=local"]),
                        ("dist", ["--runner=distributed", "--processes=2"])]:
        prefix = str(tmp_path / name)
        done = subprocess.run(
            [sys.executable, EXAMPLE, f"--input={src}", f"--output={prefix}", *extra],
            capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stderr
        results[name] = _lines(prefix)
    assert len(results["local"]) == 101 + 7 + 1
    assert results["dist"] == results["local"]


def test_a_python_error_in_a_worker_fails_the_job_with_its_traceback(tmp_path):
    script = tmp_path / "bad.py"
    out = tmp_path / "out"
    out.mkdir()
    script.write_text(
        "import beamline, sys\n"
        "def explode(x):\n"
        "    if x == 7:\n"
        "        raise ValueError(f'cannot take {x}')\n"
        "    return str(x)\n"
        "with beamline.Pipeline(argv=sys.argv[2:]) as p:\n"
        "    (p | beamline.Create(range(100)) | beamline.Reshuffle()\n"
        "       | 'Explode' >> beamline.Map(explode) | beamline.WriteToText(sys.argv[1]))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), str(out / "lines"), "--runner=distributed", "--processes=2"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode != 0
    assert "failed: transform 'Explode' failed" in done.stderr, done.stderr
    assert "ValueError: cannot take 7" in done.stderr, done.stderr
    # Nothing was committed, and no temporary files are left.
    assert os.listdir(out) == [], os.listdir(out)


def test_metrics_of_every_process_reach_the_result(tmp_path):
    script = tmp_path / "count.py"
    script.write_text(
        "import beamline, sys\n"
        "from beamline.metrics import Metrics\n"
        "def see(x):\n"
        "    Metrics.counter('t', 'seen').inc()\n"
        "    Metrics.distribution('t', 'values').update(x)\n"
        "    return x\n"
        "p = beamline.Pipeline(argv=sys.argv[1:])\n"
        "p | beamline.Create(range(1, 101)) | beamline.Reshuffle() | 'See' >> beamline.Map(see)\n"
        "result = p.run()\n"
        "result.wait_until_finish()\n"
        "m = result.metrics()\n"
        "print(f\"seen={m.counter('t', 'seen')} values={m.distribution('t', 'values')}\", file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script), "--runner=distributed", "--processes=2"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # The launcher's own line (the workers' are prefixed with their process id).
    assert "seen=100 values=(100, 5050, 1, 100)" in done.stderr.splitlines(), done.stderr
