# Probe runs started from the API (issue 13's ``rtc64 probe``, run inside the gateway).
#
# Rules: the web never imports the probe (a leaf); the composition root hands over a
# ``ProbeRunner``. At most one run at a time, at most MAX_TARGETS targets of printable
# ASCII, the last MAX_RUNS runs kept in memory (reports are the probe's JSON document,
# schema 1.0, and its self-contained HTML page). A run that raises is kept as failed with
# its error; stopping the app cancels a running one.
"""The probe runs of the API: start, list, fetch."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

MAX_RUNS = 20
MAX_TARGETS = 8
TARGET = re.compile(r"[!-~]{1,256}")  # printable ASCII, no spaces or control characters
FAMILIES = frozenset({4, 6})


@dataclass(frozen=True, slots=True)
class ProbeResult:
    report: dict[str, Any]
    """The probe's JSON document (docs/probe-schema.md)."""
    html: str
    exit_code: int


class ProbeRunner(Protocol):
    async def __call__(self, targets: Sequence[str], families: frozenset[int]) -> ProbeResult: ...


class ProbeError(ValueError):
    """A start request the API refuses (the message says why)."""


class BusyError(ProbeError):
    """A run is in progress."""


@dataclass(slots=True)
class Run:
    id: str
    targets: tuple[str, ...]
    families: frozenset[int]
    started: float
    finished: float | None = None
    result: ProbeResult | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.result is not None:
            return "done"
        return "failed" if self.error is not None else "running"

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "targets": list(self.targets),
            "families": sorted(self.families),
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "exit_code": None if self.result is None else self.result.exit_code,
            "error": self.error,
        }


def check_request(body: dict[str, Any]) -> tuple[tuple[str, ...], frozenset[int]]:
    """Targets and families of a start request, or ``ProbeError`` naming the field."""
    targets = body.get("targets")
    if (
        not isinstance(targets, list)
        or not 1 <= len(targets) <= MAX_TARGETS
        or not all(isinstance(t, str) and TARGET.fullmatch(t) for t in targets)
    ):
        raise ProbeError(
            f"targets: 1..{MAX_TARGETS} targets (sip:, turn:, https:// or network), "
            "printable ASCII without spaces"
        )
    families = body.get("families", [4, 6])
    if (
        not isinstance(families, list)
        or not families
        or not all(isinstance(f, int) and not isinstance(f, bool) for f in families)
        or not set(families) <= FAMILIES
    ):
        raise ProbeError("families: a non-empty list of 4 and/or 6")
    return tuple(dict.fromkeys(targets)), frozenset(families)


class ProbeRuns:
    """The runs, newest last; one running at a time."""

    def __init__(self, runner: ProbeRunner, wall: Callable[[], float]) -> None:
        self.runner = runner
        self.wall = wall
        self.runs: OrderedDict[str, Run] = OrderedDict()
        self._task: asyncio.Task[None] | None = None

    def start(self, targets: tuple[str, ...], families: frozenset[int]) -> Run:
        if self._task is not None and not self._task.done():
            raise BusyError("a probe run is in progress; wait for it to finish")
        run = Run(secrets.token_hex(8), targets, families, self.wall())
        self.runs[run.id] = run
        while len(self.runs) > MAX_RUNS:
            self.runs.popitem(last=False)
        self._task = asyncio.get_running_loop().create_task(self._run(run))
        return run

    async def _run(self, run: Run) -> None:
        log = logging.getLogger("rtc64.web")
        log.info("probe run %s started: %s", run.id, " ".join(run.targets))
        try:
            run.result = await self.runner(run.targets, run.families)
        except asyncio.CancelledError:
            run.error = "cancelled"
            raise
        except Exception as exc:
            log.exception("probe run %s failed", run.id)
            run.error = f"{type(exc).__name__}: {exc}"
        finally:
            run.finished = self.wall()
        log.info("probe run %s finished: exit %s", run.id, run.result and run.result.exit_code)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
