"""The control API's client: how the CLI talks to the running daemon (the server is
`http.control_api`)."""

from .client import ControlClient, local_user

__all__ = ["ControlClient", "local_user"]
