"""The keyed benchmark workloads on Apache Beam Python's DirectRunner (the harness's
reference "what users would otherwise pick"); same generated input as the Rust programs.

    python beam_keyed.py WORKLOAD N KEYS OUTPUT_PREFIX

Run by `beamline-bench` with a Python that has apache-beam (see BEAMLINE_BEAM_PYTHON).
"""

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.userstate import SetStateSpec
from apache_beam.coders import VarIntCoder

MASK = (1 << 64) - 1
CHUNK = 100_000


def mix(i):
    x = (i * 0x9E3779B97F4A7C15) & MASK
    x ^= x >> 31
    return ((x * 0xBF58476D1CE4E5B9) & MASK) ^ (x >> 29)


def pairs(stream, chunk, n, keys):
    for i in range(chunk * CHUNK, min((chunk + 1) * CHUNK, n)):
        h = mix(i ^ (stream << 56))
        yield (h % keys, (h >> 20) % 1000)


def generated(p, name, stream, n, keys):
    chunks = (n + CHUNK - 1) // CHUNK
    return (
        p
        | f"{name}Chunks" >> beam.Create(list(range(chunks)))
        | f"{name}Spread" >> beam.Reshuffle()
        | f"{name}Pairs" >> beam.FlatMap(lambda c: pairs(stream, c, n, keys))
    )


class Dedup(beam.DoFn):
    SEEN = SetStateSpec("seen", VarIntCoder())

    def process(self, kv, seen=beam.DoFn.StateParam(SEEN)):
        k, v = kv
        if v not in set(seen.read()):
            seen.add(v)
            yield (k, v)


def main():
    workload, n, keys, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        a = generated(p, "A", 0, n, keys)
        if workload == "gbk-sum":
            lines = a | beam.GroupByKey() | beam.Map(lambda kv: "%d,%d" % (kv[0], sum(kv[1])))
        elif workload == "combine-mean":
            lines = a | beam.combiners.Mean.PerKey() | beam.Map(lambda kv: "%d,%.6f" % kv)
        elif workload == "cogroup":
            b = generated(p, "B", 1, n, keys)
            lines = (
                {"a": a, "b": b}
                | beam.CoGroupByKey()
                | beam.Map(lambda kv: "%d,%d" % (kv[0], len(kv[1]["a"]) * len(kv[1]["b"])))
            )
        else:
            lines = (
                a
                | beam.ParDo(Dedup())
                | beam.combiners.Count.PerKey()
                | beam.Map(lambda kv: "%d,%d" % kv)
            )
        lines | beam.io.WriteToText(out)


if __name__ == "__main__":
    main()
