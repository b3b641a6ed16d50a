"""The verdict model of ``rtc64 probe``: checks, the per-target matrix, the score, exit codes.

Rules (issue 13 "Verdicts and output", docs/probe-schema.md):

- A ``Check`` has a status (pass / warn / fail / skipped / info), a stable reason code from
  ``reasons.REASONS``, a one-line message, a fix hint, the evidence (plain JSON values),
  and the address family it was run over (4, 6, or None when family does not apply).
- The matrix rates each aspect (web, signalling, media) for three kinds of client:
  ``ipv6-only`` (IPv6 and nothing else), ``dual-stack`` (either family will do; a broken
  IPv6 beside a working IPv4 is a warning: clients wait for happy eyeballs; an absent
  one -- no AAAA, no IPv6 relay -- is not) and ``nat64`` (IPv6-only with NAT64/DNS64: what
  works over IPv4 by name works, marked warn because it leans on the translator;
  ``ipv4_literal`` findings break it).
- A cell is the worst relevant status; skipped and info never decide a cell. A cell with
  no evidence is ``skipped``. The score is the mean of the rated cells (pass 100, warn 50,
  fail 0), IPv6-only cells weighing double.
- Exit codes (Nagios/sipsak style): 0 no failure (warnings allowed), 1 failures found,
  2 local error, 3 a target unreachable over every family.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rtc64.probe.reasons import REASONS

SCHEMA_VERSION = "1.0"
EXIT_OK, EXIT_FAIL, EXIT_LOCAL, EXIT_UNREACHABLE = 0, 1, 2, 3

Evidence = Mapping[str, object]


class Status(enum.StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIPPED = "skipped"
    INFO = "info"

    @property
    def rated(self) -> bool:
        """Whether the status says something about readiness (pass, warn, fail)."""
        return self in (Status.PASS, Status.WARN, Status.FAIL)


_SEVERITY = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2}
_POINTS = {Status.PASS: 100, Status.WARN: 50, Status.FAIL: 0}


class Aspect(enum.StrEnum):
    WEB = "web"
    SIGNALLING = "signalling"
    MEDIA = "media"


class Scenario(enum.StrEnum):
    IPV6_ONLY = "ipv6-only"
    DUAL_STACK = "dual-stack"
    NAT64 = "nat64"


def worst(statuses: Iterable[Status]) -> Status:
    """The most severe rated status; ``skipped`` when none is rated."""
    rated = [s for s in statuses if s.rated]
    return max(rated, key=_SEVERITY.__getitem__) if rated else Status.SKIPPED


def best(statuses: Iterable[Status]) -> Status:
    rated = [s for s in statuses if s.rated]
    return min(rated, key=_SEVERITY.__getitem__) if rated else Status.SKIPPED


@dataclass(frozen=True, slots=True)
class Check:
    """One finding. ``group`` joins the per-family variants of the same test (the matrix
    compares them); it defaults to ``id``."""

    id: str
    status: Status
    reason: str
    message: str
    family: int | None = None
    aspect: Aspect | None = None
    hint: str = ""
    evidence: Evidence = field(default_factory=dict)
    group: str = ""
    ipv4_literal: bool = False
    """The finding is about an IPv4 literal: NAT64 cannot help (only a CLAT would)."""
    duration: float | None = None
    reach: bool = False
    """A reachability test: did the target answer at all over ``family``."""

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown probe reason code {self.reason!r}")
        if self.family not in (None, 4, 6):
            raise ValueError(f"family must be 4, 6 or None, not {self.family!r}")

    @property
    def key(self) -> str:
        return self.group or self.id

    @property
    def fix(self) -> str:
        """The hint, or the reason's default hint."""
        return self.hint or REASONS[self.reason]


@dataclass(frozen=True, slots=True)
class TargetReport:
    """The checks of one target (``kind``: sip, turn, web or network)."""

    target: str
    kind: str
    checks: tuple[Check, ...]
    error: str = ""
    """A local error that stopped the target (bad URI, no resolver...)."""

    @property
    def unreachable(self) -> bool:
        """Reachability was tested and failed over every family tried."""
        reach = [c for c in self.checks if c.reach and c.status.rated]
        if not reach:
            return any(c.reason in NO_NAME_REASONS for c in self.checks)
        return all(c.status is Status.FAIL for c in reach)

    def matrix(self) -> dict[Aspect, dict[Scenario, Status]]:
        return {aspect: cells(self.checks, aspect) for aspect in Aspect}

    def score(self) -> int | None:
        return score(self.matrix())

    def worst(self) -> Status:
        return worst(c.status for c in self.checks)


NO_NAME_REASONS = frozenset(("dns.nxdomain", "dns.no-address"))
# IPv6 failures that are an absence (no AAAA, no IPv6 relay), not a broken path: a
# dual-stack client never tries them (no fallback delay), DNS64/NAT64 stands in for them.
ABSENT_REASONS = frozenset(
    ("dns.no-aaaa", "web.redirect-no-aaaa", "web.host-no-aaaa", "turn.relay-no-ipv6")
)


def cells(checks: Sequence[Check], aspect: Aspect) -> dict[Scenario, Status]:
    """The three matrix cells of one aspect (see the module rules)."""
    mine = [c for c in checks if c.aspect is aspect and c.status.rated]
    groups: dict[str, list[Check]] = {}
    for check in mine:
        groups.setdefault(check.key, []).append(check)
    v6only, dual, nat64 = [], [], []
    for members in groups.values():
        by_family: dict[int | None, Status] = {}
        for c in members:
            by_family[c.family] = worst((by_family.get(c.family, Status.SKIPPED), c.status))
        none = by_family.get(None, Status.SKIPPED)
        six = worst((by_family.get(6, Status.SKIPPED), none))
        four = worst((by_family.get(4, Status.SKIPPED), none))
        literal = any(c.ipv4_literal for c in members if c.status is not Status.PASS)
        failed6 = [c for c in members if c.family == 6 and c.status is Status.FAIL]
        absent = bool(failed6) and all(c.reason in ABSENT_REASONS for c in failed6)
        if six.rated:
            v6only.append(six)
        elif four.rated:
            v6only.append(Status.FAIL)  # tested over IPv4 only: nothing for IPv6 clients
        dual.append(_dual(six, four, absent))
        nat64.append(_nat64(six, four, literal, absent))
    return {
        Scenario.IPV6_ONLY: worst(v6only),
        Scenario.DUAL_STACK: worst(dual),
        Scenario.NAT64: worst(nat64),
    }


def _dual(six: Status, four: Status, absent: bool) -> Status:
    if absent and six is Status.FAIL:
        return four  # no AAAA: a dual-stack client goes straight to IPv4, no delay
    if not (six.rated and four.rated):
        return six if six.rated else four
    if six is Status.FAIL and four is not Status.FAIL:
        return Status.WARN  # works, after the client gives up on IPv6
    return best((six, four))  # the client uses whichever family works


def _nat64(six: Status, four: Status, literal: bool, absent: bool) -> Status:
    if literal and six is not Status.PASS:
        return Status.FAIL
    if absent and six is Status.FAIL:
        return Status.FAIL if four is Status.FAIL else Status.WARN  # DNS64 synthesises it
    if six is Status.PASS or not four.rated:
        return six
    if four is Status.FAIL:
        return worst((six, four))
    return Status.WARN  # only through the translator


def score(matrix: Mapping[Aspect, Mapping[Scenario, Status]]) -> int | None:
    total = weight = 0
    for row in matrix.values():
        for scenario, status in row.items():
            if status.rated:
                w = 2 if scenario is Scenario.IPV6_ONLY else 1
                total += _POINTS[status] * w
                weight += w
    return round(total / weight) if weight else None


@dataclass(frozen=True, slots=True)
class Report:
    """One run: every target's report, with when and how long."""

    targets: tuple[TargetReport, ...]
    started: str
    duration: float
    options: Evidence = field(default_factory=dict)


def exit_code(report: Report) -> int:
    """0 no failure, 1 failures, 2 a local error, 3 a target unreachable."""
    if any(t.error for t in report.targets):
        return EXIT_LOCAL
    if any(t.unreachable for t in report.targets if t.kind != "network"):
        return EXIT_UNREACHABLE
    if any(t.worst() is Status.FAIL for t in report.targets):
        return EXIT_FAIL
    return EXIT_OK


@dataclass(frozen=True, slots=True)
class Template:
    """The fixed parts of one check (id, family, aspect, group, evidence); calling it with
    a status, reason and message gives the ``Check``."""

    id: str
    aspect: Aspect | None = None
    family: int | None = None
    group: str = ""
    evidence: Evidence = field(default_factory=dict)
    reach: bool = False

    def __call__(
        self, status: Status, reason: str, message: str, *, ipv4_literal: bool = False
    ) -> Check:
        return Check(
            self.id,
            status,
            reason,
            message,
            family=self.family,
            aspect=self.aspect,
            evidence=self.evidence,
            group=self.group,
            reach=self.reach,
            ipv4_literal=ipv4_literal,
        )
