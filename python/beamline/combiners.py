"""Standard combiners, implemented in Rust (values never enter Python)."""

from beamline.transforms import CombineGlobally, CombinePerKey, Map, PTransform, _Builtin


class _PerElement(PTransform):
    def expand(self, pcoll):
        name = self._name()
        return pcoll | f"{name}/Pair" >> Map(lambda x: (x, None)) | f"{name}/Count" >> CombinePerKey(_Builtin("count"))


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
