"""The CLI's client of the control API (httpx over the daemon's Unix socket)."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ..errors import ControlError


def local_user() -> str:
    """Who the CLI acts as: the local account name."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


class ControlClient:
    """Talks to a running daemon; every failure is a `ControlError` with one clear line."""

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = socket_path
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url="http://nightshift",
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise ControlError(
                f"the daemon is not running (no answer on {self.socket_path}); "
                "start it with `nightshift run`"
            ) from exc
        data = resp.json()
        if resp.status_code >= 400:
            raise ControlError(data.get("error", f"HTTP {resp.status_code}"))
        return data

    def status(self) -> dict[str, Any]:
        return self._request("GET", "/v1/status")  # type: ignore[no-any-return]

    def trigger(self, name: str, inputs: dict[str, Any], *, force: bool = False) -> int:
        data = self._request(
            "POST",
            f"/v1/automations/{name}/trigger",
            {"inputs": inputs, "by": local_user(), "force": force},
        )
        return int(data["run_id"])

    def steer(self, run_id: int, text: str) -> None:
        self._request("POST", f"/v1/runs/{run_id}/steer", {"text": text, "by": local_user()})

    def decide(
        self, run_id: int, approved: bool, approval_id: str | None, reason: str | None
    ) -> str:
        verb = "approve" if approved else "deny"
        body = {"approval_id": approval_id, "reason": reason, "by": local_user()}
        return str(self._request("POST", f"/v1/runs/{run_id}/{verb}", body)["approval_id"])

    def cancel(self, run_id: int, reason: str | None = None) -> None:
        self._request("POST", f"/v1/runs/{run_id}/cancel", {"reason": reason, "by": local_user()})

    def retry(self, run_id: int) -> int:
        data = self._request("POST", f"/v1/runs/{run_id}/retry", {"by": local_user()})
        return int(data["run_id"])

    def pause(self, run_id: int) -> None:
        self._request("POST", f"/v1/runs/{run_id}/pause", {"by": local_user()})

    def resume(self, run_id: int) -> None:
        self._request("POST", f"/v1/runs/{run_id}/resume", {"by": local_user()})

    def follow(self, run_id: int, after: int = 0) -> Iterator[dict[str, Any]]:
        """Stream a run's events (stored, then live) until it finishes."""
        try:
            with self._http.stream(
                "GET",
                f"/v1/runs/{run_id}/events",
                params={"follow": "1", "after": after},
                timeout=None,
            ) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise ControlError(resp.json().get("error", f"HTTP {resp.status_code}"))
                for line in resp.iter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.TransportError as exc:
            raise ControlError(f"lost the daemon while following run {run_id}: {exc}") from exc
