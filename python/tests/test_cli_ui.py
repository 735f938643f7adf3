"""The ``beamline`` console script, and the job UI of a Python pipeline (``--ui``)."""

import json
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.request

import beamline


def _console_script():
    found = shutil.which("beamline", path=os.path.dirname(sys.executable))
    assert found, "the package installs a `beamline` console script"
    return found


def test_the_console_script_lists_runners_runs_the_suite_and_fails_in_one_line():
    exe = _console_script()
    out = subprocess.run([exe, "runners"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for name in ("local —", "distributed —", "portable —", "--ui=VALUE"):
        assert name in out.stdout
    help_ = subprocess.run([exe, "run", "--help"], capture_output=True, text=True, timeout=60)
    assert help_.returncode == 0 and "Usage: beamline run" in help_.stdout
    bad = subprocess.run([exe, "run", "/nonexistent.pb"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: reading /nonexistent.pb"), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    # The conformance suite, on a column whose cases run in processes of their own (the
    # console script run again through this interpreter) with worker processes of theirs.
    matrix = subprocess.run(
        [exe, "matrix", "--column", "distributed (2 processes)", "--case", "sum_per_key"],
        capture_output=True, text=True, timeout=300)
    assert matrix.returncode == 0, matrix.stderr
    assert "| category | distributed (2 processes) |" in matrix.stdout, matrix.stdout
    assert "passed 1" in matrix.stdout, matrix.stdout


def test_a_python_job_with_ui_is_served_with_its_name_and_counts(tmp_path):
    src = tmp_path / "in.txt"
    src.write_text("a b\nb\n")
    p = beamline.Pipeline(argv=["--ui=127.0.0.1:0", "--quiet", "--job-name=py-words"])
    (p | "Read" >> beamline.ReadFromText(str(src))
       | "Split" >> beamline.FlatMap(str.split)
       | "Count" >> beamline.combiners.Count.PerElement()
       | "Format" >> beamline.Map(lambda kv: f"{kv[0]}: {kv[1]}")
       | "Write" >> beamline.WriteToText(str(tmp_path / "out")))
    result = p.run()
    result.wait_until_finish()
    assert result.ui_url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(result.ui_url + "api/jobs", timeout=10) as r:
        jobs = json.load(r)["jobs"]
    job = next(j for j in jobs if j["name"] == "py-words")
    assert job["state"] == "DONE"
    assert job["sources"][0]["elements"] == 2
    assert job["sinks"][0]["elements"] == 2
    assert any(s["kind"] == "grouping" and s["elements_in"] == 3 for s in job["stages"])


def test_a_job_prints_a_summary_unless_quiet(tmp_path):
    script = tmp_path / "count_job.py"
    script.write_text(
        "import sys, beamline\n"
        "p = beamline.Pipeline(argv=sys.argv[1:])\n"
        "p | beamline.Create([1, 2, 3]) | beamline.Map(lambda x: x)\n"
        "p.run().wait_until_finish()\n"
    )
    loud = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert loud.returncode == 0, loud.stderr
    assert "beamline: job 'count_job' DONE" in loud.stderr, loud.stderr
    quiet = subprocess.run(
        [sys.executable, str(script), "--quiet"], capture_output=True, text=True, timeout=120
    )
    assert quiet.returncode == 0 and "beamline:" not in quiet.stderr, quiet.stderr
