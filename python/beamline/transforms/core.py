"""Core transforms: Create, Map, FlatMap, Filter, ParDo, GroupByKey, combines, windows."""

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

    def with_output_types(self, *types, **kwargs):
        """Accepted for Beam compatibility: element types are checked when values are."""
        return self

    def with_input_types(self, *types, **kwargs):
        """Accepted for Beam compatibility: element types are checked when values are."""
        return self

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
    """A PCollection of fixed values; ``TimestampedValue`` items get their timestamps."""

    def __init__(self, values):
        super().__init__()
        if isinstance(values, dict):
            values = values.items()
        self.values = list(values)

    def expand(self, pbegin):
        from beamline.window import TimestampedValue

        name = self._name()
        native = pbegin.pipeline._native
        if not any(isinstance(v, TimestampedValue) for v in self.values):
            return self._out(pbegin, native.create(name, self.values))
        # As Beam: the values are unwrapped and take their timestamps; others keep the
        # minimum timestamp.
        rows = [
            (True, v.value, v.timestamp) if isinstance(v, TimestampedValue) else (False, v, 0.0)
            for v in self.values
        ]
        created = self._out(pbegin, native.create(f"{name}/Values", rows))
        return created | f"{name}/Timestamps" >> Map(
            lambda r: TimestampedValue(r[1], r[2]) if r[0] else r[1]
        )


class Impulse(PTransform):
    """One element, ``b""``, in the global window: the root of every pipeline, in Beam."""

    def expand(self, pbegin):
        return self._out(pbegin, pbegin.pipeline._native.create(self._name(), [b""]))


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


def _side_spec(side, keyword=None):
    """How the native ParDo receives a side input: view, PCollection, keyword, default.
    A constant argument of a DoFn goes in its place as a "const" view with no PCollection."""
    if not isinstance(side, _SideInput):
        return ("const", None, keyword, True, side)
    return (side.view, side.pcoll._native, keyword, side.has_default, side.default)


def _split_args(fn, args, kwargs, what):
    """Separates side-input views from constant arguments (positional or keyword); checks
    the arity. Returns the callable the runner calls with the element, the positional side
    values and the keyword side values, and the side-input specs in that order."""
    _check_callable(fn, what)
    for a in list(args) + list(kwargs.values()):
        if not isinstance(a, _SideInput):
            _check_copyable(a, what, "an extra argument,")
    consts = {k: v for k, v in kwargs.items() if not isinstance(v, _SideInput)}
    positional_sides = [a for a in args if isinstance(a, _SideInput)]
    if len(positional_sides) == len(args) and not consts:
        wrapped = fn
    else:

        def call(x, *side_values, _fn=fn, _args=args, _consts=consts, **keyword_sides):
            it = iter(side_values)
            return _fn(
                x,
                *[next(it) if isinstance(a, _SideInput) else a for a in _args],
                **_consts,
                **keyword_sides,
            )

        wrapped = call
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        sig = None
    if sig is not None:
        try:
            sig.bind(object(), *args, **kwargs)
        except TypeError as e:
            raise ValueError(
                f"{what}: {_fn_label(fn)} cannot be called with an element and "
                f"{len(args)} more argument(s){' and keywords ' + ', '.join(kwargs) if kwargs else ''}: {e}"
            ) from None
    sides = [_side_spec(a) for a in positional_sides]
    sides += [_side_spec(v, k) for k, v in kwargs.items() if isinstance(v, _SideInput)]
    return wrapped, sides


class _CallableParDo(PTransform):
    kind = None

    def __init__(self, fn, *args, **kwargs):
        super().__init__()
        if not callable(fn):
            raise TypeError(f"{type(self).__name__} needs a callable, got {fn!r}")
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def default_label(self):
        return f"{type(self).__name__}({_fn_label(self.fn)})"

    def expand(self, pcoll):
        name = self._name()
        fn, sides = _split_args(self.fn, self.args, self.kwargs, f"{type(self).__name__} '{name}'")
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

    def __init__(self, main, tagged, main_tag=None):
        self.main = main
        self._tagged = tagged
        self._main_tag = main_tag

    def __getitem__(self, tag):
        if tag is None or tag == "main" or (self._main_tag is not None and tag == self._main_tag):
            return self.main
        return self._tagged[tag]

    def __getattr__(self, tag):
        if tag.startswith("_"):
            raise AttributeError(tag)
        if self._main_tag is not None and tag == self._main_tag:
            return self.main
        try:
            return self._tagged[tag]
        except KeyError:
            raise AttributeError(tag) from None

    def __iter__(self):
        yield self.main
        yield from self._tagged.values()


class ParDo(PTransform):
    """Runs a DoFn on every element; extra arguments may be side-input views."""

    def __init__(self, dofn, *args, **kwargs):
        super().__init__()
        if not isinstance(dofn, DoFn):
            raise TypeError(f"ParDo needs a DoFn instance, got {dofn!r}")
        self.dofn, self.args, self.kwargs, self.tags = dofn, args, kwargs, []
        self.main_tag = None

    def default_label(self):
        return f"ParDo({type(self.dofn).__name__})"

    def with_outputs(self, *tags, main=None):
        """Declares tagged outputs; ``main`` names the main output in the result."""
        self.tags = list(tags)
        self.main_tag = main
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
                elif p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in self.kwargs:
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
        for a in list(self.args) + list(self.kwargs.values()):
            if not isinstance(a, _SideInput):
                _check_copyable(a, f"ParDo '{name}'", "an extra argument,")
        sides = [_side_spec(a) for a in self.args]
        sides += [_side_spec(v, k) for k, v in self.kwargs.items()]
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
            self.main_tag,
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
    rust = getattr(fn, "_beamline_builtin", None)
    if rust is not None:
        # A Python CombineFn of the standard library with the same combiner in Rust.
        fn = rust
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
    """A combiner implemented in Rust (values never enter Python); ``python`` gives the
    same combiner as a Python CombineFn, for where it runs in Python (CombineValues)."""

    def __init__(self, name, config=None, python=None):
        self.name, self.config = name, config
        self._python = python

    def python(self):
        if self._python is None:
            raise TypeError(f"the {self.name} combiner has no Python form")
        return self._python()


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
    """Combines all values (per window) into one.

    As in Beam, the result comes from a default step that also gives the CombineFn's empty
    result for an empty input: in the global window, at the minimum timestamp, with the
    pane of a value no trigger fired. Input in other windows needs ``without_defaults()``
    (a ValueError otherwise, as in Beam); each window's result then has its pane.
    """

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.has_defaults = True
        self.as_view = False

    def without_defaults(self):
        """No default step: an empty input (or window) gives no output."""
        self.has_defaults = False
        return self

    def as_singleton_view(self):
        """The result as a singleton side input, the CombineFn's empty result when empty."""
        self.as_view = True
        return self

    def _empty_result(self):
        """(True, the CombineFn's result for no input) or (False, None) when it has none."""
        fn = self.fn
        if isinstance(fn, _Builtin):
            return _BUILTIN_EMPTY.get(fn.name, (False, None))
        if fn in (min, max):
            return False, None
        try:
            if isinstance(fn, CombineFn):
                return True, fn.extract_output(fn.create_accumulator())
            return True, fn([])
        except Exception:  # noqa: BLE001 - a function with no empty result
            return False, None

    def expand(self, pcoll):
        from beamline.pvalue import AsSingleton

        b, config, f = _combine_args(self.fn)
        defaults = self.has_defaults and not self.as_view
        native = pcoll.pipeline._native.combine_globally(
            pcoll._native, self._name(), b, config, f, defaults
        )
        out = self._out(pcoll, native)
        if not self.as_view:
            return out
        has, value = self._empty_result()
        return AsSingleton(out, default_value=value) if has else AsSingleton(out)


# The empty results of the combiners implemented in Rust.
_BUILTIN_EMPTY = {
    "count": (True, 0),
    "sum": (True, 0),
    "mean": (True, float("nan")),
    "top": (True, []),
    "sample": (True, []),
}


class CombineValues(PTransform):
    """Combines the iterable of each ``(key, values)`` (the output of a GroupByKey)."""

    def __init__(self, fn):
        super().__init__()
        _combine_args(fn)  # checks the function
        self.fn = fn

    def expand(self, pcoll):
        fn = self.fn
        if isinstance(fn, _Builtin):
            fn = fn.python()

        def combine(kv, _fn=fn):
            key, values = kv
            if isinstance(_fn, CombineFn):
                acc = _fn.create_accumulator()
                for v in values:
                    acc = _fn.add_input(acc, v)
                return key, _fn.extract_output(acc)
            return key, _fn(list(values))

        return pcoll | self._name() >> Map(combine)


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
