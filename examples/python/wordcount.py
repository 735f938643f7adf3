"""Word count with Beamline's Python API: Python lambdas split and format, Rust counts.

    python examples/python/wordcount.py --input 'README.md' --output /tmp/beamline/pywc [--runner=local]
"""

import argparse
import re

import beamline


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    known, pipeline_args = parser.parse_known_args(argv)
    with beamline.Pipeline(argv=pipeline_args) as p:
        (
            p
            | "Read" >> beamline.ReadFromText(known.input)
            | "Split" >> beamline.FlatMap(lambda line: re.findall(r"[\w']+", line))
            | "Count" >> beamline.combiners.Count.PerElement()
            | "Format" >> beamline.Map(lambda wc: f"{wc[0]}: {wc[1]}")
            | "Write" >> beamline.WriteToText(known.output)
        )


if __name__ == "__main__":
    main()
