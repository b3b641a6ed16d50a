"""Call control's Timer C as a deadline heap (RFC 3261 §16.6 step 11)."""

from __future__ import annotations

import logging
from ipaddress import IPv4Address

from rtc64.gateway.proxy.branches import Leg, Pending, Plan
from rtc64.gateway.proxy.calls import CallControl
from rtc64.gateway.proxy.forking import Branch, BranchState, ResponseContext
from rtc64.gateway.proxy.hops import Hop
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request
from rtc64.sip.transaction import TransactionLayer
from rtc64.sip.transaction_base import NewRequest
from rtc64.sip.uri import SipUri

FLOW = Flow(Transport.UDP, (IPv4Address("192.0.2.1"), 5060), (IPv4Address("192.0.2.9"), 5060))


def leg(method: bytes = b"INVITE") -> Leg:
    """A branch with real parts (the proxy modules may be compiled: typed attributes)."""
    ctx = ResponseContext(method)
    branch = Branch(0, target="x")
    ctx.branches.append(branch)
    req = parse_datagram(
        b"%s sip:bob@192.0.2.50 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK-1\r\n"
        b"From: <sip:a@x>;tag=1\r\nTo: <sip:bob@192.0.2.50>\r\nCall-ID: c1\r\n"
        b"CSeq: 1 %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n" % (method, method)
    )
    assert isinstance(req, Request)
    hop = Hop(Transport.UDP, IPv4Address("192.0.2.9"), 5060, FLOW)
    events = TransactionLayer().receive_request(req, hop, False, 0.0)
    server = next(ev.txn for ev in events if isinstance(ev, NewRequest))
    pending = Pending(server=server, request=req, ctx=ctx)
    return Leg(pending, branch, Plan(FLOW, None, None, None, None, None))


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


def test_a_restart_moves_the_deadline_without_a_second_heap_entry() -> None:
    """A provisional's restart records the later deadline on the branch; the branch has
    one heap entry, which fires at the latest deadline only, and an answered branch's
    entry goes unseen. A restart to an earlier time (a test clock) still takes effect."""
    cc = calls()
    rung, answered = leg(), leg()
    cc.arm_timer_c(rung, 0.0)
    cc.arm_timer_c(answered, 1.0)
    for t in (10.0, 20.0, 30.0):
        cc.arm_timer_c(rung, t)
        cc.arm_timer_c(answered, t)
    assert len(cc._heap) == 2
    cc.disarm_timer_c(answered.branch)
    assert cc.get_timer() == 210.0
    assert cc.handle_timer(180.0) == [] and cc.handle_timer(209.9) == []
    assert cc.get_timer() == 210.0
    assert cc.handle_timer(210.0) == [rung]
    assert cc.get_timer() is None and cc._heap == []
    early = leg()
    cc.arm_timer_c(early, 100.0)
    cc.arm_timer_c(early, 50.0)
    assert cc.get_timer() == 230.0
    assert cc.handle_timer(230.0) == [early]
    assert cc.handle_timer(1000.0) == []
