"""Windows, window functions and timestamped values (times in seconds, like Beam)."""


__all__ = [
    "FixedWindows", "GlobalWindow", "GlobalWindows", "IntervalWindow", "PaneInfo", "PaneInfoTiming",
    "Sessions", "SlidingWindows", "TimestampCombiner", "TimestampedValue",
]


def _ms(seconds):
    return int(round(seconds * 1000))


class TimestampedValue:
    """Return this from a Map/DoFn to give ``value`` the event ``timestamp`` (seconds)."""

    def __init__(self, value, timestamp):
        self.value = value
        self.timestamp = float(timestamp)


class IntervalWindow:
    """The window ``[start, end)`` (seconds)."""

    def __init__(self, start, end):
        self.start = start
        self.end = end

    def max_timestamp(self):
        return self.end - 0.001

    def __eq__(self, other):
        return isinstance(other, IntervalWindow) and (self.start, self.end) == (other.start, other.end)

    def __hash__(self):
        return hash((self.start, self.end))

    def __repr__(self):
        return f"[{self.start}, {self.end})"


# The global window's last timestamp (ms), as Beam defines it: the maximum timestamp
# (9223372036854775 ms) minus one day.
_GLOBAL_MAX_MS = 9_223_371_950_454_775


class GlobalWindow:
    """The single window spanning all of time."""

    start = -9_223_372_036_854_775 / 1000
    end = (_GLOBAL_MAX_MS + 1) / 1000

    def max_timestamp(self):
        return _GLOBAL_MAX_MS / 1000

    def __eq__(self, other):
        return isinstance(other, GlobalWindow)

    def __hash__(self):
        return 0

    def __repr__(self):
        return "GlobalWindow"


class PaneInfoTiming:
    EARLY = 0
    ON_TIME = 1
    LATE = 2
    UNKNOWN = 3


class PaneInfo:
    """Which firing produced an element."""

    def __init__(self, is_first, is_last, timing, index, nonspeculative_index):
        self.is_first = is_first
        self.is_last = is_last
        self.timing = timing
        self.index = index
        self.nonspeculative_index = nonspeculative_index

    def __repr__(self):
        return (
            f"PaneInfo(first={self.is_first}, last={self.is_last}, timing={self.timing}, "
            f"index={self.index}, nonspeculative_index={self.nonspeculative_index})"
        )


class GlobalWindows:
    def _spec(self):
        return ("global", 0, 0, 0)


class FixedWindows:
    def __init__(self, size, offset=0):
        self.size, self.offset = size, offset

    def _spec(self):
        return ("fixed", _ms(self.size), _ms(self.offset), 0)


class SlidingWindows:
    def __init__(self, size, period, offset=0):
        self.size, self.period, self.offset = size, period, offset

    def _spec(self):
        return ("sliding", _ms(self.size), _ms(self.period), _ms(self.offset))


class Sessions:
    def __init__(self, gap_size):
        self.gap_size = gap_size

    def _spec(self):
        return ("sessions", _ms(self.gap_size), 0, 0)


class TimestampCombiner:
    OUTPUT_AT_EOW = "end_of_window"
    OUTPUT_AT_EARLIEST = "earliest"
    OUTPUT_AT_LATEST = "latest"
