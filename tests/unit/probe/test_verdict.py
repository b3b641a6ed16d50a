"""The verdict model: reason codes, matrix cells per scenario, score and exit codes."""

from __future__ import annotations

import pytest

from rtc64.probe.reasons import REASONS
from rtc64.probe.verdict import (
    EXIT_FAIL,
    EXIT_LOCAL,
    EXIT_OK,
    EXIT_UNREACHABLE,
    Aspect,
    Check,
    Report,
    Scenario,
    Status,
    TargetReport,
    cells,
    exit_code,
    score,
    worst,
)

P, W, F, S, INFO = Status.PASS, Status.WARN, Status.FAIL, Status.SKIPPED, Status.INFO
SIG = Aspect.SIGNALLING


def chk(
    status: Status,
    family: int | None,
    group: str = "g",
    *,
    literal: bool = False,
    reach: bool = False,
    reason: str = "ok",
) -> Check:
    return Check(
        "x",
        status,
        reason,
        "m",
        family=family,
        aspect=SIG,
        group=group,
        ipv4_literal=literal,
        reach=reach,
    )


def test_unknown_reason_codes_and_families_are_refused() -> None:
    with pytest.raises(ValueError, match="reason"):
        Check("x", P, "no.such-reason", "m")
    with pytest.raises(ValueError, match="family"):
        Check("x", P, "ok", "m", family=5)


def test_reason_codes_are_stable_lower_case_area_dot_name() -> None:
    for code in REASONS:
        assert code == "ok" or ("." in code and code == code.lower() and " " not in code)


def test_worst_ignores_skipped_and_info() -> None:
    assert worst([P, S, INFO]) is P
    assert worst([P, W, F]) is F
    assert worst([S, INFO]) is S


@pytest.mark.parametrize(
    ("six", "four", "v6only", "dual", "nat64"),
    [
        (P, P, P, P, P),
        (F, P, F, W, W),  # broken IPv6 beside IPv4: fallback delay; NAT64 by name works
        (P, F, P, P, P),
        (F, F, F, F, F),
        (W, P, W, P, W),
        (None, P, F, P, W),  # tested over IPv4 only (no AAAA at all)
        (P, None, P, P, P),
    ],
)
def test_cells_per_scenario(
    six: Status | None, four: Status | None, v6only: Status, dual: Status, nat64: Status
) -> None:
    checks = [chk(s, f) for s, f in ((six, 6), (four, 4)) if s is not None]
    got = cells(checks, SIG)
    assert got == {Scenario.IPV6_ONLY: v6only, Scenario.DUAL_STACK: dual, Scenario.NAT64: nat64}


def test_an_absent_ipv6_costs_dual_stack_nothing_and_nat64_stands_in() -> None:
    checks = [chk(F, 6, reason="dns.no-aaaa"), chk(P, 4)]
    got = cells(checks, SIG)
    assert got == {Scenario.IPV6_ONLY: F, Scenario.DUAL_STACK: P, Scenario.NAT64: W}
    only6 = cells([chk(F, 6, reason="web.host-no-aaaa")], SIG)
    assert only6 == {Scenario.IPV6_ONLY: F, Scenario.DUAL_STACK: S, Scenario.NAT64: W}


def test_an_ipv4_literal_breaks_nat64_too() -> None:
    checks = [chk(F, 6, literal=True), chk(P, 4)]
    got = cells(checks, SIG)
    assert got[Scenario.NAT64] is F
    assert got[Scenario.DUAL_STACK] is W


def test_a_cell_without_evidence_is_skipped_and_groups_are_independent() -> None:
    checks = [chk(P, 6, "a"), chk(P, 4, "a"), chk(F, 6, "b"), chk(P, 4, "b"), chk(S, 6, "c")]
    assert cells(checks, Aspect.WEB) == dict.fromkeys(Scenario, S)
    got = cells(checks, SIG)
    assert got[Scenario.IPV6_ONLY] is F
    assert got[Scenario.DUAL_STACK] is W


def test_score_weights_ipv6_only_double() -> None:
    matrix = {
        Aspect.WEB: {Scenario.IPV6_ONLY: F, Scenario.DUAL_STACK: P, Scenario.NAT64: P},
        Aspect.SIGNALLING: dict.fromkeys(Scenario, S),
        Aspect.MEDIA: dict.fromkeys(Scenario, S),
    }
    assert score(matrix) == 50  # (0*2 + 100 + 100) / 4
    assert score({a: dict.fromkeys(Scenario, S) for a in Aspect}) is None


def _report(*targets: TargetReport) -> Report:
    return Report(targets, "2026-01-01T00:00:00+00:00", 0.1)


def test_exit_codes() -> None:
    ok = TargetReport("sip:a", "sip", (chk(P, 6, reach=True), chk(W, 4, reach=True)))
    failing = TargetReport("sip:b", "sip", (chk(P, 6, reach=True), chk(F, 4, reach=True)))
    dead = TargetReport("sip:c", "sip", (chk(F, 6, reach=True), chk(F, 4, reach=True)))
    missing = TargetReport("sip:d", "sip", (chk(F, 6, reason="dns.nxdomain"),))
    broken = TargetReport("sip:e", "sip", (), error="bad URI")
    assert exit_code(_report(ok)) == EXIT_OK
    assert exit_code(_report(ok, failing)) == EXIT_FAIL
    assert exit_code(_report(failing, dead)) == EXIT_UNREACHABLE
    assert exit_code(_report(missing)) == EXIT_UNREACHABLE
    assert exit_code(_report(ok, broken, dead)) == EXIT_LOCAL
    assert not failing.unreachable
    assert dead.unreachable
