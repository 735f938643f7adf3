"""Pipeline options under Beam's path ``apache_beam.options``."""

from beamline.options import pipeline_options  # noqa: F401
from beamline.options.pipeline_options import PipelineOptions, StandardOptions  # noqa: F401
