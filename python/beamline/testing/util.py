"""Assertions under Beam's path ``apache_beam.testing.util``."""

from beamline.testing import assert_that, equal_to, is_empty  # noqa: F401
