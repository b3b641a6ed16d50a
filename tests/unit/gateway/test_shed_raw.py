"""Shedding new work before parsing under overload (``Proxy.shed_raw``, RFC 3261 §21.5.4)."""

from __future__ import annotations

from pathlib import Path

from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Response
from tests.unit.gateway.test_proxy import (
    CALLEE,
    CALLER,
    STRANGER,
    Harness,
    Sent,
    answer,
    invite,
    methods,
    request,
    run,
    statuses,
    udp_flow,
)


async def arrive(h: Harness, data: bytes, source: tuple[str, int]) -> list[Sent]:
    """As a UDP listener delivers a request: the raw look first, then the parsed path."""
    before = len(h.sender.sent)
    flow = udp_flow(source)
    if not h.proxy.shed_raw(data, flow):
        h.proxy.on_message(parse_datagram(data), flow)
    await h.drain()
    return h.sender.sent[before:]


def overload(h: Harness, fraction: float) -> None:
    h.proxy.admission.target = 0.1
    h.proxy.admission.observe(h.clock.now, 0.5)
    h.proxy.admission.stats.fraction = fraction
    assert h.proxy.admission.overloaded


def test_nothing_is_decided_raw_without_overload(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        assert not h.proxy.shed_raw(invite(), udp_flow(CALLER))
        out = await arrive(h, invite(), CALLER)
        assert statuses(out, CALLER) == [100] and methods(out, CALLEE) == [b"INVITE"]
        assert h.proxy.stats.requests_in == 1 and h.proxy.admission.stats.admitted == 1

    run(tmp_path, body)


def test_new_work_refused_raw_gets_a_503_its_client_can_match(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        overload(h, 0.02)  # MIN_FRACTION: the first request is shed
        data = invite(branch=b"z9hG4bKraw1", call_id=b"raw1@test")
        out = await arrive(h, data, CALLER)
        assert statuses(out, CALLER) == [503] and not methods(out, CALLEE)
        resp = out[0].msg
        assert isinstance(resp, Response)
        assert resp.get(b"retry-after") == b"5"
        assert resp.vias[0].branch == b"z9hG4bKraw1" and resp.call_id == b"raw1@test"
        assert resp.to.tag is not None
        assert h.proxy.stats.overloaded == 1 and h.proxy.stats.requests_in == 1
        assert h.proxy.layer.server_count == 0, "no transaction for refused work"

    run(tmp_path, body)


def test_admission_is_decided_once_per_request(tmp_path: Path) -> None:
    """At half admission, of four new INVITEs two go through and two get 503: the raw
    look's decision is not taken again on the parsed request."""

    async def body(h: Harness) -> None:
        overload(h, 0.5)
        codes = []
        for n in range(4):
            data = invite(branch=b"z9hG4bKh%d" % n, call_id=b"h%d@test" % n)
            out = await arrive(h, data, CALLER)
            codes.append(statuses(out, CALLER)[0])
        assert sorted(codes) == [100, 100, 503, 503]
        assert h.proxy.admission.stats.admitted == 2 and h.proxy.admission.stats.shed == 2

    run(tmp_path, body)


def test_a_retransmission_of_work_in_progress_is_absorbed_not_refused(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        data = invite(branch=b"z9hG4bKlive", call_id=b"live@test")
        out = await arrive(h, data, CALLER)
        fwd = next(s for s in out if s.to(CALLEE))
        overload(h, 0.02)
        assert h.proxy.layer.serves_branch(b"z9hG4bKlive")
        out = await arrive(h, data, CALLER)  # the INVITE again: 100 again, no 503
        assert statuses(out, CALLER) == [100]
        # calls in progress finish: the 200 and the ACK and BYE pass
        out = await arrive(h, answer(fwd.data, 200), CALLEE)
        assert statuses(out, CALLER) == [200]
        assert h.proxy.stats.overloaded == 0

    run(tmp_path, body)


def test_in_dialog_requests_are_never_refused_raw(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        overload(h, 0.02)
        bye = request(b"BYE", b"sip:bob@192.0.2.50", CALLER, branch=b"z9hG4bKb", to_tag=b"x")
        assert not h.proxy.shed_raw(bye, udp_flow(CALLER))
        ack = request(b"ACK", b"sip:bob@192.0.2.50", CALLER, branch=b"z9hG4bKa")
        assert not h.proxy.shed_raw(ack, udp_flow(CALLER))

    run(tmp_path, body)


def test_an_untrusted_flood_is_still_rate_limited_raw(tmp_path: Path) -> None:
    """The request rate counts a source's new requests whether the raw look or the parsed
    path sees them; over it they are dropped (no 503 to reflect), as before."""

    async def body(h: Harness) -> None:
        overload(h, 1.0 - 1e-9)
        h.proxy.admission.stats.fraction = 0.999
        outs = []
        for n in range(3):
            data = request(
                b"INVITE", b"sip:bob@192.0.2.50", STRANGER, branch=b"z9hG4bKs%d" % n,
                call_id=b"s%d@test" % n,
            )  # fmt: skip
            outs.append(await arrive(h, data, STRANGER))
        assert h.proxy.stats.rate_limited == 2, "burst 1: the second and third dropped"
        assert outs[1] == [] and outs[2] == []

    run(tmp_path, body, rate=1.0)
