"""Worker processes for Python stages (``--python-workers=N``).

Element-wise Python stages (Map, FlatMap, Filter without side inputs) are registered here
when the pipeline is built; ``Pipeline.run`` forks N worker processes, which inherit the
registered callables (nothing is pickled but the elements). The Rust harness sends each
bundle's elements to a worker and emits the results with the input elements' timestamps
and windows.
"""

import multiprocessing

_STAGES = {}
_POOL = None


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


def _apply(stage_id, elements):
    kind, fn = _STAGES[stage_id]
    if kind == "map":
        return [[fn(x)] for x in elements]
    if kind == "flat_map":
        return [list(fn(x)) for x in elements]
    return [[x] if fn(x) else [] for x in elements]


def _apply_chunk(args):
    return _apply(*args)


def run_batch(stage_id, elements):
    """Runs a bundle of a stage in the worker processes, split into chunks so that one
    large bundle still uses every worker (in this process without workers)."""
    if _POOL is None:
        return _apply(stage_id, elements)
    n = max(1, len(elements) // (_POOL._processes * 4))
    chunks = [(stage_id, elements[i:i + n]) for i in range(0, len(elements), n)]
    out = []
    for part in _POOL.map(_apply_chunk, chunks):
        out.extend(part)
    return out
