"""``TestStream`` under Beam's path ``apache_beam.testing.test_stream``."""

from beamline.testing import TestStream  # noqa: F401
