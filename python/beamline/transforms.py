"""Core transforms: Create, Map, FlatMap, Filter, ParDo, GroupByKey, combines, windows..."""

import copy
import inspect
import itertools
import json
import types

from beamline.pvalue import PBegin, PCollection, _SideInput

_label_counter = itertools.count()


def apply(pvalue, transform):
    """Applies ``transform`` to ``pvalue`` (a PCollection, PBegin, tuple, list or dict)."""
    if not isinstance(transform, PTransform):
        raise TypeError(f"expected a PTransform, got {transform!r}")
    return transform.expand(pvalue)


def _pipeline_of(pvalue):
    if isinstance(pvalue, (PCollection, PBegin)):
        return pvalue.pipeline
    if isinstance(pvalue, dict):
        pvalue = list(pvalue.values())
    return pvalue[0].pipeline


class PTransform:
    """A transform; ``"Label" >> transform`` names it."""

    def __init__(self, label=None):
        self.label = label

    def __rrshift__(self, label):
        self.label = label
        return self

    def __ror__(self, pvalues):
        # (a, b) | t, [a, b] | t, {"x": a} | t
        return apply(pvalues, self)

    def default_label(self):
        return type(self).__name__

    def _name(self):
        if self.label is None:
            # Unlabelled transforms get distinct names (Beam would reject duplicates).
            self.label = f"{self.default_label()}_{next(_label_counter)}"
        return self.label

    def _out(self, pvalue, native):
        return PCollection(_pipeline_of(pvalue), native)

    def expand(self, pvalue):
        raise NotImplementedError


def _fn_label(fn):
    return getattr(fn, "__name__", type(fn).__name__)


class Create(PTransform):
    """A PCollection of fixed values."""

    def __init__(self, values):
        super().__init__()
        self.values = list(values)

    def expand(self, pbegin):
        return self._out(pbegin, pbegin.pipeline._native.create(self._name(), self.values))


_ATOMIC = (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)


def _check_copyable(obj, what, role):
    """Beam pickles every DoFn and callable when the pipeline is built; Beamline instead
    gives each worker thread its own copy (``copy.deepcopy``). State that cannot be copied
    (locks, sockets, open files, clients) is rejected here, at construction, with the
    advice Beam gives: create such resources in ``DoFn.setup``."""
    if isinstance(obj, _ATOMIC) or obj is None:
        return
    try:
        copy.deepcopy(obj)
    except Exception as e:  # noqa: BLE001 - any failure means the object cannot be copied
        raise ValueError(
            f"{what}: {role} {obj!r} cannot be copied for each worker ({type(e).__name__}: "
            f"{e}); Beam would fail to pickle it too. Create such resources in "
            f"DoFn.setup() instead of capturing them."
        ) from None


def _check_callable(fn, what):
    """Checks what a callable captures: closure cells, default arguments, bound object."""
    target = getattr(fn, "__func__", fn)
    bound = getattr(fn, "__self__", None)
    if bound is not None and not isinstance(bound, types.ModuleType):
        _check_copyable(bound, what, "the object bound to the callable,")
    for cell in getattr(target, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        _check_copyable(value, what, "a value the callable captures,")
    for value in getattr(target, "__defaults__", None) or ():
        _check_copyable(value, what, "a default argument of the callable,")
    if not isinstance(fn, (types.FunctionType, types.MethodType, types.BuiltinFunctionType)):
        # A callable object: it is copied like a DoFn.
        _check_copyable(fn, what, "the callable object")


def _split_args(fn, args, what):
    """Separates side-input views from constant arguments; checks the arity."""
    _check_callable(fn, what)
    for a in args:
        if not isinstance(a, _SideInput):
            _check_copyable(a, what, "an extra argument,")
    sides = [a for a in args if isinstance(a, _SideInput)]
    if sides and len(sides) != len(args):

        def call(x, *side_values, _fn=fn, _args=args):
            it = iter(side_values)
            return _fn(x, *[next(it) if isinstance(a, _SideInput) else a for a in _args])

        wrapped = call
    elif args and not sides:

        def call(x, _fn=fn, _args=args):
            return _fn(x, *_args)

        wrapped = call
    else:
        wrapped = fn
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        try:
            sig.bind(object(), *args)
        except TypeError as e:
            raise ValueError(
                f"{what}: {_fn_label(fn)} cannot be called with an element and "
                f"{len(args)} more argument(s): {e}"
            ) from None
    return wrapped, [(s.view, s.pcoll._native) for s in sides]


class _CallableParDo(PTransform):
    kind = None

    def __init__(self, fn, *args):
        super().__init__()
        if not callable(fn):
            raise TypeError(f"{type(self).__name__} needs a callable, got {fn!r}")
        self.fn, self.args = fn, args

    def default_label(self):
        return f"{type(self).__name__}({_fn_label(self.fn)})"

    def expand(self, pcoll):
        name = self._name()
        fn, sides = _split_args(self.fn, self.args, f"{type(self).__name__} '{name}'")
        workers = int(pcoll.pipeline.options.get_all_options().get("python_workers", "1") or 1)
        if workers > 1 and not sides:
            # Runs in worker processes: the native harness sends bundles to _workers.
            from beamline import _workers

            stage = _workers.register(self.kind, fn)
            native = pcoll.pipeline._native.worker_stage(pcoll._native, name, stage)
            return self._out(pcoll, native)
        outs = pcoll.pipeline._native.pardo(pcoll._native, name, self.kind, fn, sides, [], [], [], [], [])
        return self._out(pcoll, outs[0])


class Map(_CallableParDo):
    """One output per element: ``fn(x, *args)``."""

    kind = "map"


class FlatMap(_CallableParDo):
    """Every item of the iterable ``fn(x, *args)`` returns."""

    kind = "flat_map"


class Filter(_CallableParDo):
    """The elements for which ``fn(x, *args)`` is true."""

    kind = "filter"


class _Param:
    def __init__(self, kind, spec=None):
        self.kind, self.spec = kind, spec

    def encoded(self):
        if self.kind in ("state", "timer"):
            return f"{self.kind}:{self.spec.name}"
        return self.kind


class DoFn:
    """Element-wise user code with Beam's lifecycle; ``process`` yields outputs.

    Ask for element metadata with parameter defaults:
    ``def process(self, x, ts=DoFn.TimestampParam, w=DoFn.WindowParam, p=DoFn.PaneInfoParam)``.
    """

    TimestampParam = _Param("timestamp")
    WindowParam = _Param("window")
    PaneInfoParam = _Param("pane")
    KeyParam = _Param("key")

    @staticmethod
    def StateParam(spec):
        return _Param("state", spec)

    @staticmethod
    def TimerParam(spec):
        return _Param("timer", spec)

    def setup(self):
        pass

    def start_bundle(self):
        pass

    def process(self, element, *args, **kwargs):
        raise NotImplementedError

    def finish_bundle(self):
        pass

    def teardown(self):
        pass


class DoOutputsTuple:
    """The outputs of a ParDo with tagged outputs: ``outs.main``, ``outs.tag`` or ``outs["tag"]``."""

    def __init__(self, main, tagged):
        self.main = main
        self._tagged = tagged

    def __getitem__(self, tag):
        if tag is None or tag == "main":
            return self.main
        return self._tagged[tag]

    def __getattr__(self, tag):
        try:
            return self._tagged[tag]
        except KeyError:
            raise AttributeError(tag) from None

    def __iter__(self):
        yield self.main
        yield from self._tagged.values()


class ParDo(PTransform):
    """Runs a DoFn on every element; extra arguments may be side-input views."""

    def __init__(self, dofn, *args):
        super().__init__()
        if not isinstance(dofn, DoFn):
            raise TypeError(f"ParDo needs a DoFn instance, got {dofn!r}")
        self.dofn, self.args, self.tags = dofn, args, []

    def default_label(self):
        return f"ParDo({type(self.dofn).__name__})"

    def with_outputs(self, *tags, main=None):
        self.tags = list(tags)
        return self

    def expand(self, pcoll):
        name = self._name()
        try:
            sig = inspect.signature(self.dofn.process)
        except (TypeError, ValueError):
            sig = None
        params = []
        states, timers = {}, {}

        def collect(method):
            out = []
            for q in inspect.signature(method).parameters.values():
                if isinstance(q.default, _Param):
                    out.append((q.name, q.default.encoded()))
                    if q.default.kind == "state":
                        states[q.default.spec.name] = q.default.spec
                    elif q.default.kind == "timer":
                        timers[q.default.spec.name] = q.default.spec
            return out

        timer_methods = []
        for attr in dir(type(self.dofn)):
            method = getattr(self.dofn, attr, None)
            timer = getattr(method, "_beamline_timer", None)
            if timer is not None:
                timer_methods.append((timer, attr, collect(method)))
        if sig is not None:
            plain = []
            collect(self.dofn.process)
            for p in sig.parameters.values():
                if isinstance(p.default, _Param):
                    params.append((p.name, p.default.encoded()))
                elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                    plain.append(p)
            needed = [p for p in plain if p.default is inspect.Parameter.empty]
            has_varargs = any(p.kind == p.VAR_POSITIONAL for p in sig.parameters.values())
            if not has_varargs and not (len(needed) <= 1 + len(self.args) <= len(plain)):
                raise ValueError(
                    f"ParDo '{name}': {type(self.dofn).__name__}.process takes {len(plain)} "
                    f"positional argument(s), but gets an element and {len(self.args)} more"
                )
        dofn = self.dofn
        _check_copyable(dofn, f"ParDo '{name}'", "the DoFn")
        sides = [(a.view, a.pcoll._native) for a in self.args if isinstance(a, _SideInput)]
        if len(sides) != len(self.args):
            raise ValueError(f"ParDo '{name}': extra arguments must be side inputs (AsSingleton, AsList, ...)")
        state_specs = [(n, s.kind) for n, s in states.items()]
        timer_specs = [(n, t.time_domain) for n, t in timers.items()]
        if state_specs or timer_specs:
            # Snapshots of combining state combine in Python with the spec's function.
            dofn._beamline_state_specs = states
        workers = int(pcoll.pipeline.options.get_all_options().get("python_workers", "1") or 1)
        if workers > 1 and not (sides or params or self.tags or state_specs or timer_specs):
            # Element-only DoFns run in worker processes like Map (see _workers).
            from beamline import _workers

            stage = _workers.register("dofn", dofn)
            return self._out(pcoll, pcoll.pipeline._native.worker_stage(pcoll._native, name, stage))
        outs = pcoll.pipeline._native.pardo(
            pcoll._native, name, "dofn", dofn, sides, params, self.tags,
            state_specs, timer_specs, timer_methods,
        )
        if not self.tags:
            return self._out(pcoll, outs[0])
        return DoOutputsTuple(
            self._out(pcoll, outs[0]),
            {t: self._out(pcoll, o) for t, o in zip(self.tags, outs[1:])},
        )


class GroupByKey(PTransform):
    """Groups ``(key, value)`` tuples into ``(key, [values])`` per key and window."""

    def expand(self, pcoll):
        return self._out(pcoll, pcoll.pipeline._native.group_by_key(pcoll._native, self._name()))


class CoGroupByKey(PTransform):
    """Joins keyed PCollections given as a tuple/list or a dict of tags."""

    def expand(self, pcolls):
        name = self._name()
        if isinstance(pcolls, dict):
            tags, inputs = list(pcolls.keys()), list(pcolls.values())
        else:
            tags, inputs = None, list(pcolls)
        tagged = [
            p | f"{name}/Tag{i}" >> Map(lambda kv, i=i: (kv[0], (i, kv[1])))
            for i, p in enumerate(inputs)
        ]
        n = len(inputs)

        def regroup(kv, n=n, tags=tags):
            key, values = kv
            lists = [[] for _ in range(n)]
            for i, v in values:
                lists[i].append(v)
            if tags is None:
                return (key, tuple(lists))
            return (key, dict(zip(tags, lists)))

        flat = tagged | f"{name}/Flatten" >> Flatten()
        return flat | f"{name}/GroupByKey" >> GroupByKey() | f"{name}/Regroup" >> Map(regroup)


class CombineFn:
    """Beam's four-step aggregation; accumulators are Python objects."""

    def create_accumulator(self):
        raise NotImplementedError

    def add_input(self, accumulator, element):
        raise NotImplementedError

    def merge_accumulators(self, accumulators):
        raise NotImplementedError

    def extract_output(self, accumulator):
        return accumulator


class _CallableCombineFn(CombineFn):
    """A function over an iterable of values, as a CombineFn."""

    def __init__(self, fn):
        self.fn = fn

    def create_accumulator(self):
        return []

    def add_input(self, acc, x):
        acc.append(x)
        return acc

    def merge_accumulators(self, accs):
        return [x for a in accs for x in a]

    def extract_output(self, acc):
        return self.fn(acc)


_BUILTINS = {sum: "sum", min: "min", max: "max"}


def _combine_args(fn):
    """(builtin name, config json, CombineFn) for a combine's function."""
    if isinstance(fn, _Builtin):
        return fn.name, json.dumps(fn.config), None
    if fn in _BUILTINS:
        return _BUILTINS[fn], json.dumps({"float": False}), None
    if isinstance(fn, CombineFn):
        return None, "null", fn
    if callable(fn):
        return None, "null", _CallableCombineFn(fn)
    raise TypeError(f"expected a CombineFn or a callable, got {fn!r}")


class _Builtin:
    """A combiner implemented in Rust (values never enter Python)."""

    def __init__(self, name, config=None):
        self.name, self.config = name, config


class CombinePerKey(PTransform):
    """Combines the values of each key (lifted before the shuffle)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def expand(self, pcoll):
        b, config, f = _combine_args(self.fn)
        native = pcoll.pipeline._native.combine_per_key(pcoll._native, self._name(), b, config, f)
        return self._out(pcoll, native)


class CombineGlobally(PTransform):
    """Combines all values (per window) into one."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def expand(self, pcoll):
        b, config, f = _combine_args(self.fn)
        native = pcoll.pipeline._native.combine_globally(pcoll._native, self._name(), b, config, f)
        return self._out(pcoll, native)


class Flatten(PTransform):
    """The union of several PCollections."""

    def expand(self, pcolls):
        pcolls = list(pcolls)
        native = pcolls[0].pipeline._native.flatten([p._native for p in pcolls], self._name())
        return self._out(pcolls[0], native)


class Partition(PTransform):
    """Splits into ``n`` PCollections by ``fn(element, n)``."""

    def __init__(self, fn, n):
        super().__init__()
        self.fn, self.n = fn, n

    def expand(self, pcoll):
        from beamline.pvalue import TaggedOutput

        fn, n = self.fn, self.n

        class _Part(DoFn):
            def process(self, x):
                i = fn(x, n)
                if not 0 <= i < n:
                    raise ValueError(f"partition function returned {i}, not in 0..{n}")
                yield TaggedOutput(str(i), x)

        outs = pcoll | self._name() >> ParDo(_Part()).with_outputs(*[str(i) for i in range(n)])
        return [outs[str(i)] for i in range(n)]


class Reshuffle(PTransform):
    """Redistributes elements across workers."""

    def expand(self, pcoll):
        return self._out(pcoll, pcoll.pipeline._native.reshuffle(pcoll._native, self._name()))


class Keys(PTransform):
    def expand(self, pcoll):
        return pcoll | self._name() >> Map(lambda kv: kv[0])


class Values(PTransform):
    def expand(self, pcoll):
        return pcoll | self._name() >> Map(lambda kv: kv[1])


class KvSwap(PTransform):
    def expand(self, pcoll):
        return pcoll | self._name() >> Map(lambda kv: (kv[1], kv[0]))


class WindowInto(PTransform):
    """Assigns windows; optionally a trigger, accumulation mode and allowed lateness (s)."""

    def __init__(self, windowfn, trigger=None, accumulation_mode=None, allowed_lateness=0, timestamp_combiner=None):
        super().__init__()
        self.windowfn, self.trigger = windowfn, trigger
        self.accumulating = accumulation_mode == "accumulating"
        self.allowed_lateness = allowed_lateness
        self.timestamp_combiner = timestamp_combiner or "end_of_window"

    def expand(self, pcoll):
        native = pcoll.pipeline._native.window_into(
            pcoll._native,
            self._name(),
            self.windowfn._spec(),
            self.trigger._spec() if self.trigger is not None else None,
            self.accumulating,
            int(round(self.allowed_lateness * 1000)),
            self.timestamp_combiner,
        )
        return self._out(pcoll, native)


class RustDoFn(PTransform):
    """Applies a Rust DoFn registered by name in the package, configured with keywords."""

    def __init__(self, name, **config):
        super().__init__()
        self.fn_name, self.config = name, config

    def expand(self, pcoll):
        native = pcoll.pipeline._native.rust_dofn(pcoll._native, self._name(), self.fn_name, json.dumps(self.config))
        return self._out(pcoll, native)
