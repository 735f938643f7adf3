"""State and timers in Python DoFns, on every runner configuration."""

import beamline
from beamline import userstate, window
from beamline.testing import assert_that, equal_to

BUF = userstate.BagStateSpec("buf")
SEEN = userstate.ReadModifyWriteStateSpec("seen")
FLUSH = userstate.TimerSpec("flush", userstate.TimeDomain.WATERMARK)
TOTAL = userstate.CombiningValueStateSpec("total", combine_fn=sum)
DISTINCT = userstate.SetStateSpec("distinct")


class BufferUntilWindowEnd(beamline.DoFn):
    """Buffers values per key and window; the event-time timer emits their sum."""

    def process(self, kv, w=beamline.DoFn.WindowParam, buf=beamline.DoFn.StateParam(BUF),
                seen=beamline.DoFn.StateParam(SEEN), flush=beamline.DoFn.TimerParam(FLUSH)):
        buf.add(kv[1])
        seen.write((seen.read() or 0) + 1)
        flush.set(w.end)

    @userstate.on_timer(FLUSH)
    def on_flush(self, key=beamline.DoFn.KeyParam, buf=beamline.DoFn.StateParam(BUF),
                 seen=beamline.DoFn.StateParam(SEEN), ts=beamline.DoFn.TimestampParam):
        yield (key, sum(buf.read()), seen.read(), ts)
        buf.clear()


def test_bag_value_and_event_time_timer(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        events = p | "Events" >> beamline.Create([("a", 1, 1), ("a", 2, 2), ("b", 10, 3), ("a", 5, 15)])
        stamped = events | "Stamp" >> beamline.Map(lambda e: window.TimestampedValue((e[0], e[1]), e[2]))
        out = (
            stamped
            | "Win" >> beamline.WindowInto(window.FixedWindows(10))
            | "Buffer" >> beamline.ParDo(BufferUntilWindowEnd())
        )
        assert_that(out, equal_to([("a", 3, 2, 10.0), ("b", 10, 1, 10.0), ("a", 5, 1, 20.0)]))


class Totals(beamline.DoFn):
    def process(self, kv, total=beamline.DoFn.StateParam(TOTAL), distinct=beamline.DoFn.StateParam(DISTINCT)):
        total.add(kv[1])
        distinct.add(kv[1])
        yield (kv[0], total.read(), sorted(distinct.read()))


def test_combining_and_set_state(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        kvs = p | "Kvs" >> beamline.Create([("k", 2), ("k", 2), ("k", 3)])
        out = kvs | "Totals" >> beamline.ParDo(Totals())
        finals = out | "Final" >> beamline.Filter(lambda r: r[1] == 7)
        assert_that(finals, equal_to([("k", 7, [2, 3])]))


LIMIT_SEEN = userstate.ReadModifyWriteStateSpec("count")
LIMIT_FLUSH = userstate.TimerSpec("report", userstate.TimeDomain.WATERMARK)


class CapPerKey(beamline.DoFn):
    """Stateful, with a side input (the cap) and a tagged output for what exceeds it."""

    def process(self, kv, cap, w=beamline.DoFn.WindowParam,
                count=beamline.DoFn.StateParam(LIMIT_SEEN),
                report=beamline.DoFn.TimerParam(LIMIT_FLUSH)):
        n = (count.read() or 0) + 1
        count.write(n)
        report.set(w.end)
        if n <= cap:
            yield kv
        else:
            yield beamline.TaggedOutput("over", kv)

    @userstate.on_timer(LIMIT_FLUSH)
    def on_report(self, key=beamline.DoFn.KeyParam, count=beamline.DoFn.StateParam(LIMIT_SEEN)):
        yield beamline.TaggedOutput("totals", (key, count.read()))


def test_stateful_dofn_with_side_input_and_tagged_outputs(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        cap = p | "Cap" >> beamline.Create([2])
        kvs = p | "Kvs" >> beamline.Create([("a", i) for i in range(5)] + [("b", 9)])
        kvs = kvs | "Win" >> beamline.WindowInto(window.FixedWindows(60))
        out = kvs | "Capped" >> beamline.ParDo(
            CapPerKey(), beamline.AsSingleton(cap)
        ).with_outputs("over", "totals")
        kept = out[None] | "KeptKeys" >> beamline.Map(lambda kv: kv[0]) | "CountKept" >> beamline.combiners.Count.PerElement()
        over = out.over | "OverKeys" >> beamline.Map(lambda kv: kv[0]) | "CountOver" >> beamline.combiners.Count.PerElement()
        assert_that(kept, equal_to([("a", 2), ("b", 1)]), label="Kept")
        assert_that(over, equal_to([("a", 3)]), label="Over")
        assert_that(out.totals, equal_to([("a", 5), ("b", 1)]), label="Totals")
