"""Transforms, laid out as Beam's ``apache_beam.transforms``: the core ones here and in
``core``, composites in ``util``, and ``window``, ``trigger``, ``userstate`` and
``combiners`` as submodules (the same modules as ``beamline.window`` and so on)."""

from beamline.transforms.core import (  # noqa: F401 - re-exported
    CoGroupByKey,
    CombineFn,
    CombineGlobally,
    CombinePerKey,
    CombineValues,
    Create,
    DoFn,
    DoOutputsTuple,
    Filter,
    FlatMap,
    Flatten,
    GroupByKey,
    Impulse,
    Map,
    ParDo,
    Partition,
    PTransform,
    RustDoFn,
    WindowInto,
    _Builtin,
    apply,
)
from beamline.transforms.util import (  # noqa: F401 - re-exported
    Distinct,
    Keys,
    KvSwap,
    Reshuffle,
    Values,
    WithKeys,
)
from beamline.transforms import trigger, userstate, window  # noqa: E402,F401


def __getattr__(name):
    # combiners imports this package's core: loaded on first use, not in a cycle.
    if name == "combiners":
        import importlib

        return importlib.import_module("beamline.transforms.combiners")
    raise AttributeError(f"module 'beamline.transforms' has no attribute {name!r}")
