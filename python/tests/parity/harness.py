"""Runs one scenario on Apache Beam and on Beamline and compares every output.

A scenario is a function ``scenario(beam, p)`` that builds a pipeline on ``p`` with the
module ``beam`` (``apache_beam`` or ``beamline``) and returns the PCollections to check, as
a dict of ``name -> PCollection``. Each output element is recorded as
``(value, timestamp, window, pane)``: timestamps in milliseconds, windows as ``(start,
end)`` in milliseconds or ``"global"``, panes as ``(is_first, is_last, timing, index,
nonspeculative_index)``. Records are written to files (Beam pickles DoFns by value, so an
in-memory list would be a copy) and compared as multisets.

What may differ is listed in ``ACCEPTED``, each with its reason; a scenario names the
accepted differences it relies on, and everything else must agree exactly.
"""

import ast
import importlib
import math
import os
import tempfile

# Accepted differences, each with the reason Beamline does not follow Beam there.
ACCEPTED = {
    "ms_timestamps": (
        "Beamline keeps event time in milliseconds (as Beam's portable coders and Beam Java "
        "do); Beam Python's streaming DirectRunner keeps microseconds, so an end-of-window "
        "timestamp is end - 1 µs there and end - 1 ms here. Timestamps are compared in whole "
        "milliseconds, rounded down (applies to every scenario)."
    ),
    "batch_is_last": (
        "Beam Python marks the one pane of a batch GroupByKey is_last=False; Beamline marks "
        "the final pane of a window is_last=True, as Beam Java does and as the pane is "
        "(nothing follows it). is_last is not compared in batch grouping scenarios."
    ),
}


def module(beam, path):
    """``beam.<path>`` as a module (``testing.test_stream`` and the like)."""
    return importlib.import_module(f"{beam.__name__}.{path}")


# The last timestamp of the global window (ms).
_GLOBAL_MAX_MS = 9_223_371_950_454_775


def _ms(ts):
    micros = getattr(ts, "micros", None)
    if micros is not None:
        ms = micros // 1000
    else:
        ms = math.floor(round(float(ts) * 1_000_000) / 1000)
    # The extremes, which a float of seconds cannot hold to the millisecond.
    if ms <= -9_223_372_036_854_000:
        return "min"
    if abs(ms - _GLOBAL_MAX_MS) <= 2:
        return "global_max"
    if ms >= 9_223_372_036_854_000:
        return "max"
    return ms


def _window(w):
    start = getattr(w, "start", None)
    if start is None or type(w).__name__ == "GlobalWindow":
        return "global"
    return (_ms(w.start), _ms(w.end))


def _norm(v):
    """A value in a comparable, printable form: unordered iterables are sorted."""
    if isinstance(v, float):
        return round(v, 9)
    if isinstance(v, (str, bytes, int, bool)) or v is None:
        return v
    if isinstance(v, tuple):
        return tuple(_norm(x) for x in v)
    if isinstance(v, dict):
        return ("dict", tuple(sorted(((_norm(k), _norm(x)) for k, x in v.items()), key=repr)))
    if isinstance(v, (set, frozenset)):
        return ("set", tuple(sorted((_norm(x) for x in v), key=repr)))
    if isinstance(v, list):
        # Lists a transform builds (ToList, Top) keep their order; the grouped values of
        # a GroupByKey are sorted by the scenario before they are recorded.
        return ("list", tuple(_norm(x) for x in v))
    if hasattr(v, "__iter__"):
        return ("iter", tuple(sorted((_norm(x) for x in v), key=repr)))
    return ("repr", repr(v))


def _recorder(beam, path):
    """A DoFn class of ``beam`` that appends each element's record to ``path``."""

    class Record(beam.DoFn):
        def __init__(self, path):
            self.path = path

        def process(self, x, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam,
                    pane=beam.DoFn.PaneInfoParam):
            rec = (
                _norm(x),
                _ms(ts),
                _window(w),
                (bool(pane.is_first), bool(pane.is_last), int(pane.timing), int(pane.index),
                 int(pane.nonspeculative_index)),
            )
            with open(self.path, "a") as f:
                f.write(repr(rec) + "\n")

    return Record(path)


class _records_dir:
    """Where a run's records go: a new temporary directory, or, in a distributed case
    (see ``conftest.py``), one every process of the case names the same (each builds the
    pipeline, recorders and their paths included)."""

    def __init__(self, beam):
        self.beam = beam

    def __enter__(self):
        shared = os.environ.get("BEAMLINE_PYTEST_CASE")
        if shared:
            self.tmp = None
            path = os.path.join(shared, f"records-{self.beam.__name__}")
            os.makedirs(path, exist_ok=True)
            return path
        self.tmp = tempfile.TemporaryDirectory(prefix="parity-")
        return self.tmp.name

    def __exit__(self, *exc):
        if self.tmp is not None:
            self.tmp.cleanup()
        return False


def run(scenario, beam, args=(), streaming=False):
    """Runs ``scenario`` with ``beam``; returns ``{output name: sorted records}``."""
    opts_mod = module(beam, "options.pipeline_options")
    flags = list(args)
    if streaming and "--streaming" not in flags:
        flags.append("--streaming")
    options = opts_mod.PipelineOptions(flags)
    with _records_dir(beam) as d:
        with beam.Pipeline(options=options) as p:
            outs = scenario(beam, p)
            if not isinstance(outs, dict):
                outs = {"out": outs}
            for name, pc in outs.items():
                pc | f"Record[{name}]" >> beam.ParDo(_recorder(beam, os.path.join(d, name)))
        result = {}
        for name in outs:
            path = os.path.join(d, name)
            lines = []
            if os.path.exists(path):
                with open(path) as f:
                    lines = [ast.literal_eval(line) for line in f if line.strip()]
            result[name] = sorted(lines, key=repr)
    return result


def normalize(result, accept):
    """Applies the accepted differences ``accept`` to a run's records."""
    for a in accept:
        if a not in ACCEPTED:
            raise KeyError(f"unknown accepted difference {a!r}")
    if "batch_is_last" not in accept:
        return result
    out = {}
    for name, recs in result.items():
        out[name] = sorted(
            ((v, t, w, (p[0], None, p[2], p[3], p[4])) for v, t, w, p in recs), key=repr
        )
    return out


def diff(expected, actual):
    """A readable description of how two runs differ ('' when they agree)."""
    lines = []
    for name in sorted(set(expected) | set(actual)):
        e, a = expected.get(name, []), actual.get(name, [])
        if e == a:
            continue
        missing = list(e)
        extra = []
        for r in a:
            if r in missing:
                missing.remove(r)
            else:
                extra.append(r)
        lines.append(f"output {name!r}: Beam gave {len(e)} records, Beamline {len(a)}")
        lines += [f"  only in Beam:     {r!r}" for r in missing[:20]]
        lines += [f"  only in Beamline: {r!r}" for r in extra[:20]]
    return "\n".join(lines)


# Scenarios by name, registered with @scenario.
SCENARIOS = {}


def scenario(streaming=False, accept=(), beam_args=()):
    """Registers a parity scenario ``fn(beam, p) -> {name: PCollection}``; ``streaming``
    runs it as a streaming pipeline on both, ``accept`` names entries of ``ACCEPTED``,
    ``beam_args`` are options only Beam needs (``--allow_unsafe_triggers``)."""

    def register(fn):
        for a in accept:
            if a not in ACCEPTED:
                raise KeyError(f"{fn.__name__}: unknown accepted difference {a!r}")
        fn.streaming, fn.accept, fn.beam_args = streaming, tuple(accept), list(beam_args)
        SCENARIOS[fn.__name__] = fn
        return fn

    return register


_BEAM_RESULTS = {}


def beam_result(fn):
    """What Apache Beam gives for ``fn`` (run once per test session)."""
    if fn.__name__ not in _BEAM_RESULTS:
        import apache_beam

        _BEAM_RESULTS[fn.__name__] = run(fn, apache_beam, args=fn.beam_args, streaming=fn.streaming)
    return _BEAM_RESULTS[fn.__name__]


def check(fn, runner_args):
    """Runs ``fn`` on Beamline with ``runner_args`` and compares with Beam's records."""
    import beamline

    # Beamline first: a distributed run's worker processes end with their share of it.
    actual = normalize(run(fn, beamline, args=runner_args, streaming=fn.streaming), fn.accept)
    expected = normalize(beam_result(fn), fn.accept)
    assert any(expected.values()) or getattr(fn, "empty", False), (
        f"Beam produced no output for {fn.__name__}: the scenario would check nothing"
    )
    d = diff(expected, actual)
    assert not d, f"{fn.__name__} differs from Apache Beam:\n{d}"
