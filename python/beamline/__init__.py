"""Beamline for Python: the Apache Beam programming model on Beamline's Rust runners.

Pipelines are built with a Beam-shaped API (``p | "Name" >> beamline.Map(fn)``) into the
same portable pipeline proto as Rust pipelines and run by the Rust runners; Python
callables run in-process, and Rust transforms (GroupByKey, standard combiners, text IO)
never call into Python.
"""

from beamline import coders, combiners, io, metrics, options, pvalue, testing, transforms, trigger, userstate, window
from beamline.io import (
    ReadFromParquet,
    ReadFromParquetBatched,
    ReadFromText,
    WriteToParquet,
    WriteToParquetBatched,
    WriteToText,
)
from beamline.pipeline import Pipeline, PipelineOptions, PipelineResult, PipelineState, StandardOptions
from beamline.pvalue import (
    AsDict,
    AsIter,
    AsList,
    AsMultiMap,
    AsSingleton,
    PCollection,
    TaggedOutput,
)
from beamline.transforms import (
    CoGroupByKey,
    CombineFn,
    CombineGlobally,
    CombinePerKey,
    CombineValues,
    Create,
    Distinct,
    DoFn,
    Filter,
    FlatMap,
    Flatten,
    GroupByKey,
    Impulse,
    Keys,
    KvSwap,
    Map,
    ParDo,
    Partition,
    PTransform,
    Reshuffle,
    RustDoFn,
    Values,
    WindowInto,
    WithKeys,
)

__all__ = [
    "AsDict", "AsIter", "AsList", "AsMultiMap", "AsSingleton", "CoGroupByKey", "CombineFn",
    "CombineGlobally", "CombinePerKey", "CombineValues", "Create", "Distinct", "DoFn", "Filter",
    "FlatMap", "Flatten", "GroupByKey", "Impulse", "Keys", "KvSwap", "Map", "ParDo", "Partition",
    "PCollection", "Pipeline", "PipelineOptions", "PipelineResult", "PipelineState", "PTransform",
    "ReadFromParquet", "ReadFromParquetBatched", "ReadFromText", "Reshuffle", "RustDoFn",
    "StandardOptions", "TaggedOutput", "Values", "WindowInto", "WithKeys", "WriteToParquet",
    "WriteToParquetBatched", "WriteToText", "coders", "combiners", "io", "metrics", "options",
    "pvalue", "testing", "transforms", "trigger", "userstate", "window",
]
