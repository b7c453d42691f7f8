"""Prometheus's HTTP API (`/api/v1/query_range`), as the alert skills read it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field

from .errors import NightshiftError

BARS = "▁▂▃▄▅▆▇█"


class PrometheusError(NightshiftError):
    """The query could not be run (server down, bad query): the message says which."""


class Series(BaseModel):
    """One time series of a range query: its labels and (unix time, value) samples."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    metric: dict[str, str] = Field(default_factory=dict)
    values: list[tuple[float, str]] = Field(default_factory=list)

    def numbers(self) -> list[float]:
        out = []
        for _, value in self.values:
            try:
                out.append(float(value))
            except ValueError:
                continue
        return out

    def describe(self) -> str:
        """`{instance="a"} min 0.1 max 2.3 last 2.1 ▁▁▂▅▇█`: one line per series."""
        nums = self.numbers()
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(self.metric.items()) if k != "__name__")
        if not nums:
            return f"{{{labels}}} no samples"
        low, high = min(nums), max(nums)
        span = (high - low) or 1.0
        step = max(len(nums) // 30, 1)
        spark = "".join(BARS[int((n - low) / span * (len(BARS) - 1))] for n in nums[::step])
        return f"{{{labels}}} min {low:.4g} max {high:.4g} last {nums[-1]:.4g} {spark}"


class _Reply(BaseModel):
    status: Literal["success", "error"]
    data: dict[str, Any] = Field(default_factory=dict)
    error: str | None = None
    errorType: str | None = None  # Prometheus's own field name


def query_range(
    base_url: str,
    query: str,
    start: datetime,
    end: datetime,
    step: float,
    *,
    timeout: float = 30.0,
    headers: dict[str, str] | None = None,
) -> list[Series]:
    """Run a PromQL range query; the matrix it returns."""
    params = {
        "query": query,
        "start": f"{start.timestamp():.3f}",
        "end": f"{end.timestamp():.3f}",
        "step": f"{step:g}",
    }
    url = base_url.rstrip("/") + "/api/v1/query_range"
    try:
        resp = httpx.get(url, params=params, timeout=timeout, headers=headers)
    except httpx.HTTPError as exc:
        raise PrometheusError(f"Prometheus at {base_url}: {type(exc).__name__}") from None
    try:
        reply = _Reply.model_validate(resp.json())
    except ValueError:
        raise PrometheusError(f"Prometheus at {base_url}: HTTP {resp.status_code}") from None
    if reply.status != "success":
        raise PrometheusError(f"Prometheus refused {query!r}: {reply.errorType}: {reply.error}")
    return [Series.model_validate(s) for s in reply.data.get("result", [])]
