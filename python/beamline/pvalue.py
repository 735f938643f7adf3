"""PCollections, side-input views and tagged outputs."""


class PBegin:
    """The input of root transforms."""

    def __init__(self, pipeline):
        self.pipeline = pipeline


class PCollection:
    """A distributed collection of Python values."""

    def __init__(self, pipeline, native):
        self.pipeline = pipeline
        self._native = native

    def __or__(self, transform):
        from beamline.transforms import apply

        return apply(self, transform)

    def __repr__(self):
        return f"PCollection({self._native.id})"


class TaggedOutput:
    """Emit ``value`` on the additional output ``tag`` of a ParDo."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value


class _SideInput:
    view = None
    has_default = False
    default = None

    def __init__(self, pcoll):
        if not isinstance(pcoll, PCollection):
            raise TypeError(f"{type(self).__name__} needs a PCollection, got {pcoll!r}")
        self.pcoll = pcoll


_NO_DEFAULT = object()


class AsSingleton(_SideInput):
    """The single value of a PCollection; ``default_value`` when it is empty."""

    view = "singleton"

    def __init__(self, pcoll, default_value=_NO_DEFAULT):
        super().__init__(pcoll)
        if default_value is not _NO_DEFAULT:
            self.has_default, self.default = True, default_value


class AsIter(_SideInput):
    """All values of a PCollection, as a list."""

    view = "list"


class AsList(_SideInput):
    """All values of a PCollection, as a list."""

    view = "list"


class AsDict(_SideInput):
    """A PCollection of ``(key, value)`` as a dict."""

    view = "dict"


class AsMultiMap(_SideInput):
    """A PCollection of ``(key, value)`` as a dict of lists; a missing key gives ``[]``."""

    view = "multimap"


class _MultiMapView(dict):
    """What an AsMultiMap side input is: a dict whose missing keys map to ``[]`` (as Beam's)."""

    def __missing__(self, key):
        return []
