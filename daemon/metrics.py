"""Prometheus metrics of one daemon (its own registry, so several can live in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The counters `/metrics` exposes."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "nightshift_events",
            "Events by source and outcome (received, accepted, duplicate, refused).",
            ["source", "outcome"],
            registry=self.registry,
        )
        self.runs_started = Counter(
            "nightshift_runs_started",
            "Runs that began executing.",
            ["automation"],
            registry=self.registry,
        )
        self.runs_finished = Counter(
            "nightshift_runs_finished",
            "Runs that ended, by final state.",
            ["automation", "status"],
            registry=self.registry,
        )
        self.run_seconds = Histogram(
            "nightshift_run_duration_seconds",
            "Wall time of finished runs.",
            ["automation"],
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200),
            registry=self.registry,
        )
        self.intake_seconds = Histogram(
            "nightshift_intake_duration_seconds",
            "Webhook request to stored event and response.",
            ["source"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
            registry=self.registry,
        )
        self._gauges = Gauge(
            "nightshift_runs",
            "Runs in the executor now, by state.",
            ["state"],
            registry=self.registry,
        )

        self.effects_refused = Counter(
            "nightshift_effects_refused",
            "Slack posts and GitHub writes refused: their run belongs to another replica now.",
            registry=self.registry,
        )
        self._problems = Gauge(
            "nightshift_config_problems",
            "Problems in automation and skill files now (each file keeps its last good version).",
            registry=self.registry,
        )

    def track_executor(
        self,
        active: Callable[[], int],
        queued: Callable[[], int],
        waiting: Callable[[], int],
        paused: Callable[[], int],
    ) -> None:
        """Report the executor's counts on every scrape: running (all executing, waiting and
        paused included), waiting (for an approval), paused (until resumed) and queued."""
        self._gauges.labels("running").set_function(active)
        self._gauges.labels("waiting").set_function(waiting)
        self._gauges.labels("paused").set_function(paused)
        self._gauges.labels("queued").set_function(queued)

    def track_replica(
        self, replica: str, engine: str, taken_over: Callable[[], int], lost: Callable[[], int]
    ) -> None:
        """Say which replica this is (its metrics are its own) and, on every scrape, how many
        runs it took over from silent replicas and how many it lost to others."""
        info = Gauge(
            "nightshift_replica_info",
            "This replica: its id and engine (1 while it runs).",
            ["replica", "engine"],
            registry=self.registry,
        )
        info.labels(replica, engine).set(1)
        Gauge(
            "nightshift_runs_taken_over",
            "Runs this replica took over from replicas that went silent, since it started.",
            registry=self.registry,
        ).set_function(taken_over)
        Gauge(
            "nightshift_runs_lost",
            "Runs another replica took over from this one while it was silent, since it started.",
            registry=self.registry,
        ).set_function(lost)

    def track_problems(self, count: Callable[[], int]) -> None:
        """Report how many file problems the loaded catalog has, on every scrape."""
        self._problems.set_function(count)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
