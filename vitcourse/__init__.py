"""vitcourse: the tested package behind the course notebooks."""
from .runtime import budget, device, device_for_small_models, environment_report, precision_for, profile, seed_everything

__version__ = "0.1.0"
