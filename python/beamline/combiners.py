"""Standard combiners, as Beam's ``transforms.combiners``. Count, Mean, Top (without a key
function) and Sample run in Rust (values never enter Python); the others are Python
CombineFns."""

import heapq

from beamline.transforms.core import (
    CombineFn,
    CombineGlobally,
    CombinePerKey,
    DoFn,
    ParDo,
    PTransform,
    _Builtin,
    _CallableCombineFn,
)

__all__ = [
    "Count", "CountCombineFn", "Latest", "LatestCombineFn", "Mean", "MeanCombineFn", "Sample",
    "ToDict", "ToDictCombineFn", "ToList", "ToListCombineFn", "ToSet", "ToSetCombineFn", "Top",
    "TopCombineFn",
]


class CountCombineFn(CombineFn):
    """The number of elements (runs in Rust inside a combine)."""

    _beamline_builtin = _Builtin("count")

    def create_accumulator(self):
        return 0

    def add_input(self, acc, x):
        return acc + 1

    def merge_accumulators(self, accs):
        return sum(accs)

    def extract_output(self, acc):
        return acc


class MeanCombineFn(CombineFn):
    """The arithmetic mean, NaN for no input (runs in Rust inside a combine)."""

    _beamline_builtin = _Builtin("mean")

    def create_accumulator(self):
        return (0, 0)

    def add_input(self, acc, x):
        return (acc[0] + x, acc[1] + 1)

    def merge_accumulators(self, accs):
        accs = list(accs)
        return (sum(a[0] for a in accs), sum(a[1] for a in accs))

    def extract_output(self, acc):
        return acc[0] / acc[1] if acc[1] else float("nan")


CountCombineFn._beamline_builtin._python = CountCombineFn
MeanCombineFn._beamline_builtin._python = MeanCombineFn


class _PerElement(PTransform):
    def expand(self, pcoll):
        return self._out(pcoll, pcoll.pipeline._native.count_per_element(pcoll._native, self._name()))


class Count:
    """Counts elements, globally, per key or per distinct element."""

    @staticmethod
    def Globally():
        return CombineGlobally(CountCombineFn())

    @staticmethod
    def PerKey():
        return CombinePerKey(CountCombineFn())

    @staticmethod
    def PerElement():
        return _PerElement()


class Mean:
    """Arithmetic means, globally or per key."""

    @staticmethod
    def Globally():
        return CombineGlobally(MeanCombineFn())

    @staticmethod
    def PerKey():
        return CombinePerKey(MeanCombineFn())


class TopCombineFn(CombineFn):
    """The ``n`` largest elements (by ``key``), largest first; smallest with ``reverse``."""

    def __init__(self, n, key=None, reverse=False):
        self.n, self.key, self.reverse = n, key, reverse

    def _sort_key(self, x):
        return self.key(x) if self.key is not None else x

    def create_accumulator(self):
        return []

    def add_input(self, acc, x):
        acc.append(x)
        if len(acc) > 2 * self.n:
            acc = self.extract_output(acc)
        return acc

    def merge_accumulators(self, accs):
        return self.extract_output([x for a in accs for x in a])

    def extract_output(self, acc):
        pick = heapq.nsmallest if self.reverse else heapq.nlargest
        return pick(self.n, acc, key=self._sort_key)


def _top(n, key, reverse):
    if key is None:
        # In Rust: the n largest (or smallest), largest (smallest) first.
        return _Builtin("top", {"n": n, "largest": not reverse}, lambda: TopCombineFn(n, None, reverse))
    return TopCombineFn(n, key, reverse)


class _Seed:
    """The element that makes Top's grouping fire for an empty input (skipped by the fn)."""


class _SkipSeed(CombineFn):
    """``fn`` over every input but the seed."""

    def __init__(self, fn):
        self.fn = fn

    def create_accumulator(self):
        return self.fn.create_accumulator()

    def add_input(self, acc, x):
        return acc if isinstance(x, _Seed) else self.fn.add_input(acc, x)

    def merge_accumulators(self, accs):
        return self.fn.merge_accumulators(accs)

    def extract_output(self, acc):
        return self.fn.extract_output(acc)


class _TopGlobally(PTransform):
    """Top of a whole collection: in Beam the result is the grouping's, not a default's.

    In Beam's default windowing that grouping runs under one key even for an empty
    input, giving ``[]`` at the end of the global window; a seed element, skipped by the
    CombineFn, does the same here. Elsewhere it is a ``CombineGlobally`` with defaults, as
    in Beam (so a ValueError outside the global window).
    """

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def default_label(self):
        return "Top"

    def expand(self, pcoll):
        from beamline.transforms.core import CombinePerKey, Flatten, Impulse, Map

        name = self._name()
        if not pcoll._native.default_windowing:
            return pcoll | name >> CombineGlobally(self.fn)
        fn = self.fn.python() if isinstance(self.fn, _Builtin) else self.fn
        keyed = pcoll | f"{name}/KeyWithNone" >> Map(lambda x: (None, x))
        seed = (pcoll.pipeline | f"{name}/SeedImpulse" >> Impulse()
                | f"{name}/Seed" >> Map(lambda _: (None, _Seed())))
        return ((keyed, seed) | f"{name}/Flatten" >> Flatten()
                | f"{name}/Combine" >> CombinePerKey(_SkipSeed(fn))
                | f"{name}/Values" >> Map(lambda kv: kv[1]))


class Top:
    """The largest (or smallest) ``n`` elements, globally or per key, as lists."""

    @staticmethod
    def Of(n, key=None, reverse=False):
        return _TopGlobally(_top(n, key, reverse))

    @staticmethod
    def PerKey(n, key=None, reverse=False):
        return CombinePerKey(_top(n, key, reverse))

    @staticmethod
    def Largest(n, key=None):
        return Top.Of(n, key)

    @staticmethod
    def Smallest(n, key=None):
        return Top.Of(n, key, reverse=True)

    @staticmethod
    def LargestPerKey(n, key=None):
        return Top.PerKey(n, key)

    @staticmethod
    def SmallestPerKey(n, key=None):
        return Top.PerKey(n, key, reverse=True)


class Sample:
    """``n`` elements picked uniformly at random, globally or per key."""

    @staticmethod
    def FixedSizeGlobally(n):
        return CombineGlobally(_Builtin("sample", {"n": n}))

    @staticmethod
    def FixedSizePerKey(n):
        return CombinePerKey(_Builtin("sample", {"n": n}))


class ToListCombineFn(_CallableCombineFn):
    """All elements as a list (a list accumulator, as every callable's)."""

    def __init__(self):
        super().__init__(list)


class ToDictCombineFn(CombineFn):
    """``(key, value)`` elements as a dict (one value per key wins)."""

    def create_accumulator(self):
        return {}

    def add_input(self, acc, kv):
        acc[kv[0]] = kv[1]
        return acc

    def merge_accumulators(self, accs):
        out = {}
        for a in accs:
            out.update(a)
        return out

    def extract_output(self, acc):
        return acc


class ToSetCombineFn(CombineFn):
    """The distinct elements as a set."""

    def create_accumulator(self):
        return set()

    def add_input(self, acc, x):
        acc.add(x)
        return acc

    def merge_accumulators(self, accs):
        out = set()
        for a in accs:
            out |= a
        return out

    def extract_output(self, acc):
        return acc


def ToList():
    """A global combine of all elements into one list."""
    return CombineGlobally(ToListCombineFn())


def ToDict():
    """A global combine of ``(key, value)`` elements into one dict."""
    return CombineGlobally(ToDictCombineFn())


def ToSet():
    """A global combine of all elements into one set."""
    return CombineGlobally(ToSetCombineFn())


# The smallest timestamp (seconds), as Beam's MIN_TIMESTAMP.
_MIN_TS = -9_223_372_036_854.775


class LatestCombineFn(CombineFn):
    """The value of the ``(value, timestamp)`` with the latest timestamp (None if none)."""

    def create_accumulator(self):
        return (None, _MIN_TS)

    def add_input(self, acc, element):
        return element if element[1] > acc[1] else acc

    def merge_accumulators(self, accs):
        return max(accs, key=lambda a: a[1])

    def extract_output(self, acc):
        return acc[0]


class _WithTimestamp(DoFn):
    def process(self, x, ts=DoFn.TimestampParam):
        yield (x, ts)


class _WithTimestampPerKey(DoFn):
    def process(self, kv, ts=DoFn.TimestampParam):
        yield (kv[0], (kv[1], ts))


class _LatestGlobally(PTransform):
    def default_label(self):
        return "LatestGlobally"

    def expand(self, pcoll):
        name = self._name()
        return (
            pcoll
            | f"{name}/AddTimestamps" >> ParDo(_WithTimestamp())
            | f"{name}/Combine" >> CombineGlobally(LatestCombineFn())
        )


class _LatestPerKey(PTransform):
    def default_label(self):
        return "LatestPerKey"

    def expand(self, pcoll):
        name = self._name()
        return (
            pcoll
            | f"{name}/AddTimestamps" >> ParDo(_WithTimestampPerKey())
            | f"{name}/Combine" >> CombinePerKey(LatestCombineFn())
        )


class Latest:
    """The element with the latest timestamp, globally or per key."""

    @staticmethod
    def Globally():
        return _LatestGlobally()

    @staticmethod
    def PerKey():
        return _LatestPerKey()
