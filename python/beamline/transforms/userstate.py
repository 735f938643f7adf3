"""``beamline.userstate`` under Beam's path ``apache_beam.transforms.userstate``."""

from beamline.userstate import *  # noqa: F401,F403
from beamline.userstate import __all__  # noqa: F401
