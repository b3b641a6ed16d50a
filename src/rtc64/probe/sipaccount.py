"""``--user``/``--password`` and ``--call``: REGISTER and a test call over each family.

Rules (decisions and requests in ``sipcall``): per family, the first transport whose
OPTIONS got an answer (UDP, else TCP, else TLS) carries REGISTER (60 s, removed at the
end with ``Expires: 0``) and, with ``--call``, an INVITE whose SDP offer holds only this
family's address; a 2xx is ACKed and hung up with BYE, a non-2xx ACKed in its transaction
(RFC 3261 §17.1.1.3). One digest retry per request. Nothing else is sent.
"""

from __future__ import annotations

import contextlib
import time

from rtc64.io.tls import client_context
from rtc64.probe import sipcall, sipcheck, wire
from rtc64.probe.context import Probe, Sink
from rtc64.probe.sipcall import Dialog
from rtc64.probe.sipcheck import Attempt

ORDER = ("udp", "tcp", "tls")


def carrier(attempts: list[Attempt], family: int) -> Attempt | None:
    """The attempt whose transport and address will carry REGISTER for ``family``."""
    good = [a for a in attempts if a.ok and a.family == family and a.transport in ORDER]
    return min(good, key=lambda a: ORDER.index(a.transport), default=None)


async def run(attempts: list[Attempt], domain: str, probe: Probe, sink: Sink) -> None:
    settings = probe.settings
    if not settings.user or settings.password is None:
        return
    for family in (6, 4):
        via = carrier(attempts, family)
        if via is None:
            continue
        async with probe.limit(via.address):
            await _account(via, domain, probe, sink)


async def _account(via: Attempt, domain: str, probe: Probe, sink: Sink) -> None:
    settings = probe.settings
    assert settings.user is not None and settings.password is not None
    session = wire.MessageSession(settings.timeout, sipcheck.frame_length)
    start = time.monotonic()
    try:
        tls = client_context(verify=False) if via.transport == "tls" else None
        await session.open(
            via.via or via.address,
            via.port,
            via.transport,
            tls=tls,
            server_name=via.host if tls and not sipcheck.is_ip(via.host) else None,
        )
        assert session.local is not None
        dialog = Dialog(domain, settings.user, via.transport, session.local)
        registrar = f"sip:{domain}"
        password = settings.password
        raw = await _authed(
            session, dialog, "REGISTER", registrar, extra=("Expires: 60",), password=password
        )
        status = sipcall.status_of(raw)
        sink.add(sipcall.register_check(via.family, status, _phrase(raw), time.monotonic() - start))
        if settings.call:
            call = Dialog(domain, settings.user, via.transport, session.local)
            await _call(session, call, settings.call, via.family, sink, password=password)
        if 200 <= status < 300:
            await _authed(session, dialog, "REGISTER", registrar, extra=("Expires: 0",),
                          password=password)  # fmt: skip
    except wire.ProbeIOError as exc:
        sink.add(sipcall.register_check(via.family, 0, "", exc.elapsed, exc.reason))
    finally:
        await session.close()


def _phrase(raw: bytes) -> str:
    first = raw.split(b"\r\n", 1)[0].split(b" ", 2)
    return first[2].decode("utf-8", "replace")[:80] if len(first) == 3 else ""


async def _authed(
    session: wire.MessageSession,
    dialog: Dialog,
    method: str,
    uri: str,
    *,
    to: str | None = None,
    extra: tuple[str, ...] = (),
    body: bytes = b"",
    password: str,
) -> bytes:
    """Send a request; answer one digest challenge; the final response. A non-2xx final
    answer to INVITE is ACKed in its transaction (RFC 3261 §17.1.1.3)."""

    async def send(headers: tuple[str, ...]) -> bytes:
        data, branch = dialog.request(method, uri, to=to, extra=headers, body=body)
        raw = await session.request(data, sipcall.answers(dialog.call_id, dialog.cseq, method))
        if method == "INVITE" and sipcall.status_of(raw) >= 300:
            _ack_failure(session, dialog, uri, to, raw, branch=branch)
        return raw

    raw = await send(extra)
    if sipcall.status_of(raw) not in (401, 407):
        return raw
    auth = sipcall.authorization(raw, user=dialog.user, password=password, method=method, uri=uri)
    return raw if auth is None else await send((*extra, auth))


def _ack_failure(
    session: wire.MessageSession,
    dialog: Dialog,
    uri: str,
    to: str | None,
    raw: bytes,
    *,
    branch: str,
) -> None:
    """ACK for a non-2xx final answer to INVITE: same branch and CSeq (§17.1.1.3)."""
    data, _ = dialog.request("ACK", uri, to=to, to_tag=sipcall.to_tag(raw),
                             cseq=dialog.cseq, branch=branch)  # fmt: skip
    session.send(data)


async def _call(
    session: wire.MessageSession,
    dialog: Dialog,
    target: str,
    family: int,
    sink: Sink,
    *,
    password: str,
) -> None:
    assert session.local is not None
    sdp = sipcall.offer(session.local[0])
    try:
        raw = await _authed(
            session, dialog, "INVITE", target, to=target, body=sdp, password=password
        )
    except wire.ProbeIOError:
        sink.add(sipcall.sdp_check(family, 0, b""))
        return
    status = sipcall.status_of(raw)
    tag = sipcall.to_tag(raw)
    if 200 <= status < 300:
        ack, _ = dialog.request("ACK", target, to=target, to_tag=tag, cseq=dialog.cseq)
        session.send(ack)
        sink.add(sipcall.sdp_check(family, status, sipcall.body_of(raw)))
        bye, _ = dialog.request("BYE", target, to=target, to_tag=tag)
        with contextlib.suppress(wire.ProbeIOError):  # else the far end times it out
            await session.request(bye, sipcall.answers(dialog.call_id, dialog.cseq, "BYE"))
    else:
        sink.add(sipcall.sdp_check(family, status, b""))
