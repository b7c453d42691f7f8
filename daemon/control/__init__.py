"""The local control API (server inside the daemon, client in the CLI)."""

from .client import ControlClient, local_user

__all__ = ["ControlClient", "local_user"]
