"""``beamline.trigger`` under Beam's path ``apache_beam.transforms.trigger``."""

from beamline.trigger import *  # noqa: F401,F403
from beamline.trigger import __all__  # noqa: F401
