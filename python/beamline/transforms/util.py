"""Composite transforms over keyed and plain PCollections, as Beam's ``transforms.util``:
Keys, Values, KvSwap, WithKeys, Distinct, Reshuffle."""

from beamline.pvalue import _SideInput
from beamline.transforms.core import Map, PTransform


class Keys(PTransform):
    """The key of each ``(key, value)``."""

    def expand(self, pcoll):
        return pcoll | self._name() >> Map(lambda kv: kv[0])


class Values(PTransform):
    """The value of each ``(key, value)``."""

    def expand(self, pcoll):
        return pcoll | self._name() >> Map(lambda kv: kv[1])


class KvSwap(PTransform):
    """``(value, key)`` for each ``(key, value)``."""

    def expand(self, pcoll):
        return pcoll | self._name() >> Map(lambda kv: (kv[1], kv[0]))


class WithKeys(PTransform):
    """``(key, element)``: ``key`` is a constant, a function of the element (with extra
    arguments, side inputs among them, as Map takes) or a side input's value."""

    def __init__(self, key, *args, **kwargs):
        super().__init__()
        self.key, self.args, self.kwargs = key, args, kwargs

    def expand(self, pcoll):
        key = self.key
        if isinstance(key, _SideInput):
            return pcoll | self._name() >> Map(lambda x, k: (k, x), key)
        if callable(key):
            return pcoll | self._name() >> Map(
                lambda x, *a, _key=key, **kw: (_key(x, *a, **kw), x), *self.args, **self.kwargs
            )
        return pcoll | self._name() >> Map(lambda x, _key=key: (_key, x))


class Distinct(PTransform):
    """Each distinct element once (per window)."""

    def expand(self, pcoll):
        name = self._name()
        # Counted in Rust (no Python call per element before the shuffle).
        counted = self._out(pcoll, pcoll.pipeline._native.count_per_element(pcoll._native, f"{name}/Count"))
        return counted | f"{name}/Keys" >> Map(lambda kv: kv[0])


RemoveDuplicates = Distinct


class Reshuffle(PTransform):
    """Redistributes elements across workers (a barrier to fusion)."""

    def expand(self, pcoll):
        return self._out(pcoll, pcoll.pipeline._native.reshuffle(pcoll._native, self._name()))
