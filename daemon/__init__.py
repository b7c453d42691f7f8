"""nightshift: a self-hosted automation daemon that runs skills when triggers fire.

The public surface for users and skill authors; everything else is internal.
"""

from .config import DaemonConfig, load_config
from .errors import (
    AutomationNotFound,
    BackendError,
    ConfigError,
    ControlError,
    NightshiftError,
    Problem,
    RunNotFound,
    RunStateError,
    SecretError,
    StoreError,
    TemplateError,
    ValidationError,
)
from .runs import RunEvent, RunStatus
from .spec import Automation, Skill

__version__ = "0.1.0"

__all__ = [
    "Automation",
    "AutomationNotFound",
    "BackendError",
    "ConfigError",
    "ControlError",
    "DaemonConfig",
    "NightshiftError",
    "Problem",
    "RunEvent",
    "RunNotFound",
    "RunStateError",
    "RunStatus",
    "SecretError",
    "Skill",
    "StoreError",
    "TemplateError",
    "ValidationError",
    "__version__",
    "load_config",
]
