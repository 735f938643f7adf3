"""Streaming from Python: TestStream with late data, triggers and panes (the same scenario
as Beam Python's, recorded in sdk/tests/data/streaming)."""

import beamline
from beamline import trigger, window
from beamline.testing import TestStream, assert_that, equal_to


class Describe(beamline.DoFn):
    def process(self, kv, w=beamline.DoFn.WindowParam, pane=beamline.DoFn.PaneInfoParam):
        yield (kv[0], sorted(kv[1]), w.start, pane.timing, pane.index)


def test_early_on_time_late_panes(runner_args):
    tv = window.TimestampedValue
    stream = (
        TestStream()
        .add_elements([tv(("a", 1), 1), tv(("a", 2), 2)])
        .add_elements([tv(("a", 3), 3)])
        .add_elements([tv(("a", 4), 4), tv(("a", 5), 4.5)])
        .advance_watermark_to(10)
        .add_elements([tv(("a", 6), 5)])
        .add_elements([tv(("a", 7), 6)])
        .advance_watermark_to(16)
        .add_elements([tv(("a", 8), 7)])
    )
    with beamline.Pipeline(argv=runner_args) as p:
        panes = (
            p
            | "Events" >> stream
            | "Win" >> beamline.WindowInto(
                window.FixedWindows(10),
                trigger=trigger.AfterWatermark(early=trigger.AfterCount(2), late=trigger.AfterCount(1)),
                accumulation_mode=trigger.AccumulationMode.DISCARDING,
                allowed_lateness=5,
            )
            | "Group" >> beamline.GroupByKey()
            | "Describe" >> beamline.ParDo(Describe())
        )
        # Beam 2.77's DirectRunner gives exactly these panes (beam_2_77_scenarios.json).
        assert_that(panes, equal_to([
            ("a", [1, 2], 0.0, 0, 0),
            ("a", [3, 4, 5], 0.0, 0, 1),
            ("a", [], 0.0, 1, 2),
            ("a", [6], 0.0, 2, 3),
            ("a", [7], 0.0, 2, 4),
        ]))
