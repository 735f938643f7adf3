"""Worker processes for Python stages (``--python-workers=N``).

Element-wise Python stages (Map, FlatMap, Filter, and ParDo with a DoFn class, without side
inputs, state, timers or tagged outputs) are registered here when the pipeline is built;
``Pipeline.run`` forks N worker processes, which inherit the registered callables (nothing
is pickled but elements and results). The Rust harness sends each bundle's elements to the
workers and emits the results with the input elements' timestamps and windows; metric
updates made in a worker travel back with its results.
"""

import copy
import multiprocessing
import multiprocessing.util

from beamline import _native

_STAGES = {}
_POOL = None
# DoFn instances of this process, set up on first use (one per stage and process).
_INSTANCES = {}


def register(kind, fn):
    """Registers an element-wise stage; returns its id."""
    stage_id = len(_STAGES)
    _STAGES[stage_id] = (kind, fn)
    return stage_id


def start(n):
    """Forks ``n`` worker processes (before the runner starts its threads)."""
    global _POOL
    _POOL = multiprocessing.get_context("fork").Pool(n)


def stop():
    global _POOL
    if _POOL is not None:
        _POOL.close()
        _POOL.join()
        _POOL = None
    _teardown()


def _teardown():
    instances = list(_INSTANCES.values())
    _INSTANCES.clear()
    for inst in instances:
        inst.teardown()


def _instance(stage_id, dofn):
    inst = _INSTANCES.get(stage_id)
    if inst is None:
        # Each process gets its own copy of the DoFn, as each runner thread does.
        inst = copy.deepcopy(dofn)
        inst.setup()
        if not _INSTANCES:
            # Runs when the worker process exits (the pool is closed): teardown.
            multiprocessing.util.Finalize(None, _teardown, exitpriority=10)
        _INSTANCES[stage_id] = inst
    return inst


def _apply(stage_id, elements):
    kind, fn = _STAGES[stage_id]
    if kind == "map":
        return [[fn(x)] for x in elements]
    if kind == "flat_map":
        return [list(fn(x)) for x in elements]
    if kind == "dofn":
        # A chunk is a bundle for the DoFn: start_bundle, process each, finish_bundle.
        inst = _instance(stage_id, fn)
        inst.start_bundle()
        out = [list(inst.process(x) or ()) for x in elements]
        inst.finish_bundle()
        return out
    return [[x] if fn(x) else [] for x in elements]


def _apply_chunk(args):
    results = _apply(*args)
    return results, _native.take_metrics()


def run_batch(stage_id, elements):
    """Runs a bundle of a stage in the worker processes, split into chunks so that one
    large bundle still uses every worker (in this process without workers)."""
    if _POOL is None:
        return _apply(stage_id, elements)
    n = max(1, len(elements) // (_POOL._processes * 4))
    chunks = [(stage_id, elements[i:i + n]) for i in range(0, len(elements), n)]
    out = []
    for part, metrics in _POOL.map(_apply_chunk, chunks):
        out.extend(part)
        for kind, namespace, name, value in metrics:
            _native.record_metric(kind, namespace, name, value)
    return out
