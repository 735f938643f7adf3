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

import pytest

RUNNERS = {
    "local": ["--runner=local"],
    "local-1-thread": ["--runner=local", "--threads=1"],
    "local-streaming": ["--runner=local", "--streaming"],
    # Spills every shuffle and materialized PCollection to disk (as in validates-runner).
    "local-spill-everything": ["--runner=local", "--memory-budget=1B"],
    "distributed": ["--runner=distributed", "--processes=2"],
}

# Set in the pytest that runs one distributed case: the case's shared temporary directory.
_CASE_PROCESS = "BEAMLINE_PYTEST_CASE"


@pytest.fixture
def tmp_path(tmp_path_factory):
    """A temporary directory; the same one in every process of a distributed case."""
    shared = os.environ.get(_CASE_PROCESS)
    if shared:
        return pathlib.Path(shared)
    return tmp_path_factory.mktemp("case", numbered=True)


@pytest.fixture(params=sorted(RUNNERS))
def runner_args(request):
    """Command-line options of one runner configuration."""
    return RUNNERS[request.param]


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
