"""Response contexts for forked requests and the choice of the best final response.

Rules (RFC 3261 §16.7 steps 5-6, §16.10; RFC 6026 for 2xx handling):

- A response context belongs to one server transaction and holds one branch per target.
- Provisional responses (except 100) and every 2xx to INVITE are forwarded at once; a
  2xx or a 6xx cancels the branches still pending (§16.7 step 10).
- When every branch has a final response and none was forwarded, the best one goes
  upstream: any 6xx first; else the lowest class; within 4xx 401/407 (challenges from
  every 401/407 merged into it, §16.7 step 7), then 415, 420, 484, then the first; a 503
  received from downstream becomes 500 (§16.7 step 6); no response at all gives 408.
  A failure the proxy found itself (DNS, no listener of the target's family, no relay
  ports) goes up as its own status and reason, 503 with Retry-After.
- A branch that timed out counts as 408; one whose transport failed as 503.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from rtc64.sip.edit import Edit
from rtc64.sip.message import Request, Response, make_response
from rtc64.sip.serializer import serialize
from rtc64.sip.transaction_client import ClientTransaction

PREFERRED_4XX = (401, 407, 415, 420, 484)


class BranchState(enum.Enum):
    """Where a branch stands, from the proxy's point of view."""

    TRYING = "trying"  # sent, nothing heard
    PROCEEDING = "proceeding"  # a provisional response came
    COMPLETED = "completed"  # a final response (or timeout/transport error) came


@dataclass(slots=True, init=False)
class Branch:
    """One forwarded copy of a request (client transaction)."""

    index: int
    target: str
    txn: ClientTransaction | None = None
    state: BranchState = BranchState.TRYING
    final: Response | None = None
    final_status: int = 0
    cancel_wanted: bool = False
    cancelled: bool = False
    reason: bytes = b""
    timer_c: float = 0.0  # INVITE branches: cancel when this passes (§16.6 step 11)
    timer_key: int = 0  # call control's handle on that deadline (0: none armed)

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(  # noqa: PLR0917 (the fields, positionally, as before)
        self,
        index: int,
        target: str,
        txn: ClientTransaction | None = None,
        state: BranchState = BranchState.TRYING,
        final: Response | None = None,
        final_status: int = 0,
        cancel_wanted: bool = False,
        cancelled: bool = False,
        reason: bytes = b"",
        timer_c: float = 0.0,
        timer_key: int = 0,
    ) -> None:
        self.index = index
        self.target = target
        self.txn = txn
        self.state = state
        self.final = final
        self.final_status = final_status
        self.cancel_wanted = cancel_wanted
        self.cancelled = cancelled
        self.reason = reason
        self.timer_c = timer_c
        self.timer_key = timer_key


@dataclass(slots=True, init=False)
class ResponseContext:
    """The branches of one proxied request and what was already sent upstream."""

    method: bytes
    branches: list[Branch] = field(default_factory=list)
    final_forwarded: bool = False
    cancelled: bool = False

    # Written out (init=False): mypyc compiles it; a generated __init__ stays Python.
    def __init__(
        self,
        method: bytes,
        branches: list[Branch] | None = None,
        final_forwarded: bool = False,
        cancelled: bool = False,
    ) -> None:
        self.method = method
        self.branches = [] if branches is None else branches
        self.final_forwarded = final_forwarded
        self.cancelled = cancelled

    def pending(self) -> list[Branch]:
        return [b for b in self.branches if b.state is not BranchState.COMPLETED]

    def all_completed(self) -> bool:
        return all(b.state is BranchState.COMPLETED for b in self.branches)


def _rank(status: int) -> tuple[int, int]:
    """Sort key: lower is better among non-6xx finals (§16.7 step 6)."""
    klass = status // 100
    if klass == 4 and status in PREFERRED_4XX:
        return (klass, PREFERRED_4XX.index(status))
    return (klass, len(PREFERRED_4XX))


def choose_best(finals: Sequence[tuple[int, Response | None]]) -> tuple[int, Response | None]:
    """The final to forward: ``(status, response)``; response None means synthesise it."""
    if not finals:
        return (408, None)
    for status, resp in finals:
        if status >= 600:
            return (status, resp)
    return min(finals, key=lambda item: _rank(item[0]))


def challenges(finals: Sequence[tuple[int, Response | None]]) -> list[tuple[bytes, bytes]]:
    """Every WWW-/Proxy-Authenticate line of the 401/407 finals, to merge into one."""
    lines: list[tuple[bytes, bytes]] = []
    for status, resp in finals:
        if resp is None or status not in (401, 407):
            continue
        for name in (b"www-authenticate", b"proxy-authenticate"):
            wire = b"WWW-Authenticate" if name == b"www-authenticate" else b"Proxy-Authenticate"
            lines.extend((wire, value) for value in resp.get_all(name))
    return lines


def best_response(ctx: ResponseContext, request: Request) -> tuple[int, bytes]:
    """The final response to send upstream once every branch has completed (§16.7 step 6)."""
    finals = [(b.final_status, b.final) for b in ctx.branches]
    status, resp = choose_best(finals)
    if resp is None:
        branch = next((b for b in ctx.branches if b.final_status == status), None)
        reason = branch.reason if branch is not None and branch.reason else None
        # Our own diagnosis (DNS failure, no listener of the family, no relay ports) keeps
        # its status and reason; a 503 we make says when to retry.
        extra = [(b"Retry-After", b"5")] if status == 503 else []
        return status, serialize(make_response(request, status, reason, headers=extra))
    edit = Edit(resp).remove_top_via()
    if status in (401, 407):
        own = {(n.lower(), v) for n, v in challenges([(status, resp)])}
        for name, value in challenges(finals):
            if (name.lower(), value) not in own:
                own.add((name.lower(), value))  # each challenge once, even if repeated
                edit.add_header(name, value)
    data = edit.to_bytes()
    if status == 503:
        # §16.7 step 6: a 503 from downstream must not make the upstream client retry
        # elsewhere believing this proxy is overloaded; it goes up as 500.
        line_end = data.index(b"\r\n")
        data = b"SIP/2.0 500 Server Internal Error" + data[line_end:]
        status = 500
    return status, data
