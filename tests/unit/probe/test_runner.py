"""The runner: target kinds, deadline, local errors, and the per-host limit."""

from __future__ import annotations

import asyncio

from rtc64.io.resolver import Resolver
from rtc64.net.rfc3263 import Answer, Query, Status
from rtc64.probe import runner
from rtc64.probe.context import Probe, ProbeSettings, Sink
from rtc64.probe.verdict import EXIT_LOCAL, Check, exit_code
from rtc64.probe.verdict import Status as V


async def _nodns(q: Query) -> Answer:
    return Answer((), Status.NXDOMAIN)


def probe(settings: ProbeSettings) -> Probe:
    return Probe(settings, Resolver(backend=_nodns, hosts={}), route=lambda a: a)


def test_target_kinds() -> None:
    assert runner.kind_of("sip:example.net") == "sip"
    assert runner.kind_of("SIPS:example.net") == "sip"
    assert runner.kind_of("turns:t.example.net") == "turn"
    assert runner.kind_of("https://meet.example.net") == "web"
    assert runner.kind_of("network") == "network"
    assert runner.normalise_target("example.net") == "sip:example.net"


def test_the_deadline_keeps_finished_checks_and_marks_the_rest() -> None:
    async def slow(target: str, p: Probe, sink: Sink) -> None:
        sink.add(Check("a", V.PASS, "ok", "first"))
        await asyncio.sleep(30)
        sink.add(Check("b", V.PASS, "ok", "never"))

    settings = ProbeSettings(deadline=0.2)
    result = asyncio.run(runner.run(["sip:x"], settings, probe=None, runners={"sip": slow}))
    checks = result.targets[0].checks
    assert [c.id for c in checks] == ["a", "run.deadline"]
    assert checks[1].status is V.SKIPPED


def test_a_bad_target_is_a_local_error_not_a_traceback() -> None:
    async def bad(target: str, p: Probe, sink: Sink) -> None:
        raise ValueError(f"{target!r} is not a SIP URI")

    seen: list[str] = []
    result = asyncio.run(
        runner.run(
            ["sip:@@"],
            ProbeSettings(),
            runners={"sip": bad},
            on_check=lambda t, c: seen.append(c.id),
        )
    )
    assert result.targets[0].error == "'sip:@@' is not a SIP URI"
    assert exit_code(result) == EXIT_LOCAL


def test_at_most_per_host_operations_reach_one_server() -> None:
    settings = ProbeSettings(concurrency=8, per_host=2)
    busy = {"now": 0, "max": 0, "total": 0}

    async def work(p: Probe) -> None:
        async with p.limit("2001:db8::1"):
            busy["now"] += 1
            busy["total"] += 1
            busy["max"] = max(busy["max"], busy["now"])
            await asyncio.sleep(0.01)
            busy["now"] -= 1

    async def main() -> None:
        p = probe(settings)
        await asyncio.gather(*(work(p) for _ in range(10)))

    asyncio.run(main())
    assert busy["total"] == 10
    assert busy["max"] == 2


def test_excluded_family_and_missing_route_are_skipped() -> None:
    async def main() -> tuple[Check | None, Check | None, Check | None]:
        only6 = Probe(
            ProbeSettings(families=frozenset((6,))), Resolver(backend=_nodns), route=lambda a: a
        )
        noroute = Probe(ProbeSettings(), Resolver(backend=_nodns), route=lambda a: None)
        return (
            only6.family_skip(4, "x", None),
            only6.family_skip(6, "x", None),
            noroute.family_skip(6, "x", None),
        )

    excluded, kept, unrouted = asyncio.run(main())
    assert excluded is not None and excluded.reason == "local.family-excluded"
    assert kept is None
    assert unrouted is not None and unrouted.reason == "local.no-ipv6"


def test_a_bug_in_one_target_is_reported_and_the_others_still_run() -> None:
    async def buggy(target: str, p: Probe, sink: Sink) -> None:
        raise KeyError("oops")

    async def fine(target: str, p: Probe, sink: Sink) -> None:
        sink.add(Check("a", V.PASS, "ok", "fine"))

    result = asyncio.run(
        runner.run(["sip:x", "network"], ProbeSettings(), runners={"sip": buggy, "network": fine})
    )
    assert result.targets[0].error.startswith("internal error: KeyError")
    assert [c.id for c in result.targets[1].checks] == ["a"]
