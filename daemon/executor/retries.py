"""Whether a run that ended is run again, and when: failures and interruptions each have a
budget of their own over the run's chain of attempts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from ..runs import RunStatus
from ..spec import Policies
from ..store import RunRow

_FAILED = (RunStatus.FAILED, RunStatus.TIMED_OUT)


@dataclass(frozen=True)
class Verdict:
    """Run it again after `delay` (None: not again); `why` says why not, where a person
    would ask."""

    delay: timedelta | None
    why: str | None = None


def retry_verdict(chain: Sequence[RunRow], policies: Policies, status: RunStatus) -> Verdict:
    """What to do after a run ended with `status`; `chain` is its attempts, itself last.

    Interruptions and failures are budgets of their own (`retries.interrupted` and
    `retries.max`): a restart does not eat a retry kept for failures, and a run that keeps
    being interrupted (one that takes its daemon down) is not run for ever.
    """
    if status == RunStatus.INTERRUPTED:
        if policies.on_interrupt != "retry":
            return Verdict(None)
        times = sum(r.status == RunStatus.INTERRUPTED for r in chain)
        if times > policies.retries.interrupted:
            return Verdict(
                None,
                f"not run again: interrupted {times} times "
                f"(retries.interrupted: {policies.retries.interrupted})",
            )
        return Verdict(timedelta(0))
    if status in _FAILED:
        failures = sum(r.status in _FAILED for r in chain)
        if failures > policies.retries.max:
            return Verdict(None)
        return Verdict(policies.retries.delay(failures + 1))
    return Verdict(None)
