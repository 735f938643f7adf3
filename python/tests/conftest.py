"""Shared fixtures: the runner configurations every Python case runs on.

On the distributed runner a pipeline's program is re-run in each worker process, so a case
on that configuration runs in a pytest of its own (just that case, which its workers re-run
in turn, without capturing output: workers report to the launcher on their standard
error); this process checks that it passed. Every process of the case gets the same
``tmp_path``, as each must build the same pipeline.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

RUNNERS = {
    "local": ["--runner=local"],
    "local-1-thread": ["--runner=local", "--threads=1"],
    "local-streaming": ["--runner=local", "--streaming"],
    # Spills every shuffle and materialized PCollection to disk (as in validates-runner).
    "local-spill-everything": ["--runner=local", "--memory-budget=1B"],
    "distributed": ["--runner=distributed", "--processes=2"],
    # Beam Python's local job service (started once per session), Beamline as its SDK harness.
    "portable": ["--runner=portable"],
}

# Set in the pytest that runs one distributed case: the case's shared temporary directory.
_CASE_PROCESS = "BEAMLINE_PYTEST_CASE"

# This pytest's temporary directory (see `pytest_configure`).
_SESSION_TMP = None


def pytest_configure(config):
    """Sends the temporary files of this pytest and of every process it starts into one
    directory, removed when it ends: Beam's runners and job services leave directories of
    their own behind (about 300 a run otherwise)."""
    global _SESSION_TMP
    _SESSION_TMP = tempfile.mkdtemp(prefix="beamline-pytest-")
    os.environ["TMPDIR"] = _SESSION_TMP
    tempfile.tempdir = _SESSION_TMP


def pytest_unconfigure(config):
    if _SESSION_TMP:
        shutil.rmtree(_SESSION_TMP, ignore_errors=True)


@pytest.fixture
def tmp_path(tmp_path_factory):
    """A temporary directory; the same one in every process of a distributed case."""
    shared = os.environ.get(_CASE_PROCESS)
    if shared:
        return pathlib.Path(shared)
    return tmp_path_factory.mktemp("case", numbered=True)


@pytest.fixture(scope="session")
def beam_job_endpoint():
    """Beam Python's local job service (this interpreter has apache-beam), for the session."""
    state = tempfile.mkdtemp(prefix="beamline-job-service-")
    port_file = os.path.join(state, "port")
    service = subprocess.Popen(
        [sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
         "--job_port", "0", "--port_file", port_file],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(state, "service.log"), "w"),
    )
    try:
        deadline = time.monotonic() + 120
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if service.poll() is not None or time.monotonic() > deadline:
                log = open(os.path.join(state, "service.log")).read()[-3000:]
                pytest.fail(f"Beam's job service did not start:\n{log}", pytrace=False)
            time.sleep(0.05)
        yield f"localhost:{open(port_file).read().strip()}"
    finally:
        service.kill()
        service.wait(timeout=30)
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(params=sorted(RUNNERS))
def runner_args(request):
    """Command-line options of one runner configuration."""
    if request.param == "portable":
        endpoint = request.getfixturevalue("beam_job_endpoint")
        return RUNNERS["portable"] + [f"--job-endpoint={endpoint}"]
    return RUNNERS[request.param]


# What the portable configuration cannot run, and why (as the validates-runner matrix says).
_NO_TEST_STREAM = "Beam Python's local job service runs bounded pipelines only: it has no TestStream"
PORTABLE_SKIPS = {
    "test_parity_streaming.py::": _NO_TEST_STREAM,
    "test_streaming.py::test_early_on_time_late_panes": _NO_TEST_STREAM,
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is None or "portable" not in item.name:
            continue
        for where, why in PORTABLE_SKIPS.items():
            if where in item.nodeid:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    callspec = getattr(pyfuncitem, "callspec", None)
    if callspec is None or callspec.params.get("runner_args") != "distributed":
        return None
    if os.environ.get(_CASE_PROCESS):
        return None
    node = f"{pyfuncitem.path}::{pyfuncitem.name}"
    shared = tempfile.mkdtemp(prefix="beamline-case-")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-s", "-x", "-p", "no:cacheprovider", node],
            env={**os.environ, _CASE_PROCESS: shared},
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    if done.returncode != 0:
        pytest.fail(
            f"{node} failed in its own pytest:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    return True
