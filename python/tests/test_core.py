"""Core transforms from Python, on every runner configuration."""

import pytest

import beamline
from beamline import window
from beamline.testing import assert_that, equal_to, is_empty


def test_map_flatmap_filter(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        lines = p | "Create" >> beamline.Create(["a b", "", "c d e"])
        words = lines | "Split" >> beamline.FlatMap(str.split)
        upper = words | "Upper" >> beamline.Map(lambda w: w.upper())
        kept = upper | "NotC" >> beamline.Filter(lambda w: w != "C")
        assert_that(kept, equal_to(["A", "B", "D", "E"]))


def test_values_round_trip_python_types(runner_args):
    class Point:
        def __init__(self, x):
            self.x = x

        def __eq__(self, o):
            return isinstance(o, Point) and o.x == self.x

        def __hash__(self):
            return hash(self.x)

    values = [None, True, 3, -2**40, 1.5, "s", b"\x00b", (1, "a"), [1, [2]], {"k": 1}, (1, 2, 3)]
    for v in values:
        assert beamline._native.roundtrip(v) == v
    with beamline.Pipeline(argv=runner_args) as p:
        got = p | "Create" >> beamline.Create(values) | "Id" >> beamline.Map(lambda x: x)
        assert_that(got, equal_to(values))


def test_group_by_key_and_cogroup(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        a = p | "A" >> beamline.Create([("k", 1), ("k", 2), ("j", 3)])
        b = p | "B" >> beamline.Create([("k", "x")])
        g = a | "G" >> beamline.GroupByKey() | "Sort" >> beamline.Map(lambda kv: (kv[0], sorted(kv[1])))
        assert_that(g, equal_to([("k", [1, 2]), ("j", [3])]))
        j = {"a": a, "b": b} | "Join" >> beamline.CoGroupByKey()
        sizes = j | "Sizes" >> beamline.Map(lambda kv: (kv[0], len(kv[1]["a"]), len(kv[1]["b"])))
        assert_that(sizes, equal_to([("k", 2, 1), ("j", 1, 0)]))


def test_flatten_partition_reshuffle(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        a = p | "A" >> beamline.Create([1, 2, 3])
        b = p | "B" >> beamline.Create([4, 5])
        both = (a, b) | "Both" >> beamline.Flatten()
        evens, odds = both | "Parity" >> beamline.Partition(lambda x, n: x % n, 2)
        assert_that(evens, equal_to([2, 4]))
        assert_that(odds | "R" >> beamline.Reshuffle(), equal_to([1, 3, 5]))


def test_combiners(runner_args):
    from beamline.combiners import Count, Mean, Top

    with beamline.Pipeline(argv=runner_args) as p:
        nums = p | "Nums" >> beamline.Create([3, 1, 4, 1, 5])
        kvs = p | "Kvs" >> beamline.Create([("a", 1), ("a", 3), ("b", 10)])
        assert_that(nums | "Sum" >> beamline.CombineGlobally(sum), equal_to([14]))
        assert_that(nums | "Max" >> beamline.CombineGlobally(max), equal_to([5]))
        assert_that(nums | "Count" >> Count.Globally(), equal_to([5]))
        assert_that(nums | "Mean" >> Mean.Globally(), equal_to([2.8]))
        assert_that(nums | "Top" >> Top.Largest(2), equal_to([[5, 4]]))
        assert_that(nums | "PerElem" >> Count.PerElement(), equal_to([(3, 1), (1, 2), (4, 1), (5, 1)]))
        assert_that(kvs | "SumPK" >> beamline.CombinePerKey(sum), equal_to([("a", 4), ("b", 10)]))
        assert_that(kvs | "CountPK" >> Count.PerKey(), equal_to([("a", 2), ("b", 1)]))
        joined = kvs | "Lambda" >> beamline.CombinePerKey(lambda vs: "-".join(str(v) for v in sorted(vs)))
        assert_that(joined, equal_to([("a", "1-3"), ("b", "10")]))
        empty = p | "Empty" >> beamline.Create([])
        assert_that(empty | "EmptySum" >> beamline.CombineGlobally(sum), equal_to([0]))


class AverageFn(beamline.CombineFn):
    def create_accumulator(self):
        return (0.0, 0)

    def add_input(self, acc, x):
        return (acc[0] + x, acc[1] + 1)

    def merge_accumulators(self, accs):
        return (sum(a[0] for a in accs), sum(a[1] for a in accs))

    def extract_output(self, acc):
        return acc[0] / acc[1] if acc[1] else float("nan")


def test_python_combine_fn(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        kvs = p | "Kvs" >> beamline.Create([("a", 1), ("a", 2), ("b", 5)] * 100)
        assert_that(kvs | "Avg" >> beamline.CombinePerKey(AverageFn()), equal_to([("a", 1.5), ("b", 5.0)]))


class SplitParity(beamline.DoFn):
    def setup(self):
        self.started = 0

    def start_bundle(self):
        self.started += 1

    def process(self, x):
        if x % 2:
            yield beamline.TaggedOutput("odd", x)
        else:
            yield x


def test_dofn_with_tagged_outputs(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        outs = p | "Nums" >> beamline.Create(range(6)) | "Split" >> beamline.ParDo(SplitParity()).with_outputs("odd")
        assert_that(outs.main, equal_to([0, 2, 4]))
        assert_that(outs.odd, equal_to([1, 3, 5]))


class UsesSides(beamline.DoFn):
    def process(self, x, total, all_items, lookup, multi):
        yield (x, total, len(all_items), lookup.get(x), sorted(multi.get(x, [])))


def test_side_inputs(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        nums = p | "Nums" >> beamline.Create([1, 2])
        total = nums | "Total" >> beamline.CombineGlobally(sum)
        names = p | "Names" >> beamline.Create([(1, "one"), (2, "two")])
        tags = p | "Tags" >> beamline.Create([(1, "x"), (1, "y")])
        out = nums | "Use" >> beamline.ParDo(
            UsesSides(),
            beamline.AsSingleton(total),
            beamline.AsList(nums),
            beamline.AsDict(names),
            beamline.AsMultiMap(tags),
        )
        assert_that(out, equal_to([(1, 3, 2, "one", ["x", "y"]), (2, 3, 2, "two", [])]))
        scaled = nums | "Scale" >> beamline.Map(lambda x, t: x * t, beamline.AsSingleton(total))
        assert_that(scaled, equal_to([3, 6]))
        plus = nums | "Plus" >> beamline.Map(lambda x, k: x + k, 10)
        assert_that(plus, equal_to([11, 12]))


class Describe(beamline.DoFn):
    def process(self, kv, ts=beamline.DoFn.TimestampParam, w=beamline.DoFn.WindowParam, pane=beamline.DoFn.PaneInfoParam):
        yield (kv[0], kv[1], w.start, w.end, ts, pane.timing)


def test_windows_and_timestamps(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        events = p | "Events" >> beamline.Create([("u", 1), ("u", 59), ("u", 61), ("v", 30)])
        stamped = events | "Stamp" >> beamline.Map(lambda e: window.TimestampedValue((e[0], 1), e[1]))
        counts = (
            stamped
            | "Minutes" >> beamline.WindowInto(window.FixedWindows(60))
            | "Count" >> beamline.CombinePerKey(sum)
            | "Describe" >> beamline.ParDo(Describe())
        )
        assert_that(counts, equal_to([
            ("u", 2, 0.0, 60.0, 59.999, 1), ("u", 1, 60.0, 120.0, 119.999, 1), ("v", 1, 0.0, 60.0, 59.999, 1),
        ]))
        sessions = (
            stamped
            | "Sessions" >> beamline.WindowInto(window.Sessions(10))
            | "SCount" >> beamline.CombinePerKey(sum)
        )
        # 59s and 61s are within the 10s gap: one session.
        assert_that(sessions, equal_to([("u", 1), ("u", 2), ("v", 1)]))


def test_triggers_early_and_final_panes(runner_args):
    from beamline import trigger

    with beamline.Pipeline(argv=runner_args) as p:
        events = p | "Events" >> beamline.Create([1, 2, 3, 4, 5])
        stamped = events | "Stamp" >> beamline.Map(lambda x: window.TimestampedValue(("k", x), x))
        panes = (
            stamped
            | "Win" >> beamline.WindowInto(
                window.FixedWindows(60),
                trigger=trigger.AfterWatermark(early=trigger.AfterCount(2)),
                accumulation_mode=trigger.AccumulationMode.ACCUMULATING,
            )
            | "Count" >> beamline.combiners.Count.PerKey()
            | "Timing" >> beamline.ParDo(Describe())
            | "Last" >> beamline.Map(lambda d: (d[1], d[5]))
        )
        # All data arrives in one bundle: one early pane, then the on-time pane.
        assert_that(panes, equal_to([(5, 0), (5, 1)]))


def test_empty_and_failed_assertions(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        none = p | "None" >> beamline.Create([]) | "Id" >> beamline.Map(lambda x: x)
        assert_that(none, is_empty())
    p = beamline.Pipeline(argv=runner_args)
    xs = p | "Xs" >> beamline.Create([1, 2])
    assert_that(xs, equal_to([1, 3]))
    with pytest.raises(RuntimeError, match=r"missing \[DynValue\(I64\(3\)\)\]"):
        p.run().wait_until_finish()


def test_rust_dofn_by_name(runner_args):
    with beamline.Pipeline(argv=runner_args) as p:
        nums = p | "Nums" >> beamline.Create([1, 2, 3])
        tripled = nums | "Triple" >> beamline.RustDoFn("beamline.python.MultiplyBy", factor=3)
        assert_that(tripled, equal_to([3, 6, 9]))
