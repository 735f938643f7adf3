"""``beamline.window`` under Beam's path ``apache_beam.transforms.window``."""

from beamline.window import *  # noqa: F401,F403
from beamline.window import __all__  # noqa: F401
