"""The daemon's HTTP servers, served by uvicorn inside the daemon: the webhook server on TCP
(`webhooks`: webhooks in, health and metrics out) and the control API on a Unix socket
(`control_api`, which the CLI's `control.ControlClient` talks to); `serving` runs either."""

from .control_api import Controlled
from .control_api import serve as serve_control
from .serving import free_port, serve, serve_in_background, stop
from .webhooks import Served, build_web_app

__all__ = [
    "Controlled",
    "Served",
    "build_web_app",
    "free_port",
    "serve",
    "serve_control",
    "serve_in_background",
    "stop",
]
