"""Word count with Beamline's Python API: Python lambdas split and format, Rust counts.

    python examples/python/wordcount.py --input 'README.md' --output /tmp/beamline/pywc [--runner=local]
    python examples/python/wordcount.py --help
"""

import re
import sys

import beamline
from beamline.options.pipeline_options import PipelineOptions


class WordCountOptions(PipelineOptions):
    """The program's own options, declared as Beam programs declare theirs."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input", required=True, help="text files to read (a glob)")
        parser.add_argument("--output", required=True, help="prefix of the output shards")


def main(argv=None):
    options = PipelineOptions(sys.argv[1:] if argv is None else argv)
    # Built first: `--help` lists every option and exits, a misspelt one is an error.
    p = beamline.Pipeline(options=options)
    args = options.view_as(WordCountOptions)
    with p:
        (
            p
            | "Read" >> beamline.ReadFromText(args.input)
            | "Split" >> beamline.FlatMap(lambda line: re.findall(r"[\w']+", line))
            | "Count" >> beamline.combiners.Count.PerElement()
            | "Format" >> beamline.Map(lambda wc: f"{wc[0]}: {wc[1]}")
            | "Write" >> beamline.WriteToText(args.output)
        )


if __name__ == "__main__":
    main()
