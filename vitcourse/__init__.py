"""vitcourse: the tested package behind the course notebooks."""
from .runtime import budget, device, environment_report, evaluating, precision_for, profile, seed_everything
from . import rehearsal
from .workspace import on_colab, runs_root, setup

__version__ = "0.1.0"
