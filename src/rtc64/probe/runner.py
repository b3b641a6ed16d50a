"""Runs ``rtc64 probe`` targets concurrently within one deadline.

Rules (issue 13): a target is ``network``, ``sip:``/``sips:`` URI, ``turn:``/``turns:``/
``stun:``/``stuns:`` URI, or an ``http(s)://`` URL (a bare domain is taken as SIP). All
targets run at once under ``ProbeSettings.deadline``; a target still running then keeps
the checks it finished and gets a ``run.deadline`` check. A target that cannot be parsed
or a local failure becomes the target's ``error`` (exit code 2), never a traceback.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from rtc64.errors import Rtc64Error
from rtc64.probe.context import OnCheck, Probe, ProbeSettings, Sink
from rtc64.probe.network import probe_network
from rtc64.probe.sip import probe_sip
from rtc64.probe.turn import probe_turn
from rtc64.probe.verdict import Check, Report, Status, TargetReport
from rtc64.probe.web import probe_web

log = logging.getLogger("rtc64.probe")

TargetRunner = Callable[[str, Probe, Sink], Awaitable[None]]


def kind_of(target: str) -> str:
    """sip, turn, web or network (a bare name is a SIP domain)."""
    lower = target.lower()
    if lower == "network":
        return "network"
    scheme = lower.partition(":")[0]
    if scheme in ("sip", "sips"):
        return "sip"
    if scheme in ("turn", "turns", "stun", "stuns"):
        return "turn"
    if scheme in ("http", "https"):
        return "web"
    return "sip"


def normalise_target(target: str) -> str:
    return target if ":" in target or target.lower() == "network" else f"sip:{target}"


def _runners() -> dict[str, TargetRunner]:
    return {"sip": probe_sip, "turn": probe_turn, "web": probe_web, "network": probe_network}


async def run(
    targets: Sequence[str],
    settings: ProbeSettings,
    *,
    on_check: OnCheck | None = None,
    probe: Probe | None = None,
    runners: dict[str, TargetRunner] | None = None,
) -> Report:
    """Probe every target; the report holds what finished within the deadline."""
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    clock = time.monotonic()
    probe = probe or Probe(settings)
    table = runners or _runners()
    texts = [normalise_target(t) for t in targets]
    extra = [t for t in settings.ice_servers if t not in texts]
    texts += extra
    sinks = [Sink(t, on_check=on_check) for t in texts]
    errors: dict[str, str] = {}

    async def one(sink: Sink) -> None:
        try:
            await table[kind_of(sink.target)](sink.target, probe, sink)
        except (ValueError, Rtc64Error, OSError) as exc:
            errors[sink.target] = str(exc) or type(exc).__name__
        except Exception as exc:  # a bug must not hide the other targets' results
            log.exception("probe of %s failed", sink.target)
            errors[sink.target] = f"internal error: {type(exc).__name__}: {exc}"

    tasks = [asyncio.create_task(one(s)) for s in sinks]
    _, pending = await asyncio.wait(tasks, timeout=settings.deadline)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    reports = []
    for sink, task in zip(sinks, tasks, strict=True):
        if task in pending:
            sink.add(
                Check(
                    "run.deadline",
                    Status.SKIPPED,
                    "run.deadline",
                    f"stopped after {settings.deadline:g} s; later checks did not run",
                )
            )
        reports.append(
            TargetReport(
                sink.target, kind_of(sink.target), tuple(sink.checks), errors.get(sink.target, "")
            )
        )
    options = {
        "families": sorted(settings.families),
        "timeout": settings.timeout,
        "deadline": settings.deadline,
        "dns_servers": list(settings.dns_servers),
    }
    return Report(tuple(reports), started, round(time.monotonic() - clock, 3), options)
