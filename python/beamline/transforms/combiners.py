"""``beamline.combiners`` under Beam's path ``apache_beam.transforms.combiners``."""

from beamline.combiners import *  # noqa: F401,F403
from beamline.combiners import __all__  # noqa: F401
