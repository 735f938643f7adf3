"""``PipelineOptions`` and ``StandardOptions`` under Beam's path
``apache_beam.options.pipeline_options``."""

from beamline.pipeline import PipelineOptions, StandardOptions  # noqa: F401
