"""nightshift: a self-hosted automation daemon that runs skills when triggers fire.

The public surface for users and skill authors; everything else is internal. The names are
loaded on first use, so `import daemon.skillkit` in a script skill does not load the daemon.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_FACES = {
    "DaemonConfig": ".config",
    "load_config": ".config",
    "RunEvent": ".runs",
    "RunStatus": ".runs",
    "Automation": ".spec",
    "Skill": ".spec",
    **dict.fromkeys(
        (
            "AutomationNotFound",
            "BackendError",
            "ConfigError",
            "ControlError",
            "NightshiftError",
            "Problem",
            "RunNotFound",
            "RunStateError",
            "SecretError",
            "StoreError",
            "TemplateError",
            "ValidationError",
        ),
        ".errors",
    ),
}

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


def __getattr__(name: str) -> Any:
    module = _FACES.get(name)
    if module is None:
        raise AttributeError(f"module 'daemon' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value
