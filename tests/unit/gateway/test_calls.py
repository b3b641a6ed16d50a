"""Call control's Timer C as a deadline heap (RFC 3261 §16.6 step 11)."""

from __future__ import annotations

import logging

from rtc64.gateway.proxy.branches import Leg, Pending, Plan
from rtc64.gateway.proxy.calls import CallControl
from rtc64.gateway.proxy.forking import Branch, BranchState, ResponseContext
from rtc64.sip.uri import SipUri


def leg(method: bytes = b"INVITE") -> Leg:
    ctx = ResponseContext(method)
    branch = Branch(0, target="x")
    ctx.branches.append(branch)
    pending = Pending(server=None, request=None, ctx=ctx)  # type: ignore[arg-type]
    return Leg(pending, branch, Plan(None, None, None, None, None, None))  # type: ignore[arg-type]


def calls(timer_c: float = 180.0) -> CallControl:
    def never(_uri: SipUri) -> bool:
        return False

    return CallControl(is_ours=never, log=logging.getLogger("test.calls"), timer_c=timer_c)


def test_timer_c_is_a_deadline_rearmed_by_provisionals() -> None:
    cc = calls()
    a = leg()
    assert cc.get_timer() is None
    cc.arm_timer_c(a, 10.0)
    assert cc.get_timer() == 190.0
    cc.arm_timer_c(a, 50.0)  # a provisional restarts it
    assert cc.get_timer() == 230.0
    assert cc.handle_timer(229.0) == []
    assert cc.handle_timer(230.0) == [a]
    assert cc.get_timer() is None


def test_completed_cancelled_or_answered_branches_do_not_fire() -> None:
    cc = calls()
    done, cancelled, answered = leg(), leg(), leg()
    for x in (done, cancelled, answered):
        cc.arm_timer_c(x, 0.0)
    cc.disarm_timer_c(done.branch)
    cancelled.branch.cancelled = True
    answered.pending.ctx.final_forwarded = True
    assert cc.handle_timer(500.0) == []
    late = leg()
    cc.arm_timer_c(late, 0.0)
    late.branch.state = BranchState.COMPLETED
    assert cc.handle_timer(500.0) == []


def test_only_invite_branches_have_timer_c_and_the_heap_stays_small() -> None:
    cc = calls()
    cc.arm_timer_c(leg(b"MESSAGE"), 0.0)
    assert cc.get_timer() is None
    one = leg()
    for i in range(1000):
        cc.arm_timer_c(one, float(i))
    assert len(cc._heap) < 300  # re-armed entries are compacted away
    assert cc.get_timer() == 999.0 + 180.0
