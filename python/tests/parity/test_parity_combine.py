"""Parity with Apache Beam: combiners, globally and per key, with and without defaults."""

import pytest

from harness import SCENARIOS, check, scenario


def _tv(beam, v, t):
    return beam.window.TimestampedValue(v, t)


class _SumSquares:
    """A CombineFn class built on either module's CombineFn."""

    @staticmethod
    def of(beam):
        class SumSquares(beam.CombineFn):
            def create_accumulator(self):
                return 0

            def add_input(self, acc, x):
                return acc + x * x

            def merge_accumulators(self, accs):
                return sum(accs)

            def extract_output(self, acc):
                return acc

        return SumSquares()


@scenario()
def combine_globally_builtins(beam, p):
    xs = p | beam.Create([3, 1, 4, 1, 5])
    return {
        "sum": xs | "Sum" >> beam.CombineGlobally(sum),
        "min": xs | "Min" >> beam.CombineGlobally(min),
        "max": xs | "Max" >> beam.CombineGlobally(max),
    }


@scenario()
def combine_globally_python_fn_and_callable(beam, p):
    xs = p | beam.Create([1, 2, 3])
    return {
        "fn": xs | "Fn" >> beam.CombineGlobally(_SumSquares.of(beam)),
        "callable": xs | "Callable" >> beam.CombineGlobally(lambda vs: sum(vs)),
    }


@scenario()
def empty_combine_globally_defaults(beam, p):
    empty = p | beam.Create([])
    return {
        "sum": empty | "Sum" >> beam.CombineGlobally(sum),
        "count": empty | "Count" >> beam.combiners.Count.Globally(),
        "fn": empty | "Fn" >> beam.CombineGlobally(_SumSquares.of(beam)),
        "tolist": empty | "ToList" >> beam.combiners.ToList(),
        "nodefault": empty | "NoDefault" >> beam.CombineGlobally(sum).without_defaults(),
    }


@scenario()
def combine_globally_without_defaults(beam, p):
    xs = p | beam.Create([1, 2, 3])
    return {
        "sum": xs | "Sum" >> beam.CombineGlobally(sum).without_defaults(),
        "fn": xs | "Fn" >> beam.CombineGlobally(_SumSquares.of(beam)).without_defaults(),
    }


@scenario(accept=["batch_is_last"])
def combine_globally_in_windows(beam, p):
    xs = (p | beam.Create([1, 2, 6, 7, 8, 15])
          | "T" >> beam.Map(lambda x: _tv(beam, x, x))
          | beam.WindowInto(beam.window.FixedWindows(5)))
    return {
        "sum": xs | "Sum" >> beam.CombineGlobally(sum).without_defaults(),
        "count": xs | "Count" >> beam.combiners.Count.Globally().without_defaults(),
        "mean": xs | "Mean" >> beam.combiners.Mean.Globally().without_defaults(),
    }


@scenario(accept=["batch_is_last"])
def combine_per_key(beam, p):
    kvs = p | beam.Create([("a", 1), ("b", 10), ("a", 3), ("b", 20), ("c", 7)])
    return {
        "sum": kvs | "Sum" >> beam.CombinePerKey(sum),
        "max": kvs | "Max" >> beam.CombinePerKey(max),
        "min": kvs | "Min" >> beam.CombinePerKey(min),
        "fn": kvs | "Fn" >> beam.CombinePerKey(_SumSquares.of(beam)),
        "callable": kvs | "Callable" >> beam.CombinePerKey(lambda vs: max(vs, default=0)),
    }


@scenario()
def count_combiners(beam, p):
    xs = p | beam.Create(["a", "b", "a", "c", "a"])
    kvs = p | "KV" >> beam.Create([("x", 1), ("y", 2), ("x", 3)])
    return {
        "globally": xs | "G" >> beam.combiners.Count.Globally(),
        "per_element": xs | "E" >> beam.combiners.Count.PerElement(),
        "per_key": kvs | "K" >> beam.combiners.Count.PerKey(),
        "fn": kvs | "Fn" >> beam.CombinePerKey(beam.combiners.CountCombineFn()),
    }


@scenario()
def mean_combiners(beam, p):
    xs = p | beam.Create([1, 2, 3, 4])
    kvs = p | "KV" >> beam.Create([("x", 1), ("y", 2), ("x", 4)])
    return {
        "globally": xs | "G" >> beam.combiners.Mean.Globally(),
        "per_key": kvs | "K" >> beam.combiners.Mean.PerKey(),
        "fn": kvs | "Fn" >> beam.CombinePerKey(beam.combiners.MeanCombineFn()),
        "fn_globally": xs | "FnG" >> beam.CombineGlobally(beam.combiners.MeanCombineFn()),
    }


@scenario()
def top_combiners(beam, p):
    xs = p | beam.Create([5, 1, 9, 3, 7])
    kvs = p | "KV" >> beam.Create([("a", 5), ("a", 1), ("a", 9), ("b", 2)])
    words = p | "W" >> beam.Create(["bb", "a", "cccc", "ddd"])
    top = beam.combiners.Top
    return {
        "of": xs | "Of" >> top.Of(2),
        "largest": xs | "L" >> top.Largest(3),
        "smallest": xs | "S" >> top.Smallest(2),
        "of_key": words | "Key" >> top.Of(2, key=len),
        "per_key": kvs | "PK" >> top.PerKey(2),
        "largest_per_key": kvs | "LPK" >> top.LargestPerKey(1),
        "smallest_per_key": kvs | "SPK" >> top.SmallestPerKey(2),
    }


@scenario()
def top_of_empty_input(beam, p):
    # Beam's Top.Of groups under one key even for an empty input: [] at the end of the
    # global window, on time.
    empty = p | beam.Create([])
    top = beam.combiners.Top
    return {
        "of": empty | "Of" >> top.Of(2),
        "of_key": empty | "Key" >> top.Of(2, key=len),
        "smallest": empty | "S" >> top.Smallest(1),
    }


@scenario()
def collection_combiners(beam, p):
    xs = p | beam.Create([3, 1, 2, 3])
    kvs = p | "KV" >> beam.Create([("a", 1), ("b", 2)])
    return {
        "to_list": xs | "L" >> beam.combiners.ToList() | "SortL" >> beam.Map(sorted),
        "to_set": xs | "S" >> beam.combiners.ToSet(),
        "to_dict": kvs | "D" >> beam.combiners.ToDict(),
    }


@scenario()
def latest_combiners(beam, p):
    xs = p | beam.Create([("a", 1, 10), ("a", 2, 30), ("b", 3, 20), ("a", 4, 5)])
    stamped = xs | beam.Map(lambda e: _tv(beam, (e[0], e[1]), e[2]))
    return {
        "globally": stamped | "G" >> beam.Values() | "L" >> beam.combiners.Latest.Globally(),
        "per_key": stamped | "PK" >> beam.combiners.Latest.PerKey(),
    }


@scenario()
def sample_sizes(beam, p):
    xs = p | beam.Create(range(20))
    kvs = p | "KV" >> beam.Create([("a", i) for i in range(5)] + [("b", 1)])
    return {
        "globally": xs | "G" >> beam.combiners.Sample.FixedSizeGlobally(3) | "Len" >> beam.Map(len),
        "per_key": (kvs | "PK" >> beam.combiners.Sample.FixedSizePerKey(2)
                    | "LenPK" >> beam.Map(lambda kv: (kv[0], len(kv[1])))),
    }


@scenario(accept=["batch_is_last"])
def combine_values_after_group(beam, p):
    grouped = p | beam.Create([("a", 1), ("a", 2), ("b", 5)]) | beam.GroupByKey()
    return {
        "sum": grouped | "Sum" >> beam.CombineValues(sum),
        "fn": grouped | "Fn" >> beam.CombineValues(_SumSquares.of(beam)),
        "mean": grouped | "Mean" >> beam.CombineValues(beam.combiners.MeanCombineFn()),
    }


@pytest.mark.parametrize("name", [n for n, f in SCENARIOS.items() if f.__module__ == __name__])
def test_parity(name, runner_args):
    check(SCENARIOS[name], runner_args)


@pytest.mark.parametrize("module_name", ["apache_beam", "beamline"])
def test_combine_globally_with_defaults_in_windows_is_rejected(module_name):
    """Both reject defaults outside the global window when the pipeline is built."""
    import importlib

    beam = importlib.import_module(module_name)
    p = beam.Pipeline()
    xs = (p | beam.Create([1, 2])
          | beam.Map(lambda x: beam.window.TimestampedValue(x, x))
          | beam.WindowInto(beam.window.FixedWindows(5)))
    with pytest.raises(ValueError, match="without_defaults"):
        xs | beam.CombineGlobally(sum)
    # Top.Of outside Beam's default windowing is such a CombineGlobally too.
    with pytest.raises(ValueError, match="without_defaults"):
        xs | "Top" >> beam.combiners.Top.Of(2)
