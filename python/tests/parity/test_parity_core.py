"""Parity with Apache Beam: element-wise transforms, grouping, composites, side inputs."""

import pytest

from harness import SCENARIOS, check, module, scenario

# Grouped values come in no particular order: scenarios sort them before recording.


def _tv(beam, v, t):
    return beam.window.TimestampedValue(v, t)


@scenario()
def map_filter_flatmap(beam, p):
    xs = p | beam.Create(range(10))
    return {
        "map": xs | "Sq" >> beam.Map(lambda x: x * x),
        "filter": xs | "Even" >> beam.Filter(lambda x: x % 2 == 0),
        "flat": xs | "Rep" >> beam.FlatMap(lambda x: [x] * (x % 3)),
        "args": xs | "Add" >> beam.Map(lambda x, a, b=0: x + a + b, 10, b=5),
    }


@scenario()
def dofn_class_with_lifecycle(beam, p):
    class Split(beam.DoFn):
        def setup(self):
            self.sep = " "

        def start_bundle(self):
            self.n = 0

        def process(self, line, prefix):
            for w in line.split(self.sep):
                self.n += 1
                yield f"{prefix}{w}"

    return p | beam.Create(["a b", "c d e", ""]) | beam.ParDo(Split(), "w:")


@scenario()
def tagged_outputs(beam, p):
    class Parity(beam.DoFn):
        def process(self, x):
            if x % 2:
                yield beam.pvalue.TaggedOutput("odd", x)
            else:
                yield x
            if x % 3 == 0:
                yield beam.pvalue.TaggedOutput("three", x)

    outs = p | beam.Create(range(10)) | beam.ParDo(Parity()).with_outputs("odd", "three", main="even")
    return {"even": outs.even, "odd": outs.odd, "three": outs["three"]}


@scenario()
def partition(beam, p):
    parts = p | beam.Create(range(12)) | beam.Partition(lambda x, n: x % n, 3)
    return {f"p{i}": parts[i] for i in range(3)}


@scenario()
def flatten_same_windowing(beam, p):
    a = p | "A" >> beam.Create([1, 2])
    b = p | "B" >> beam.Create([3])
    c = p | "C" >> beam.Create([])
    return (a, b, c) | beam.Flatten()


@scenario()
def flatten_different_windowing(beam, p):
    a = (p | "A" >> beam.Create([1, 12, 19])
         | "TA" >> beam.Map(lambda x: _tv(beam, x, x))
         | "WA" >> beam.WindowInto(beam.window.FixedWindows(10)))
    b = (p | "B" >> beam.Create([3, 7, 14])
         | "TB" >> beam.Map(lambda x: _tv(beam, x, x))
         | "WB" >> beam.WindowInto(beam.window.FixedWindows(5)))
    return (a, b) | beam.Flatten()


@scenario(accept=["batch_is_last"])
def group_by_key(beam, p):
    return (p | beam.Create([("a", 1), ("b", 2), ("a", 3), ("c", 4), ("a", 5)])
            | beam.GroupByKey() | beam.Map(lambda kv: (kv[0], sorted(kv[1]))))


@scenario(accept=["batch_is_last"])
def co_group_by_key_dict(beam, p):
    emails = p | "E" >> beam.Create([("amy", "a@x"), ("bob", "b@x"), ("amy", "a2@x")])
    phones = p | "P" >> beam.Create([("amy", "111"), ("cal", "333")])
    return ({"emails": emails, "phones": phones} | beam.CoGroupByKey()
            | beam.Map(lambda kv: (kv[0], sorted(kv[1]["emails"]), sorted(kv[1]["phones"]))))


@scenario(accept=["batch_is_last"])
def co_group_by_key_tuple(beam, p):
    a = p | "A" >> beam.Create([(1, "x"), (2, "y")])
    b = p | "B" >> beam.Create([(1, 10), (1, 11), (3, 30)])
    return ((a, b) | beam.CoGroupByKey()
            | beam.Map(lambda kv: (kv[0], sorted(kv[1][0]), sorted(kv[1][1]))))


@scenario()
def reshuffle_keys_values_swap(beam, p):
    kvs = p | beam.Create([("a", 1), ("b", 2), ("c", 3)]) | beam.Reshuffle()
    return {
        "keys": kvs | beam.Keys(),
        "values": kvs | beam.Values(),
        "swap": kvs | beam.KvSwap(),
    }


@scenario()
def with_keys_and_distinct(beam, p):
    xs = p | beam.Create(["apple", "bob", "apple", "cat", "bob"])
    return {
        "const": xs | "K1" >> beam.WithKeys(1),
        "fn": xs | "K2" >> beam.WithKeys(lambda s: s[0]),
        "distinct": xs | beam.Distinct(),
    }


@scenario()
def impulse(beam, p):
    return p | beam.Impulse() | beam.Map(lambda b: ("impulse", b))


@scenario()
def create_timestamped_values(beam, p):
    return p | beam.Create([_tv(beam, "a", 10), _tv(beam, "b", 20.5), _tv(beam, "c", 0)])


@scenario()
def map_to_timestamped_value(beam, p):
    return (p | beam.Create([1, 5, 9])
            | beam.Map(lambda x: _tv(beam, x, x * 100)))


@scenario()
def timestamped_output_rewindowed(beam, p):
    # A DoFn moving elements to a new timestamp in a windowed collection: Beam Python
    # assigns the new timestamp's windows with the collection's window fn.
    class Shift(beam.DoFn):
        def process(self, x):
            yield beam.window.TimestampedValue(x, x + 100)

    return (p | beam.Create([1, 3, 6])
            | "T" >> beam.Map(lambda x: _tv(beam, x, x))
            | beam.WindowInto(beam.window.FixedWindows(5))
            | beam.ParDo(Shift()))


@scenario()
def timestamped_output_sliding_rewindowed(beam, p):
    return (p | beam.Create([2])
            | "T" >> beam.Map(lambda x: _tv(beam, x, x))
            | beam.WindowInto(beam.window.SlidingWindows(10, 5))
            | "Shift" >> beam.Map(lambda x: _tv(beam, x, 31)))


@scenario()
def timestamp_and_window_params(beam, p):
    class Describe(beam.DoFn):
        def process(self, x, ts=beam.DoFn.TimestampParam, w=beam.DoFn.WindowParam):
            yield (x, float(ts), float(w.start), float(w.end))

    return (p | beam.Create([1, 7, 12])
            | "T" >> beam.Map(lambda x: _tv(beam, x, x))
            | beam.WindowInto(beam.window.FixedWindows(5))
            | beam.ParDo(Describe()))


# Side inputs


@scenario()
def side_input_singleton(beam, p):
    total = p | "Total" >> beam.Create([100])
    return (p | beam.Create([1, 2])
            | beam.Map(lambda x, t: x + t, beam.pvalue.AsSingleton(total)))


@scenario()
def side_input_singleton_default(beam, p):
    empty = p | "Empty" >> beam.Create([])
    return (p | beam.Create([1, 2])
            | beam.Map(lambda x, t: (x, t), beam.pvalue.AsSingleton(empty, default_value=-1)))


@scenario()
def side_input_list_and_iter(beam, p):
    side = p | "Side" >> beam.Create([3, 1, 2])
    xs = p | beam.Create(["x", "y"])
    return {
        "list": xs | "L" >> beam.Map(lambda x, s: (x, sorted(s)), beam.pvalue.AsList(side)),
        "iter": xs | "I" >> beam.Map(lambda x, s: (x, sum(s)), beam.pvalue.AsIter(side)),
    }


@scenario()
def side_input_dict(beam, p):
    side = p | "Side" >> beam.Create([("a", 1), ("b", 2)])
    return (p | beam.Create(["a", "b", "c"])
            | beam.Map(lambda k, d: (k, d.get(k, 0)), beam.pvalue.AsDict(side)))


@scenario()
def side_input_multimap_missing_key(beam, p):
    side = p | "Side" >> beam.Create([("a", 1), ("a", 2), ("b", 3)])
    return (p | beam.Create(["a", "b", "zzz"])
            | beam.Map(lambda k, m: (k, sorted(m[k])), beam.pvalue.AsMultiMap(side)))


@scenario()
def side_input_keyword(beam, p):
    side = p | "Side" >> beam.Create([1, 2, 3])
    single = p | "One" >> beam.Create([10])
    xs = p | beam.Create([0, 1])
    return {
        "map": xs | "M" >> beam.Map(lambda x, s, k=0: (x, sum(s), k),
                                    s=beam.pvalue.AsList(side), k=beam.pvalue.AsSingleton(single)),
        "mixed": xs | "Mix" >> beam.Map(lambda x, c, s: (x, c, sum(s)), 7, s=beam.pvalue.AsList(side)),
    }


@scenario()
def side_input_keyword_dofn(beam, p):
    class Add(beam.DoFn):
        def process(self, x, offset):
            yield x + offset

    single = p | "One" >> beam.Create([1000])
    return p | beam.Create([1, 2]) | beam.ParDo(Add(), offset=beam.pvalue.AsSingleton(single))


@scenario()
def side_input_windowed(beam, p):
    side = (p | "Side" >> beam.Create([(10, 0), (20, 5)])
            | "TS" >> beam.Map(lambda kv: _tv(beam, kv[0], kv[1]))
            | "WS" >> beam.WindowInto(beam.window.FixedWindows(5)))
    return (p | beam.Create([1, 6])
            | "T" >> beam.Map(lambda x: _tv(beam, x, x))
            | "W" >> beam.WindowInto(beam.window.FixedWindows(5))
            | beam.Map(lambda x, s: (x, sorted(s)), beam.pvalue.AsList(side)))


@scenario()
def side_input_combined_singleton_view(beam, p):
    total = p | "Nums" >> beam.Create([1, 2, 3]) | beam.CombineGlobally(sum).as_singleton_view()
    empty = p | "None" >> beam.Create([]) | "E" >> beam.CombineGlobally(sum).as_singleton_view()
    return (p | beam.Create(["x"])
            | beam.Map(lambda x, t, e: (x, t, e), total, empty))


@pytest.mark.parametrize("name", [n for n, f in SCENARIOS.items() if f.__module__ == __name__])
def test_parity(name, runner_args):
    check(SCENARIOS[name], runner_args)
