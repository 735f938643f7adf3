"""Standard combiners, implemented in Rust (values never enter Python)."""

from beamline.transforms import CombineGlobally, CombinePerKey, PTransform, _Builtin


class _PerElement(PTransform):
    def expand(self, pcoll):
        return self._out(pcoll, pcoll.pipeline._native.count_per_element(pcoll._native, self._name()))


class Count:
    @staticmethod
    def Globally():
        return CombineGlobally(_Builtin("count"))

    @staticmethod
    def PerKey():
        return CombinePerKey(_Builtin("count"))

    @staticmethod
    def PerElement():
        return _PerElement()


class Mean:
    @staticmethod
    def Globally():
        return CombineGlobally(_Builtin("mean"))

    @staticmethod
    def PerKey():
        return CombinePerKey(_Builtin("mean"))


class Top:
    @staticmethod
    def Largest(n):
        return CombineGlobally(_Builtin("top", {"n": n, "largest": True}))

    @staticmethod
    def Smallest(n):
        return CombineGlobally(_Builtin("top", {"n": n, "largest": False}))

    @staticmethod
    def LargestPerKey(n):
        return CombinePerKey(_Builtin("top", {"n": n, "largest": True}))

    @staticmethod
    def SmallestPerKey(n):
        return CombinePerKey(_Builtin("top", {"n": n, "largest": False}))


class Sample:
    @staticmethod
    def FixedSizeGlobally(n):
        return CombineGlobally(_Builtin("sample", {"n": n}))

    @staticmethod
    def FixedSizePerKey(n):
        return CombinePerKey(_Builtin("sample", {"n": n}))
