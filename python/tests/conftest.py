"""Shared fixtures: the runner configurations every Python case runs on."""

import pytest

RUNNERS = {
    "local": ["--runner=local"],
    "local-1-thread": ["--runner=local", "--threads=1"],
    "local-streaming": ["--runner=local", "--streaming"],
    # Spills every shuffle and materialized PCollection to disk (as in validates-runner).
    "local-spill-everything": ["--runner=local", "--memory-budget=1B"],
}


@pytest.fixture(params=sorted(RUNNERS))
def runner_args(request):
    """Command-line options of one runner configuration."""
    return RUNNERS[request.param]
