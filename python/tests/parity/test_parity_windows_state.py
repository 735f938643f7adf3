"""Parity with Apache Beam in batch: windows, timestamp combiners, state and timers."""

import pytest

from harness import SCENARIOS, check, module, scenario


def _windowed(beam, p, events, windowfn, **kw):
    """``(key, value, seconds)`` events as timestamped ``(key, value)`` in ``windowfn``."""
    return (p | beam.Create(events)
            | "Stamp" >> beam.Map(lambda e: beam.window.TimestampedValue((e[0], e[1]), e[2]))
            | beam.WindowInto(windowfn, **kw))


def _sorted_groups(beam, pc, label="Sort"):
    return pc | label >> beam.Map(lambda kv: (kv[0], sorted(kv[1])))


EVENTS = [("a", 1, 1), ("a", 2, 4), ("b", 3, 6), ("a", 4, 12), ("b", 5, 13), ("a", 6, 30)]


@scenario(accept=["batch_is_last"])
def fixed_windows_group(beam, p):
    xs = _windowed(beam, p, EVENTS, beam.window.FixedWindows(10))
    return _sorted_groups(beam, xs | beam.GroupByKey())


@scenario(accept=["batch_is_last"])
def fixed_windows_with_offset(beam, p):
    xs = _windowed(beam, p, EVENTS, beam.window.FixedWindows(10, offset=3))
    return _sorted_groups(beam, xs | beam.GroupByKey())


@scenario(accept=["batch_is_last"])
def sliding_windows_group(beam, p):
    xs = _windowed(beam, p, EVENTS, beam.window.SlidingWindows(10, 5))
    return _sorted_groups(beam, xs | beam.GroupByKey())


@scenario(accept=["batch_is_last"])
def sessions_group(beam, p):
    xs = _windowed(beam, p, EVENTS, beam.window.Sessions(5))
    return _sorted_groups(beam, xs | beam.GroupByKey())


@scenario(accept=["batch_is_last"])
def sessions_combine_per_key(beam, p):
    xs = _windowed(beam, p, EVENTS, beam.window.Sessions(5))
    return {"sum": xs | beam.CombinePerKey(sum), "count": xs | "C" >> beam.combiners.Count.PerKey()}


@scenario(accept=["batch_is_last"])
def timestamp_combiner_earliest(beam, p):
    tc = beam.window.TimestampCombiner
    xs = _windowed(beam, p, EVENTS, beam.window.FixedWindows(10), timestamp_combiner=tc.OUTPUT_AT_EARLIEST)
    return _sorted_groups(beam, xs | beam.GroupByKey())


@scenario(accept=["batch_is_last"])
def timestamp_combiner_latest(beam, p):
    tc = beam.window.TimestampCombiner
    xs = _windowed(beam, p, EVENTS, beam.window.FixedWindows(10), timestamp_combiner=tc.OUTPUT_AT_LATEST)
    return _sorted_groups(beam, xs | beam.GroupByKey())


@scenario(accept=["batch_is_last"])
def rewindow_into_global(beam, p):
    xs = _windowed(beam, p, EVENTS, beam.window.FixedWindows(10))
    sums = xs | "Sum" >> beam.CombinePerKey(sum)
    return (sums | "Global" >> beam.WindowInto(beam.window.GlobalWindows())
            | "G" >> beam.GroupByKey() | "S2" >> beam.Map(lambda kv: (kv[0], sorted(kv[1]))))


@scenario(accept=["batch_is_last"])
def window_param_after_group(beam, p):
    class Describe(beam.DoFn):
        def process(self, kv, w=beam.DoFn.WindowParam, ts=beam.DoFn.TimestampParam):
            yield (kv[0], sum(kv[1]), float(w.start), float(w.end), float(ts))

    xs = _windowed(beam, p, EVENTS, beam.window.SlidingWindows(10, 5))
    return xs | beam.GroupByKey() | beam.ParDo(Describe())


# State and timers (batch: the watermark jumps to the end once the input is read).


def _userstate(beam):
    return module(beam, "transforms.userstate")


@scenario()
def bag_state_flushed_by_timer(beam, p):
    us = _userstate(beam)
    BUF = us.BagStateSpec("buf", beam.coders.VarIntCoder())
    FLUSH = us.TimerSpec("flush", us.TimeDomain.WATERMARK)

    class Buffer(beam.DoFn):
        def process(self, kv, buf=beam.DoFn.StateParam(BUF), t=beam.DoFn.TimerParam(FLUSH),
                    w=beam.DoFn.WindowParam):
            buf.add(kv[1])
            t.set(w.max_timestamp())

        @us.on_timer(FLUSH)
        def flush(self, buf=beam.DoFn.StateParam(BUF), key=beam.DoFn.KeyParam):
            yield (key, sorted(buf.read()))
            buf.clear()

    xs = _windowed(beam, p, EVENTS, beam.window.FixedWindows(10))
    return xs | beam.ParDo(Buffer())


@scenario()
def value_state_running_count(beam, p):
    us = _userstate(beam)
    COUNT = us.ReadModifyWriteStateSpec("count", beam.coders.VarIntCoder())

    class Count(beam.DoFn):
        def process(self, kv, count=beam.DoFn.StateParam(COUNT)):
            n = (count.read() or 0) + 1
            count.write(n)
            if n == 2:
                yield (kv[0], "second")

    return p | beam.Create([("a", 1), ("b", 1), ("a", 2), ("a", 3), ("b", 4)]) | beam.ParDo(Count())


@scenario()
def combining_state_sum_on_timer(beam, p):
    us = _userstate(beam)
    TOTAL = us.CombiningValueStateSpec("total", combine_fn=sum)
    EMIT = us.TimerSpec("emit", us.TimeDomain.WATERMARK)

    class Total(beam.DoFn):
        def process(self, kv, total=beam.DoFn.StateParam(TOTAL), t=beam.DoFn.TimerParam(EMIT),
                    w=beam.DoFn.WindowParam):
            total.add(kv[1])
            t.set(w.max_timestamp())

        @us.on_timer(EMIT)
        def emit(self, total=beam.DoFn.StateParam(TOTAL), key=beam.DoFn.KeyParam):
            yield (key, total.read())

    return _windowed(beam, p, EVENTS, beam.window.FixedWindows(10)) | beam.ParDo(Total())


@scenario()
def set_state_dedup(beam, p):
    us = _userstate(beam)
    SEEN = us.SetStateSpec("seen", beam.coders.StrUtf8Coder())

    class Dedup(beam.DoFn):
        def process(self, kv, seen=beam.DoFn.StateParam(SEEN)):
            if kv[1] not in set(seen.read()):
                seen.add(kv[1])
                yield kv

    events = [("u1", "x"), ("u1", "y"), ("u1", "x"), ("u2", "x"), ("u2", "x")]
    return p | beam.Create(events) | beam.ParDo(Dedup())


@scenario()
def event_time_timer_output_timestamp(beam, p):
    us = _userstate(beam)
    T = us.TimerSpec("t", us.TimeDomain.WATERMARK)

    class Later(beam.DoFn):
        def process(self, kv, t=beam.DoFn.TimerParam(T), ts=beam.DoFn.TimestampParam):
            t.set(ts + 3)

        @us.on_timer(T)
        def fire(self, key=beam.DoFn.KeyParam, ts=beam.DoFn.TimestampParam):
            yield (key, float(ts))

    # One element per key: the last set() of a timer wins, and Beam leaves open the order
    # elements reach a DoFn in (a reshuffled Create's reach it in any order on a
    # distributed runner).
    last = [("a", 6, 30), ("b", 5, 13)]
    return _windowed(beam, p, last, beam.window.GlobalWindows()) | beam.ParDo(Later())


@scenario()
def ordered_list_state(beam, p):
    us = _userstate(beam)
    EVENTS_ = us.OrderedListStateSpec("events", beam.coders.VarIntCoder())
    END = us.TimerSpec("end", us.TimeDomain.WATERMARK)

    class Sort(beam.DoFn):
        def process(self, kv, events=beam.DoFn.StateParam(EVENTS_), t=beam.DoFn.TimerParam(END),
                    ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam):
            events.add((ts, kv[1]))
            t.set(w.max_timestamp())

        @us.on_timer(END)
        def end(self, events=beam.DoFn.StateParam(EVENTS_), key=beam.DoFn.KeyParam):
            yield (key, [(float(t), v) for t, v in events.read()])

    return _windowed(beam, p, EVENTS, beam.window.FixedWindows(100)) | beam.ParDo(Sort())


@pytest.mark.parametrize("name", [n for n, f in SCENARIOS.items() if f.__module__ == __name__])
def test_parity(name, runner_args):
    check(SCENARIOS[name], runner_args)
