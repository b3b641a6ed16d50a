"""REGISTER glue: parsed request → registrar core → SQLite store → response."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from rtc64.gateway.location.backends import open_store
from rtc64.gateway.location.register import handle_register, unsupported
from rtc64.gateway.location.registrar import RegistrarPolicy
from rtc64.gateway.location.store import Store
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip import headers as sh
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request, Response

NOW = 1_700_000_000.0
POLICY = RegistrarPolicy(min_expires=60, max_expires=7200, default_expires=3600)
AOR = "sip:bob@example.net"
LISTENER = "udp:[2001:db8::1]:5060"
FLOW = Flow(Transport.UDP, (IPv6Address("2001:db8::1"), 5060), (IPv6Address("2001:db8::20"), 5070))


def register(*lines: bytes, cseq: int = 1, call_id: bytes = b"reg@x") -> Request:
    data = (
        b"REGISTER sip:example.net SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP [2001:db8::20]:5070;branch=z9hG4bK%d;rport\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:bob@example.net>;tag=r\r\nTo: <sip:bob@Example.NET>\r\n"
        b"Call-ID: %s\r\nCSeq: %d REGISTER\r\n"
        % (cseq, call_id, cseq)
        + b"".join(line + b"\r\n" for line in lines)
        + b"Content-Length: 0\r\n\r\n"
    )
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def with_store(tmp_path: Path, body: Callable[[Store], Awaitable[None]]) -> None:
    async def main() -> None:
        store = await open_store("sqlite", tmp_path / "data")
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


async def handle(store: Store, req: Request, now: float = NOW, flow: Flow = FLOW) -> Response:
    return await handle_register(req, flow, listener=LISTENER, store=store, policy=POLICY, now=now)


def test_binding_stored_with_the_flow(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        resp = await handle(store, register(b"Contact: <sip:bob@[2001:db8::20]:5070>;expires=600"))
        assert resp.status == 200
        assert resp.get_all(b"contact") == (b"<sip:bob@[2001:db8::20]:5070>;expires=600",)
        assert resp.get(b"date") == b"Tue, 14 Nov 2023 22:13:20 GMT"
        assert resp.to.tag is not None
        (binding,) = await store.lookup(AOR, NOW)
        assert binding.contact == b"sip:bob@[2001:db8::20]:5070"
        assert binding.received_ip == IPv6Address("2001:db8::20")
        assert binding.received_port == 5070
        assert binding.transport == "udp"
        assert binding.listener == LISTENER
        assert binding.expires_at == NOW + 600
        assert binding.call_id == b"reg@x" and binding.cseq == 1

    with_store(tmp_path, body)


def test_second_contact_and_query(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        await handle(store, register(b"Contact: <sip:bob@[2001:db8::20]:5070>", b"Expires: 300"))
        flow4 = Flow(
            Transport.TCP,
            (IPv4Address("192.0.2.1"), 5060),
            (IPv4Address("198.51.100.20"), 40000),
            3,
        )
        resp = await handle(
            store,
            register(b"Contact: <sip:bob@198.51.100.20:5080;transport=tcp>", call_id=b"r2"),
            flow=flow4,
        )
        assert len(resp.get_all(b"contact")) == 2
        assert (await store.lookup(AOR, NOW))[1].transport == "tcp"
        query = await handle(store, register(cseq=2), now=NOW + 100)
        assert query.status == 200
        assert sorted(query.get_all(b"contact")) == [
            b"<sip:bob@198.51.100.20:5080;transport=tcp>;expires=3500",
            b"<sip:bob@[2001:db8::20]:5070>;expires=200",
        ]

    with_store(tmp_path, body)


def test_expires_zero_and_star_remove(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        await handle(store, register(b"Contact: <sip:bob@[2001:db8::20]:5070>"))
        await handle(store, register(b"Contact: <sip:bob@[2001:db8::21]>", call_id=b"r2"))
        resp = await handle(
            store, register(b"Contact: <sip:bob@[2001:db8::20]:5070>;expires=0", cseq=2)
        )
        assert resp.get_all(b"contact") == (b"<sip:bob@[2001:db8::21]>;expires=3600",)
        resp = await handle(store, register(b"Contact: *", b"Expires: 0", cseq=3))
        assert resp.status == 200 and not resp.has(b"contact")
        assert await store.lookup(AOR, NOW) == []

    with_store(tmp_path, body)


def test_interval_too_brief_is_423_with_min_expires(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        resp = await handle(store, register(b"Contact: <sip:bob@[2001:db8::20]>;expires=10"))
        assert resp.status == 423
        assert resp.get(b"min-expires") == b"60"
        assert await store.lookup(AOR, NOW) == []

    with_store(tmp_path, body)


def test_unknown_require_is_420_with_unsupported(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        req = register(b"Require: path, foo, Bar", b"Contact: <sip:bob@[2001:db8::20]>")
        assert unsupported(req) == (b"foo", b"Bar")
        resp = await handle(store, req)
        assert resp.status == 420
        assert resp.get(b"unsupported") == b"foo, Bar"
        assert await store.lookup(AOR, NOW) == []

    with_store(tmp_path, body)


def test_supported_options_accepted() -> None:
    req = register(b"Require: Path, outbound, gruu")
    assert unsupported(req) == ()


PATH = b"<sip:edge.example.net;lr>"


def test_path_stored_and_echoed_when_supported(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        req = register(b"Path: " + PATH, b"Supported: path", b"Contact: <sip:bob@[2001:db8::20]>")
        resp = await handle(store, req)
        assert resp.get_all(b"path") == (PATH,)
        (binding,) = await store.lookup(AOR, NOW)
        assert binding.path == (PATH,)

    with_store(tmp_path, body)


def test_path_stored_but_not_echoed_without_support(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        resp = await handle(store, register(b"Path: " + PATH, b"Contact: <sip:bob@[2001:db8::20]>"))
        assert resp.status == 200
        assert not resp.has(b"path")
        assert sh.paths(resp) == ()
        (binding,) = await store.lookup(AOR, NOW)
        assert binding.path == (PATH,)

    with_store(tmp_path, body)


def test_old_cseq_for_the_same_call_id_is_500(tmp_path: Path) -> None:
    async def body(store: Store) -> None:
        await handle(store, register(b"Contact: <sip:bob@[2001:db8::20]>", cseq=5))
        resp = await handle(store, register(b"Contact: <sip:bob@[2001:db8::20]>;expires=0", cseq=4))
        assert resp.status == 500
        assert len(await store.lookup(AOR, NOW)) == 1

    with_store(tmp_path, body)


def test_outbound_instance_and_reg_id(tmp_path: Path) -> None:
    inst = b'"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'

    async def body(store: Store) -> None:
        contact = b"Contact: <sip:bob@[2001:db8::20]>;+sip.instance=%s;reg-id=1;q=0.5" % inst
        assert (await handle(store, register(contact))).status == 200
        (binding,) = await store.lookup(AOR, NOW)
        assert (binding.instance, binding.reg_id, binding.q) == (inst, 1, 0.5)
        # Same flow, new URI: replaces the binding (RFC 5626 §6).
        moved = contact.replace(b"[2001:db8::20]", b"[2001:db8::30]")
        await handle(store, register(moved, call_id=b"r2"))
        (binding,) = await store.lookup(AOR, NOW)
        assert binding.contact == b"sip:bob@[2001:db8::30]"

    with_store(tmp_path, body)


def test_date_header_is_made_once_per_second() -> None:
    from email.utils import formatdate  # noqa: PLC0415

    from rtc64.gateway.location.register import http_date  # noqa: PLC0415

    for second in (0, 1_700_000_000, 1_700_000_001):
        assert http_date(second) == formatdate(second, usegmt=True).encode()
    assert http_date(1_700_000_001) is http_date(1_700_000_001)
