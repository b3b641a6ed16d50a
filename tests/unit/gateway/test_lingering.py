"""What a finished call leaves in memory while its transactions linger for retransmissions.

At 2x capacity the proxy holds every call of the last 32 s (Timers J, L, M); the objects
each keeps decide the heap (and, with automatic full collections, the GC pauses)."""

from __future__ import annotations

import gc
from pathlib import Path

from tests.unit.gateway.test_proxy import (
    CALLEE,
    CALLER,
    Harness,
    answer,
    invite,
    one,
    request,
    run,
)

CALLS = 200


async def one_call(h: Harness, i: int) -> None:
    call_id = b"call%d@test" % i
    out = await h.feed(invite(branch=b"z9hG4bKc%d" % i, call_id=call_id), CALLER)
    fwd = one(out, CALLEE)
    await h.feed(answer(fwd.data, 200), CALLEE)
    route = b"Route: " + b", ".join(reversed(fwd.request.values(b"record-route")))
    common = {"call_id": call_id, "to_tag": b"callee", "to": b"sip:bob@192.0.2.50"}
    ack = request(
        b"ACK", b"sip:bob@192.0.2.50:5060", CALLER, branch=b"z9hG4bKa%d" % i,
        headers=(route,), **common,
    )  # fmt: skip
    await h.feed(ack, CALLER)
    bye = request(
        b"BYE", b"sip:bob@192.0.2.50:5060", CALLER, branch=b"z9hG4bKb%d" % i,
        cseq=2, headers=(route,), **common,
    )  # fmt: skip
    out = await h.feed(bye, CALLER)
    await h.feed(answer(one(out, CALLEE).data, 200), CALLEE)
    h.sender.sent.clear()


def test_a_finished_call_leaves_few_objects_behind(tmp_path: Path) -> None:
    per_call: list[float] = []

    async def body(h: Harness) -> None:
        await one_call(h, 0)
        await h.advance(6.0, step=1.0)  # Timer K (5 s) ended: only J/L/M transactions left
        h.sender.sent.clear()
        gc.collect()
        before = len(gc.get_objects())
        for i in range(1, CALLS + 1):
            await one_call(h, i)
        await h.advance(6.0, step=1.0)
        h.sender.sent.clear()
        gc.collect()
        per_call.append((len(gc.get_objects()) - before) / CALLS)
        await h.advance(40.0, step=1.0)  # every timer ended: nothing is left
        h.sender.sent.clear()
        gc.collect()
        per_call.append((len(gc.get_objects()) - before) / CALLS)
        assert len(h.layer) == 0

    run(tmp_path, body)
    lingering, after = per_call
    # 164 GC-tracked objects per call before (every parsed request and response kept
    # for 32 s); now the INVITE's context for 2xx retransmissions and slim transactions.
    assert lingering < 130, f"{lingering:.0f} tracked objects per lingering call"
    assert after < 3, f"{after:.1f} objects per call left after every timer ended"
