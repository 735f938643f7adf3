"""State and timers for Python DoFns, shaped like Beam's ``apache_beam.transforms.userstate``.

Declare specs as parameter defaults of ``process`` (``buf=DoFn.StateParam(BAG)``,
``t=DoFn.TimerParam(TIMER)``, ``key=DoFn.KeyParam``) and timer callbacks with
``@on_timer(TIMER)``. The input must be ``(key, value)`` tuples; state is per key and window.
"""


__all__ = [
    "BagStateSpec", "CombiningValueStateSpec", "OrderedListStateSpec", "ReadModifyWriteStateSpec",
    "SetStateSpec", "TimeDomain", "TimerSpec", "on_timer",
]


class TimeDomain:
    WATERMARK = "watermark"
    REAL_TIME = "processing"


class _StateSpec:
    kind = None

    def __init__(self, name, coder=None):
        self.name = name


class BagStateSpec(_StateSpec):
    kind = "bag"


class ReadModifyWriteStateSpec(_StateSpec):
    kind = "value"


class SetStateSpec(_StateSpec):
    kind = "set"


class CombiningValueStateSpec(_StateSpec):
    kind = "combining"

    def __init__(self, name, coder=None, combine_fn=sum):
        super().__init__(name, coder)
        self.combine_fn = combine_fn


class OrderedListStateSpec(_StateSpec):
    """A list of ``(timestamp, value)`` kept in timestamp order (timestamps in seconds)."""

    kind = "ordered"


class TimerSpec:
    def __init__(self, name, time_domain):
        self.name, self.time_domain = name, time_domain


def on_timer(timer_spec):
    """Marks a DoFn method as the callback of ``timer_spec``."""

    def mark(method):
        method._beamline_timer = timer_spec.name
        return method

    return mark


class _Bag:
    def __init__(self, values):
        self._values, self._dirty = list(values), False

    def add(self, v):
        self._values.append(v)
        self._dirty = True

    def read(self):
        return list(self._values)

    def clear(self):
        self._values, self._dirty = [], True

    def _content(self):
        return self._values


class _Value:
    def __init__(self, values):
        self._values, self._dirty = list(values[:1]), False

    def read(self):
        return self._values[0] if self._values else None

    def write(self, v):
        self._values, self._dirty = [v], True

    def clear(self):
        self._values, self._dirty = [], True

    def _content(self):
        return self._values


class _Set(_Bag):
    def add(self, v):
        if v not in self._values:
            self._values.append(v)
            self._dirty = True


class _Combining(_Bag):
    def __init__(self, values, combine_fn):
        super().__init__(values)
        self._fn = combine_fn

    def read(self):
        fn = self._fn
        if hasattr(fn, "create_accumulator"):
            acc = fn.create_accumulator()
            for v in self._values:
                acc = fn.add_input(acc, v)
            return fn.extract_output(acc)
        return fn(self._values)


class _Timer:
    def __init__(self):
        self._ops = []

    def set(self, timestamp):
        self._ops.append(("set", float(timestamp)))

    def clear(self):
        self._ops.append(("clear", 0.0))


class _OrderedList(_Bag):
    def add(self, elem):
        ts, v = elem
        self._values.append((float(ts), v))
        self._dirty = True

    def read(self):
        return sorted(self._values, key=lambda e: e[0])

    def read_range(self, min_timestamp, limit_timestamp):
        lo, hi = float(min_timestamp), float(limit_timestamp)
        return [e for e in self.read() if lo <= e[0] < hi]

    def clear_range(self, min_timestamp, limit_timestamp):
        lo, hi = float(min_timestamp), float(limit_timestamp)
        self._values = [e for e in self._values if not lo <= e[0] < hi]
        self._dirty = True


def _handle(kind, values, spec):
    """A state handle over a snapshot of the cell (written back after the call)."""
    if kind == "ordered":
        return _OrderedList(values)
    if kind == "bag":
        return _Bag(values)
    if kind == "value":
        return _Value(values)
    if kind == "set":
        return _Set(values)
    return _Combining(values, spec.combine_fn)
