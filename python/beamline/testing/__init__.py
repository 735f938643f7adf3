"""Testing helpers: ``TestStream`` and assertions inside the pipeline
(``assert_that(pcoll, equal_to([...]))``; a failure fails the job with a diff). Also under
Beam's paths: ``testing.test_stream`` and ``testing.util``.
"""

from beamline.transforms import PTransform


class TestStream(PTransform):
    """Replays elements, watermark and processing-time advances (times in seconds).

    Processing time is virtual and starts at 0; after the last event the watermark
    advances to infinity.
    """

    __test__ = False

    def __init__(self):
        super().__init__()
        self._events = []

    def add_elements(self, elements):
        """Adds elements: plain values (timestamp 0) or ``TimestampedValue``s."""
        from beamline.window import TimestampedValue

        items = []
        for e in elements:
            if isinstance(e, TimestampedValue):
                items.append((e.value, int(round(e.timestamp * 1000))))
            else:
                items.append((e, 0))
        self._events.append(("add", items))
        return self

    def advance_watermark_to(self, timestamp):
        self._events.append(("wm", int(round(timestamp * 1000))))
        return self

    def advance_processing_time(self, duration):
        self._events.append(("pt", int(round(duration * 1000))))
        return self

    def advance_watermark_to_infinity(self):
        """The watermark goes to infinity after the last event anyway."""
        return self

    def expand(self, pbegin):
        return self._out(pbegin, pbegin.pipeline._native.test_stream(self._name(), self._events))



class _Matcher:
    def __init__(self, expected):
        self.expected = list(expected)


def equal_to(expected):
    """The PCollection holds exactly these elements, in any order."""
    return _Matcher(expected)


def is_empty():
    """The PCollection holds nothing."""
    return _Matcher([])


def assert_that(pcoll, matcher, label=None):
    """Checks ``pcoll`` against ``matcher`` when the pipeline runs."""
    if not isinstance(matcher, _Matcher):
        raise TypeError("assert_that takes equal_to([...]) or is_empty()")
    pcoll.pipeline._native.assert_equal(pcoll._native, matcher.expected)


from beamline.testing import test_stream, util  # noqa: E402,F401 - Beam's module paths
