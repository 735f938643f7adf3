"""Writes beam_python_2_77_pipeline.pb: a small pipeline proto made by Apache Beam Python.

Run with apache-beam==2.77.0 installed:  python make_beam_fixture.py
The decode test in ../proto_beam_fixture.rs checks what this pipeline contains.
"""
import apache_beam as beam
from apache_beam.transforms import window
from apache_beam.transforms.trigger import AfterWatermark, AfterCount, AccumulationMode

p = beam.Pipeline()
words = p | "Create" >> beam.Create(["a b", "b c"])
pairs = (
    words
    | "Split" >> beam.FlatMap(lambda line: line.split())
    | "Pair" >> beam.Map(lambda w: (w, 1))
)
_ = pairs | "Group" >> beam.GroupByKey()
_ = pairs | "Sum" >> beam.CombinePerKey(sum)
_ = (
    pairs
    | "Stamp" >> beam.Map(lambda kv: window.TimestampedValue(kv, 10))
    | "Fixed" >> beam.WindowInto(
        window.FixedWindows(60),
        trigger=AfterWatermark(early=AfterCount(2), late=AfterCount(1)),
        accumulation_mode=AccumulationMode.ACCUMULATING,
        allowed_lateness=30,
    )
    | "WindowedCount" >> beam.combiners.Count.PerKey()
)
with open("beam_python_2_77_pipeline.pb", "wb") as f:
    f.write(p.to_runner_api().SerializeToString())
print("apache-beam", beam.__version__)
