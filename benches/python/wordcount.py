"""Python word count, the same pipeline on Beamline and on Apache Beam's DirectRunner,
plus a plain collections.Counter loop, on one generated file in one run.

    python benches/python/wordcount.py [--size-mb 10] [--dir /tmp/pywc]

Needs the `beamline` package (pip install ./python) and apache-beam==2.77.0 in the same
environment; without apache-beam the Beam variant is reported as skipped.
"""

import argparse
import collections
import glob
import os
import random
import re
import time

WORD = re.compile(r"[\w']+")


def generate(path, size_mb, seed=7):
    if os.path.exists(path) and os.path.getsize(path) >= size_mb << 20:
        return
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(50_000)]
    weights = [1.0 / (i + 1) for i in range(len(vocab))]
    target, written = size_mb << 20, 0
    with open(path, "w") as f:
        while written < target:
            line = " ".join(rng.choices(vocab, weights, k=10)) + "\n"
            f.write(line)
            written += len(line)


def read_counts(prefix):
    counts = {}
    for name in glob.glob(prefix + "*"):
        with open(name) as f:
            for line in f:
                w, _, n = line.rstrip("\n").rpartition(": ")
                counts[w] = int(n)
    return counts


def run_counter(inp, out):
    c = collections.Counter()
    with open(inp) as f:
        for line in f:
            c.update(WORD.findall(line))
    with open(out + "-00000-of-00001", "w") as f:
        for w, n in c.items():
            f.write(f"{w}: {n}\n")


def run_beamline(inp, out, args):
    import beamline

    with beamline.Pipeline(argv=args) as p:
        (
            p
            | "Read" >> beamline.ReadFromText(inp)
            | "Split" >> beamline.FlatMap(lambda line: WORD.findall(line))
            | "Count" >> beamline.combiners.Count.PerElement()
            | "Format" >> beamline.Map(lambda wc: f"{wc[0]}: {wc[1]}")
            | "Write" >> beamline.WriteToText(out)
        )


def run_beam(inp, out):
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    with beam.Pipeline(options=PipelineOptions(["--runner=DirectRunner"])) as p:
        (
            p
            | "Read" >> beam.io.ReadFromText(inp)
            | "Split" >> beam.FlatMap(lambda line: WORD.findall(line))
            | "Count" >> beam.combiners.Count.PerElement()
            | "Format" >> beam.Map(lambda wc: f"{wc[0]}: {wc[1]}")
            | "Write" >> beam.io.WriteToText(out)
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=10)
    ap.add_argument("--dir", default="/tmp/beamline-pywc")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    inp = os.path.join(a.dir, "input.txt")
    generate(inp, a.size_mb)
    variants = [
        ("python-counter", lambda out: run_counter(inp, out)),
        ("beamline-1-thread", lambda out: run_beamline(inp, out, ["--threads=1"])),
        ("beamline-2-threads", lambda out: run_beamline(inp, out, ["--threads=2"])),
        (
            "beamline-2-python-workers",
            lambda out: run_beamline(inp, out, ["--threads=2", "--python-workers=2"]),
        ),
    ]
    try:
        import apache_beam  # noqa: F401

        variants.append(("beam-directrunner", lambda out: run_beam(inp, out)))
    except ImportError:
        print("apache-beam is not installed: Beam DirectRunner skipped")
    results = []
    for name, fn in variants:
        out = os.path.join(a.dir, "out-" + name)
        for old in glob.glob(out + "*"):
            os.remove(old)
        start = time.perf_counter()
        fn(out)
        results.append((name, time.perf_counter() - start, read_counts(out)))
    ref = results[0][2]
    for name, _, counts in results[1:]:
        if counts != ref:
            raise SystemExit(f"{name} disagrees with {results[0][0]}")
    size = os.path.getsize(inp) / (1 << 20)
    print(f"python wordcount, {size:.1f} MB, {len(ref)} distinct words; all outputs agree")
    print("| variant | wall time (s) | MB/s | vs Counter loop |")
    print("|---|---|---|---|")
    base = results[0][1]
    for name, t, _ in results:
        print(f"| {name} | {t:.2f} | {size / t:.1f} | {t / base:.2f}x |")
    times = dict((n, t) for n, t, _ in results)
    print(
        f"--python-workers=2 speed-up over 1 thread: "
        f"{times['beamline-1-thread'] / times['beamline-2-python-workers']:.2f}x"
    )
    if "beam-directrunner" in times:
        print(f"Beamline (2 threads) is {times['beam-directrunner'] / times['beamline-2-threads']:.1f}x faster than Beam's DirectRunner")


if __name__ == "__main__":
    main()
