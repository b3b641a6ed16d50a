"""The stateful proxy in-process: real transaction layer, SQLite store, authenticator and
resolver (IP literals only, no DNS), a recording sender, a fake clock and a spawn that
queues coroutines the test awaits. Messages are fed as parsed datagrams on ``Flow`` values.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from pathlib import Path
from typing import Any

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.identity import Identity, Listener
from rtc64.gateway.location.backends import open_store
from rtc64.gateway.location.store import Store
from rtc64.gateway.media import MediaBridge
from rtc64.gateway.proxy.hops import BRANCH_PREFIX
from rtc64.gateway.proxy.service import Proxy, ProxySettings
from rtc64.gateway.ratelimit import TokenBucket
from rtc64.io.resolver import Resolver
from rtc64.net.address import IPAddress
from rtc64.net.endpoint import Flow, ListenSpec, Transport
from rtc64.net.rfc3263 import Answer, Query, RdType, Status
from rtc64.relay.engine import MediaRelay
from rtc64.relay.options import RelaySettings
from rtc64.sip import digest
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request, Response
from rtc64.sip.transaction import TransactionLayer
from rtc64.sip.uri import SipUri, parse_uri
from tests.unit.relay.helpers import Clock as RelayClock
from tests.unit.relay.helpers import FakeForwarder

V4 = IPv4Address("192.0.2.1")
V6 = IPv6Address("2001:db8::1")
LISTEN4 = Listener(ListenSpec(Transport.UDP, V4, 5060), 5060)
LISTEN6 = Listener(ListenSpec(Transport.UDP, V6, 5060), 5060)
REALM = "example.net"
PASSWORD = "secret"
TRUSTED = (IPv6Network("2001:db8:aaaa::/48"), IPv4Network("198.51.100.0/24"))

CALLER = ("2001:db8:aaaa::10", 5062)  # trusted, IPv6
STRANGER = ("2001:db8:bad::10", 5062)  # untrusted, IPv6
CALLEE = ("192.0.2.50", 5060)  # IPv4 literal target
CORE = ("198.51.100.99", 5060)  # trusted IPv4 core (upstream mode)

RR4 = b"<sip:192.0.2.1:5060;lr;r2=on>"
RR6 = b"<sip:[2001:db8::1]:5060;lr;r2=on>"
TOKEN = re.compile(rb";r64=[0-9a-f]+\.[0-9a-f]{16}(?:;r64f=[^;>]+)?")


def plain(values: tuple[bytes, ...]) -> tuple[bytes, ...]:
    """Record-Route values without our per-call token (checked on its own)."""
    assert all(TOKEN.search(v) for v in values), values
    return tuple(TOKEN.sub(b"", v) for v in values)


# -- harness -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One ``Sender.send`` call."""

    data: bytes
    transport: Transport
    ip: IPAddress
    port: int
    flow: Flow | None
    own_port: bool = False

    @property
    def msg(self) -> Request | Response:
        return parse_datagram(self.data)

    @property
    def request(self) -> Request:
        msg = self.msg
        assert isinstance(msg, Request), self.data
        return msg

    @property
    def response(self) -> Response:
        msg = self.msg
        assert isinstance(msg, Response), self.data
        return msg

    @property
    def status(self) -> int:
        return self.response.status

    def to(self, addr: tuple[str, int]) -> bool:
        return self.ip == ip_address(addr[0]) and self.port == addr[1]


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.closed: set[tuple[Transport, IPAddress, int]] = set()

    def send(
        self,
        data: bytes,
        transport: Transport,
        address: IPAddress,
        port: int,
        *,
        flow: Flow | None = None,
        server_name: str | None = None,
        handle: object = None,
        own_port: bool = False,
    ) -> bool:
        self.sent.append(Sent(data, transport, address, port, flow, own_port))
        return True

    def has_connection(self, transport: Transport, address: IPAddress, port: int) -> bool:
        return (transport, address, port) not in self.closed


class FakeClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(
        self,
        store: Store,
        *,
        upstream: SipUri | None = None,
        max_transactions: int = 100,
        rate: float = 0.0,
        media: MediaBridge | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.clock = FakeClock(1000.0)
        self.wall = FakeClock(1_700_000_000.0)
        self.sender = RecordingSender()
        self.tasks: list[Coroutine[Any, Any, None]] = []
        self.store = store
        self.identity = Identity([LISTEN4, LISTEN6], domains=(REALM,), source_for=lambda _ip: None)
        self.auth = Authenticator(
            realm=REALM,
            users=[("alice", PASSWORD)],
            store=store,
            trusted=TRUSTED,
            nonce_lifetime=300.0,
            max_failures=3,
            block_seconds=60.0,
            log=logging.getLogger("test.auth"),
        )
        self.layer = TransactionLayer()
        self.settings = ProxySettings(upstream=upstream, max_transactions=max_transactions)
        self.limiter = TokenBucket(rate, burst=1)
        self.media = media
        self.resolver = resolver or Resolver()
        self.proxy = self.build()
        self.raw = True  # responses try ``Proxy.on_raw_response`` first, as over UDP

    def build(self) -> Proxy:
        """The proxy on the harness's parts (``rebuild`` after replacing one)."""
        return Proxy(
            self.settings,
            identity=self.identity,
            layer=self.layer,
            sender=self.sender,
            store=self.store,
            auth=self.auth,
            resolver=self.resolver,
            limiter=self.limiter,
            clock=self.clock,
            wall=self.wall,
            spawn=self.tasks.append,
            log=logging.getLogger("test.proxy"),
            media=self.media,
        )

    def rebuild(
        self, *, identity: Identity | None = None, sender: RecordingSender | None = None
    ) -> Proxy:
        """A fresh proxy with another identity or sender (before any traffic)."""
        self.identity = identity or self.identity
        self.sender = sender or self.sender
        self.proxy = self.build()
        return self.proxy

    async def drain(self) -> None:
        while self.tasks:
            await self.tasks.pop(0)

    async def feed(self, data: bytes, source: tuple[str, int]) -> list[Sent]:
        """``data`` arrives over UDP from ``source`` on the listener of its family."""
        before = len(self.sender.sent)
        flow = udp_flow(source)
        # As the UDP listener: a response (or an ACK) may be forwarded from its raw bytes.
        if not self.raw:
            taken = False
        elif data.startswith(b"SIP/2.0 "):
            taken = self.proxy.on_raw_response(data, flow)
        else:
            taken = self.proxy.on_raw_request(data, flow)
        if not taken:
            self.proxy.on_message(parse_datagram(data), flow)
        await self.drain()
        return self.sender.sent[before:]

    async def advance(self, seconds: float, step: float = 0.5) -> list[Sent]:
        """Move the fake clock forward, firing the proxy's timers along the way."""
        before = len(self.sender.sent)
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.now = min(end, self.clock.now + step)
            self.proxy.handle_timer(self.clock.now)
            await self.drain()
        return self.sender.sent[before:]


def udp_flow(source: tuple[str, int]) -> Flow:
    ip = ip_address(source[0])
    local = (V6, 5060) if ip.version == 6 else (V4, 5060)
    return Flow(Transport.UDP, local, (ip, source[1]))


def run(tmp_path: Path, body: Callable[[Harness], Awaitable[None]], **kwargs: Any) -> None:
    async def main() -> None:
        store = await open_store("sqlite", tmp_path / "data")
        try:
            await body(Harness(store, **kwargs))
        finally:
            await store.close()

    asyncio.run(main())


# -- messages ------------------------------------------------------------------------------


def sent_by(addr: tuple[str, int]) -> bytes:
    ip = ip_address(addr[0])
    host = f"[{ip}]" if ip.version == 6 else str(ip)
    return f"{host}:{addr[1]}".encode()


def request(
    method: bytes,
    uri: bytes,
    source: tuple[str, int],
    *,
    branch: bytes = b"z9hG4bKc1",
    call_id: bytes = b"call1@test",
    cseq: int = 1,
    to_tag: bytes | None = None,
    max_forwards: int = 70,
    headers: tuple[bytes, ...] = (),
    to: bytes | None = None,
) -> bytes:
    to_value = b"<%s>" % (to or uri) + (b";tag=" + to_tag if to_tag else b"")
    lines = [
        b"%s %s SIP/2.0" % (method, uri),
        b"Via: SIP/2.0/UDP %s;branch=%s;rport" % (sent_by(source), branch),
        b"Max-Forwards: %d" % max_forwards,
        b"From: <sip:alice@example.net>;tag=f1",
        b"To: " + to_value,
        b"Call-ID: " + call_id,
        b"CSeq: %d %s" % (cseq, method),
        b"Contact: <sip:alice@%s>" % sent_by(source),
        *headers,
        b"Content-Length: 0",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def invite(uri: bytes = b"sip:bob@192.0.2.50", **kwargs: Any) -> bytes:
    return request(b"INVITE", uri, CALLER, **kwargs)


def register(user: bytes, phone: tuple[str, int], *, call_id: bytes, branch: bytes) -> bytes:
    return request(
        b"REGISTER",
        b"sip:example.net",
        phone,
        branch=branch,
        call_id=call_id,
        to=b"sip:%s@example.net" % user,
        headers=(b"Expires: 600",),
    ).replace(b"sip:alice@%s" % sent_by(phone), b"sip:%s@%s" % (user, sent_by(phone)))


def answer(sent: bytes, status: int, *, to_tag: bytes = b"callee", reason: bytes = b"") -> bytes:
    """A UAS's response to a request it received as ``sent``."""
    req = parse_datagram(sent)
    assert isinstance(req, Request)
    lines = [b"SIP/2.0 %d %s" % (status, reason or b"Whatever")]
    for h in req.headers:
        if h.key in (b"via", b"from", b"call-id", b"cseq", b"record-route"):
            lines.append(h.name + b": " + h.value)
        elif h.key == b"to":
            tag = b"" if req.to.tag or status == 100 else b";tag=" + to_tag
            lines.append(h.name + b": " + h.value + tag)
    lines += [b"Contact: <sip:bob@192.0.2.50:5060>", b"Content-Length: 0"]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def only(sent: list[Sent], addr: tuple[str, int]) -> list[Sent]:
    return [s for s in sent if s.to(addr)]


def one(sent: list[Sent], addr: tuple[str, int]) -> Sent:
    found = only(sent, addr)
    assert len(found) == 1, [s.data for s in sent]
    return found[0]


def statuses(sent: list[Sent], addr: tuple[str, int]) -> list[int]:
    return [s.status for s in only(sent, addr) if isinstance(s.msg, Response)]


def methods(sent: list[Sent], addr: tuple[str, int]) -> list[bytes]:
    return [s.request.method for s in only(sent, addr) if isinstance(s.msg, Request)]


async def call_forwarded(h: Harness) -> Sent:
    """A trusted IPv6 caller's INVITE to the IPv4 literal: the copy sent downstream."""
    out = await h.feed(invite(), CALLER)
    assert statuses(out, CALLER) == [100]
    return one(out, CALLEE)


# -- authentication --------------------------------------------------------------------------


def test_untrusted_invite_gets_407_with_sha256_and_md5(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(request(b"INVITE", b"sip:bob@192.0.2.50", STRANGER), STRANGER)
        assert statuses(out, STRANGER) == [100, 407]
        assert not only(out, CALLEE)
        challenge = only(out, STRANGER)[1].response
        values = challenge.get_all(b"proxy-authenticate")
        algorithms = [digest.parse_challenge(v).algorithm for v in values]
        assert algorithms == [digest.Algorithm.SHA_256, digest.Algorithm.MD5]
        assert all(digest.parse_challenge(v).realm == REALM for v in values)
        assert not challenge.has(b"www-authenticate")
        assert h.proxy.stats.auth_challenges == 1

    run(tmp_path, body)


def _authorized_invite(challenge: bytes, cseq: int, branch: bytes) -> bytes:
    creds = digest.respond(
        digest.parse_challenge(challenge),
        username="alice",
        password=PASSWORD,
        method=b"INVITE",
        uri="sip:bob@192.0.2.50",
    )
    header = b"Proxy-Authorization: " + digest.format_credentials(creds)
    return request(
        b"INVITE", b"sip:bob@192.0.2.50", STRANGER, cseq=cseq, branch=branch, headers=(header,)
    )


def test_untrusted_invite_with_credentials_is_forwarded(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        for pick, cseq in ((0, 1), (1, 3)):  # SHA-256, then MD5 (each on a fresh nonce)
            first = request(
                b"INVITE", b"sip:bob@192.0.2.50", STRANGER, cseq=cseq, branch=b"z9hG4bK%d" % cseq
            )
            out = await h.feed(first, STRANGER)
            challenge = only(out, STRANGER)[1].response.get_all(b"proxy-authenticate")[pick]
            retry = _authorized_invite(challenge, cseq + 1, b"z9hG4bK%d" % (cseq + 1))
            out = await h.feed(retry, STRANGER)
            assert statuses(out, STRANGER) == [100]
            assert one(out, CALLEE).request.method == b"INVITE"
        assert h.auth.successes == 2

    run(tmp_path, body)


def test_forged_preloaded_route_does_not_bypass_auth(tmp_path: Path) -> None:
    """A Route to us (even one shaped like our Path entry) on an initial request from
    outside the trusted networks is challenged, not relayed."""

    async def body(h: Harness) -> None:
        for i, route in enumerate(
            (
                b"<sip:192.0.2.1:5060;lr>",
                b"<sip:[2001:db8::1]:5060;lr;received=sip:203.0.113.9:5060>",
            )
        ):
            data = request(
                b"INVITE",
                b"sip:premium@203.0.113.5",
                STRANGER,
                branch=b"z9hG4bKf%d" % i,
                headers=(b"Route: " + route,),
            )
            out = await h.feed(data, STRANGER)
            assert statuses(out, STRANGER) == [100, 407]
            assert all(s.to(STRANGER) for s in out)

    run(tmp_path, body)


# -- a call from IPv6 to IPv4 ----------------------------------------------------------------


def test_invite_v6_to_v4_literal_is_forwarded(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(invite(), CALLER)
        trying = one(out, CALLER)
        assert trying.status == 100
        assert trying.flow == udp_flow(CALLER)
        fwd = one(out, CALLEE)
        assert fwd.transport is Transport.UDP
        req = fwd.request
        assert req.method == b"INVITE"
        assert bytes(req.uri) == b"sip:bob@192.0.2.50"
        assert req.max_forwards == 69
        ours, theirs = req.vias
        assert ours.host == V4 and ours.port == 5060
        assert (ours.branch or b"").startswith(BRANCH_PREFIX)
        assert ours.has_rport
        # The caller's Via stamped: bare IPv6 in received, bracketed sent-by kept.
        assert theirs.received == ip_address(CALLER[0])
        assert theirs.rport == CALLER[1]
        raw = req.values(b"via")[1]
        assert raw.startswith(b"SIP/2.0/UDP [2001:db8:aaaa::10]:5062;")
        assert b"received=2001:db8:aaaa::10" in raw
        assert b"rport=5062" in raw
        assert plain(req.values(b"record-route")) == (RR4, RR6)
        assert h.proxy.stats.forwarded == 1

    run(tmp_path, body)


def test_provisional_and_final_relayed_to_caller(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        for status in (180, 200):
            out = await h.feed(answer(fwd.data, status), CALLEE)
            relayed = one(out, CALLER)
            resp = relayed.response
            assert resp.status == status
            assert relayed.flow == udp_flow(CALLER)
            assert len(resp.vias) == 1
            assert resp.via.branch == b"z9hG4bKc1"
            assert plain(resp.values(b"record-route")) == (RR4, RR6)
        # A retransmitted 200 goes up again (the caller's ACK may have been lost).
        out = await h.feed(answer(fwd.data, 200), CALLEE)
        assert statuses(out, CALLER) == [200]

    run(tmp_path, body)


def test_ack_and_bye_follow_the_route_set(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        await h.feed(answer(fwd.data, 200), CALLEE)
        route = b"Route: " + b", ".join(reversed(fwd.request.values(b"record-route")))
        ack = request(
            b"ACK",
            b"sip:bob@192.0.2.50:5060",
            CALLER,
            branch=b"z9hG4bKack",
            to_tag=b"callee",
            to=b"sip:bob@192.0.2.50",
            headers=(route,),
        )
        out = await h.feed(ack, CALLER)
        sent = one(out, CALLEE).request
        assert sent.method == b"ACK"
        assert not sent.has(b"route")
        assert sent.vias[0].host == V4
        assert sent.vias[1].received == ip_address(CALLER[0])
        assert sent.max_forwards == 69
        assert len(out) == 1

        bye = request(
            b"BYE",
            b"sip:bob@192.0.2.50:5060",
            CALLER,
            branch=b"z9hG4bKbye",
            cseq=2,
            to_tag=b"callee",
            to=b"sip:bob@192.0.2.50",
            headers=(route,),
        )
        out = await h.feed(bye, CALLER)
        assert not only(out, CALLER)  # no 100 Trying for non-INVITE
        down = one(out, CALLEE)
        assert down.request.method == b"BYE"
        assert not down.request.has(b"route")
        assert not down.request.has(b"record-route")
        out = await h.feed(answer(down.data, 200), CALLEE)
        ok = one(out, CALLER).response
        assert (ok.status, ok.cseq.method, len(ok.vias)) == (200, b"BYE", 1)

    run(tmp_path, body)


def test_worker_own_port_only_toward_targets_without_a_pinhole(tmp_path: Path) -> None:
    """SIP workers (issue 12): a request to a target that is no registered contact nor a
    recorded flow (here an IP literal) may leave from the worker's own port, and so may
    the dialog's later requests toward that callee (ACK, BYE); requests toward the
    caller, who talked to the shared port, and responses, which follow their flow, not."""

    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        assert fwd.own_port
        out = await h.feed(answer(fwd.data, 200), CALLEE)
        assert not one(out, CALLER).own_port
        route = b"Route: " + b", ".join(reversed(fwd.request.values(b"record-route")))
        for method, branch, cseq in ((b"ACK", b"z9hG4bKack", 1), (b"BYE", b"z9hG4bKbye", 2)):
            req = request(method, b"sip:bob@192.0.2.50:5060", CALLER, branch=branch, cseq=cseq,
                          to_tag=b"callee", to=b"sip:bob@192.0.2.50", headers=(route,))  # fmt: skip
            assert one(await h.feed(req, CALLER), CALLEE).own_port, method
        # The callee's own in-dialog request toward the caller keeps the shared port.
        back = request(b"INFO", b"sip:alice@" + sent_by(CALLER), CALLEE, branch=b"z9hG4bKi",
                       to_tag=b"f1", to=b"sip:alice@example.net", headers=(route,))  # fmt: skip
        back = back.replace(
            b"From: <sip:alice@example.net>;tag=f1", b"From: <sip:bob@x>;tag=callee"
        )
        sent = only(await h.feed(back, CALLEE), CALLER)
        assert sent and not any(s.own_port for s in sent)

    run(tmp_path, body)


def test_registered_contacts_keep_the_shared_port(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        to6, to4 = await forked(h)
        assert not to6.own_port and not to4.own_port

    run(tmp_path, body)


def test_ack_without_our_route_is_dropped(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        ack = request(b"ACK", b"sip:bob@192.0.2.50", CALLER, to_tag=b"x", branch=b"z9hG4bKa")
        assert await h.feed(ack, CALLER) == []
        assert h.proxy.stats.dropped == 1

    run(tmp_path, body)


# -- registration and forking ---------------------------------------------------------------

PHONE6 = ("2001:db8:aaaa::20", 5070)
PHONE4 = ("198.51.100.20", 5080)


async def register_bob(h: Harness) -> None:
    for i, phone in enumerate((PHONE6, PHONE4)):
        data = register(b"bob", phone, call_id=b"reg%d@x" % i, branch=b"z9hG4bKr%d" % i)
        out = await h.feed(data, phone)
        assert statuses(out, phone) == [200]


async def forked(h: Harness) -> tuple[Sent, Sent]:
    await register_bob(h)
    out = await h.feed(invite(b"sip:bob@example.net"), CALLER)
    assert statuses(out, CALLER) == [100]
    return one(out, PHONE6), one(out, PHONE4)


def test_register_then_invite_forks_from_the_right_listener(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        to6, to4 = await forked(h)
        assert bytes(to6.request.uri) == b"sip:bob@[2001:db8:aaaa::20]:5070"
        assert bytes(to4.request.uri) == b"sip:bob@198.51.100.20:5080"
        assert to6.request.vias[0].host == V6
        assert to4.request.vias[0].host == V4
        assert to6.request.vias[0].branch != to4.request.vias[0].branch
        # Same family and listener: one Record-Route; across families: two.
        assert plain(to6.request.values(b"record-route")) == (b"<sip:[2001:db8::1]:5060;lr>",)
        assert plain(to4.request.values(b"record-route")) == (RR4, RR6)
        assert h.proxy.stats.registrations == 2

    run(tmp_path, body)


def test_200_on_one_branch_cancels_the_other(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        to6, to4 = await forked(h)
        out = await h.feed(answer(to6.data, 180, to_tag=b"six"), PHONE6)
        assert statuses(out, CALLER) == [180]
        out = await h.feed(answer(to4.data, 200, to_tag=b"four"), PHONE4)
        assert statuses(out, CALLER) == [200]
        cancel = one(out, PHONE6).request
        assert cancel.method == b"CANCEL"
        assert cancel.vias[0].branch == to6.request.vias[0].branch
        assert bytes(cancel.uri) == bytes(to6.request.uri)
        # The cancelled branch ends with 487: acknowledged hop by hop, not forwarded.
        out = await h.feed(answer(to6.data, 487, to_tag=b"six"), PHONE6)
        assert methods(out, PHONE6) == [b"ACK"]
        assert not only(out, CALLER)

    run(tmp_path, body)


def test_cancel_waits_for_a_provisional_on_a_silent_branch(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        to6, to4 = await forked(h)
        out = await h.feed(answer(to4.data, 200, to_tag=b"four"), PHONE4)
        assert statuses(out, CALLER) == [200]
        assert not only(out, PHONE6)  # §9.1: no CANCEL before a provisional response
        out = await h.feed(answer(to6.data, 180, to_tag=b"six"), PHONE6)
        assert methods(out, PHONE6) == [b"CANCEL"]
        assert not only(out, CALLER)  # no 1xx after the 2xx went up

    run(tmp_path, body)


def test_best_of_486_and_404_is_486(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        to6, to4 = await forked(h)
        out = await h.feed(answer(to6.data, 486, to_tag=b"six"), PHONE6)
        assert methods(out, PHONE6) == [b"ACK"]
        assert not only(out, CALLER)  # waits for the other branch
        out = await h.feed(answer(to4.data, 404, to_tag=b"four"), PHONE4)
        assert methods(out, PHONE4) == [b"ACK"]
        final = one(out, CALLER).response
        assert final.status == 486
        assert len(final.vias) == 1

    run(tmp_path, body)


def test_600_on_one_branch_wins_and_cancels(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        to6, to4 = await forked(h)
        await h.feed(answer(to4.data, 180, to_tag=b"four"), PHONE4)
        out = await h.feed(answer(to6.data, 603, to_tag=b"six"), PHONE6)
        assert methods(out, PHONE4) == [b"CANCEL"]
        out = await h.feed(answer(to4.data, 487, to_tag=b"four"), PHONE4)
        assert statuses(out, CALLER) == [603]

    run(tmp_path, body)


def test_invite_to_unregistered_local_user_is_404(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(invite(b"sip:nobody@example.net"), CALLER)
        assert statuses(out, CALLER) == [100, 404]

    run(tmp_path, body)


# -- CANCEL ----------------------------------------------------------------------------------


def test_cancel_from_caller_after_180(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        out = await h.feed(answer(fwd.data, 180), CALLEE)
        assert statuses(out, CALLER) == [180]
        out = await h.feed(request(b"CANCEL", b"sip:bob@192.0.2.50", CALLER), CALLER)
        ok = one(out, CALLER).response
        assert (ok.status, ok.cseq.method) == (200, b"CANCEL")
        cancel = one(out, CALLEE).request
        assert cancel.method == b"CANCEL"
        assert cancel.vias[0].branch == fwd.request.vias[0].branch
        # The callee confirms the CANCEL (absorbed here) and ends the INVITE with 487.
        assert not await h.feed(answer(cancel_bytes(out), 200), CALLEE)
        out = await h.feed(answer(fwd.data, 487), CALLEE)
        assert methods(out, CALLEE) == [b"ACK"]
        assert statuses(out, CALLER) == [487]

    run(tmp_path, body)


def cancel_bytes(out: list[Sent]) -> bytes:
    return one(out, CALLEE).data


def test_cancel_before_any_provisional(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        out = await h.feed(request(b"CANCEL", b"sip:bob@192.0.2.50", CALLER), CALLER)
        assert statuses(out, CALLER) == [200]
        assert not only(out, CALLEE)
        out = await h.feed(answer(fwd.data, 180), CALLEE)
        assert methods(out, CALLEE) == [b"CANCEL"]

    run(tmp_path, body)


def test_cancel_for_unknown_transaction_is_481(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(request(b"CANCEL", b"sip:bob@192.0.2.50", CALLER), CALLER)
        assert statuses(out, CALLER) == [481]

    run(tmp_path, body)


# -- timeouts --------------------------------------------------------------------------------


def test_timer_b_gives_408_upstream(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await call_forwarded(h)
        out = await h.advance(40.0)
        assert len(methods(out, CALLEE)) >= 2  # Timer A retransmissions
        assert set(methods(out, CALLEE)) == {b"INVITE"}
        # The 408 goes up, and is retransmitted (Timer G) until the caller's ACK.
        assert set(statuses(out, CALLER)) == {408}
        ack = request(
            b"ACK", b"sip:bob@192.0.2.50", CALLER, to_tag=only(out, CALLER)[0].response.to.tag
        )
        assert await h.feed(ack, CALLER) == []
        assert await h.advance(10.0) == []

    run(tmp_path, body)


def test_timer_f_gives_408_upstream(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(request(b"MESSAGE", b"sip:bob@192.0.2.50", CALLER), CALLER)
        assert methods(out, CALLEE) == [b"MESSAGE"]
        out = await h.advance(40.0)
        assert set(methods(out, CALLEE)) == {b"MESSAGE"}
        assert statuses(out, CALLER) == [408]

    run(tmp_path, body)


# -- checks of §16.3 -------------------------------------------------------------------------


def test_max_forwards_zero_is_483(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(invite(max_forwards=0), CALLER)
        assert statuses(out, CALLER) == [100, 483]
        assert not only(out, CALLEE)

    run(tmp_path, body)


def test_proxy_require_is_420_with_unsupported(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        data = invite(headers=(b"Proxy-Require: foo, bar",))
        out = await h.feed(data, CALLER)
        assert statuses(out, CALLER) == [100, 420]
        assert only(out, CALLER)[1].response.get(b"unsupported") == b"foo, bar"
        assert not only(out, CALLEE)

    run(tmp_path, body)


def test_options_to_the_gateway_itself(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        for i, uri in enumerate((b"sip:192.0.2.1", b"sip:[2001:db8::1]:5060")):
            data = request(b"OPTIONS", uri, STRANGER, branch=b"z9hG4bKo%d" % i, max_forwards=0)
            resp = one(await h.feed(data, STRANGER), STRANGER).response
            assert resp.status == 200
            allow = resp.get(b"allow") or b""
            assert b"INVITE" in allow and b"REGISTER" in allow and b"CANCEL" in allow

    run(tmp_path, body)


def test_in_dialog_request_not_routed_via_us_is_403(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        bye = request(b"BYE", b"sip:bob@192.0.2.50", CALLER, to_tag=b"t", cseq=2)
        out = await h.feed(bye, CALLER)
        assert statuses(out, CALLER) == [403]
        assert not only(out, CALLEE)

    run(tmp_path, body)


def test_unsupported_uri_scheme_is_416(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(invite(b"tel:+15551234567", to=b"sip:bob@example.net"), CALLER)
        assert statuses(out, CALLER) == [100, 416]

    run(tmp_path, body)


def test_request_back_unchanged_is_a_loop(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        # The downstream element sends it straight back (its own Via on top).
        back = fwd.data.replace(
            b"Via: ", b"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKdown\r\nVia: ", 1
        )
        out = await h.feed(back, ("198.51.100.7", 5060))
        assert statuses(out, ("198.51.100.7", 5060)) == [100, 482]

    run(tmp_path, body)


def test_another_rtc64_on_our_address_but_another_port_is_not_a_loop(tmp_path: Path) -> None:
    """A second rtc64 on the same host (another port; e.g. a caller-side proxy) writes
    Vias with the same branch prefix and loop hash: its Via is not ours, so no 482."""

    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        ours = fwd.request.vias[0]
        assert ours.port is not None and ours.branch is not None
        mine = b":%d;branch=%s" % (ours.port, ours.branch)
        assert mine in fwd.data
        elsewhere = fwd.data.replace(mine, b":%d;branch=%s" % (ours.port + 7, ours.branch), 1)
        out = await h.feed(elsewhere, ("198.51.100.7", 5060))
        assert 482 not in statuses(out, ("198.51.100.7", 5060))

    run(tmp_path, body)


def test_request_back_with_new_request_uri_is_a_spiral(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        back = fwd.data.replace(b"INVITE sip:bob@192.0.2.50 ", b"INVITE sip:carol@192.0.2.60 ")
        out = await h.feed(back, ("198.51.100.7", 5060))
        assert statuses(out, ("198.51.100.7", 5060)) == [100]
        spiral = one(out, ("192.0.2.60", 5060)).request
        assert len(spiral.vias) == 3  # ours again, on top of ours from the first pass
        assert all(v.host == V4 for v in spiral.vias[:2])

    run(tmp_path, body)


# -- stray responses, malformed input, overload, rate limit ----------------------------------


def test_stray_response_with_our_via_is_forwarded(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        stray = (
            b"SIP/2.0 200 OK\r\n"
            b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-r64-0123456789abcdef-99;rport\r\n"
            b"Via: SIP/2.0/UDP [2001:db8:aaaa::10]:5062;branch=z9hG4bKold;rport=5062"
            b";received=2001:db8:aaaa::10\r\n"
            b"From: <sip:alice@example.net>;tag=f1\r\nTo: <sip:bob@192.0.2.50>;tag=t\r\n"
            b"Call-ID: old@test\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        out = await h.feed(stray, CALLEE)
        fwd = one(out, CALLER).response
        assert fwd.status == 200
        assert [v.branch for v in fwd.vias] == [b"z9hG4bKold"]

    run(tmp_path, body)


def test_stray_response_with_foreign_via_is_dropped(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        stray = answer(invite(), 200)
        assert await h.feed(stray, CALLEE) == []
        assert h.proxy.stats.dropped == 1

    run(tmp_path, body)


def test_bad_datagram_answered_or_dropped(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        flow = udp_flow(CALLER)
        bad = invite().replace(b"CSeq: 1 INVITE", b"CSeq: 99999999999 INVITE")
        h.proxy.on_bad_datagram(bad, RemoteProtocolError("invalid CSeq"), flow)
        sent = h.sender.sent[-1]
        assert sent.to(CALLER)
        assert sent.data.startswith(b"SIP/2.0 400 invalid CSeq\r\n")
        assert b"CSeq: 99999999999 INVITE\r\n" in sent.data
        before = len(h.sender.sent)
        h.proxy.on_bad_datagram(b"garbage\r\n\r\n", RemoteProtocolError("junk"), flow)
        assert len(h.sender.sent) == before
        assert h.proxy.stats.bad_messages == 2

    run(tmp_path, body)


def test_overload_answers_503_with_retry_after(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        await call_forwarded(h)
        out = await h.feed(invite(branch=b"z9hG4bKc2", call_id=b"call2@test"), CALLER)
        busy = one(out, CALLER).response
        assert busy.status == 503
        assert busy.get(b"retry-after") == b"5"
        assert h.proxy.stats.overloaded == 1

    run(tmp_path, body, max_transactions=1)


def test_rate_limited_source_is_dropped(tmp_path: Path) -> None:
    """An untrusted source over the rate: its new requests are dropped (trusted sources
    are exempt: tests/unit/gateway/test_security_auth.py)."""

    async def body(h: Harness) -> None:
        first = request(b"INVITE", b"sip:bob@192.0.2.50", STRANGER)
        assert statuses(await h.feed(first, STRANGER), STRANGER) == [100, 407]
        again = request(b"INVITE", b"sip:bob@192.0.2.50", STRANGER, branch=b"z9hG4bKc2")
        out = await h.feed(again, STRANGER)
        assert out == []
        assert h.proxy.stats.rate_limited == 1

    run(tmp_path, body, rate=1.0)


# -- upstream mode: Path toward the core -----------------------------------------------------

UPSTREAM = parse_uri(b"sip:198.51.100.99:5060")
FAR_PHONE = ("2001:db8:bbbb::20", 5070)  # not in a trusted network
PATH = b"<sip:192.0.2.1:5060;lr;received=sip:[2001:db8:bbbb::20]:5070%3Btransport%3Dudp>"


def test_upstream_register_gets_path_and_core_reaches_the_phone(tmp_path: Path) -> None:
    assert isinstance(UPSTREAM, SipUri)

    async def body(h: Harness) -> None:
        reg = register(b"bob", FAR_PHONE, call_id=b"reg@x", branch=b"z9hG4bKreg")
        out = await h.feed(reg, FAR_PHONE)
        up = one(out, CORE).request
        assert up.method == b"REGISTER"
        assert up.get_all(b"path") == (PATH,)
        assert b"path" in up.values(b"supported")
        assert up.vias[0].host == V4
        assert up.vias[1].received == ip_address(FAR_PHONE[0])
        out = await h.feed(answer(one(h.sender.sent, CORE).data, 200), CORE)
        assert statuses(out, FAR_PHONE) == [200]

        core_invite = (
            b"INVITE sip:bob@[2001:db8:bbbb::20]:5070 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 198.51.100.99:5060;branch=z9hG4bKcore\r\n"
            b"Max-Forwards: 70\r\nRoute: " + PATH + b"\r\n"
            b"From: <sip:carol@example.net>;tag=c1\r\nTo: <sip:bob@example.net>\r\n"
            b"Call-ID: core@x\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
        out = await h.feed(core_invite, CORE)
        assert statuses(out, CORE) == [100]
        down = one(out, FAR_PHONE).request
        assert not down.has(b"route")
        assert down.vias[0].host == V6
        # Record-Routed so the IPv6 phone's in-dialog requests come back through us.
        assert plain(down.values(b"record-route")) == (RR6, RR4)

    run(tmp_path, body, upstream=UPSTREAM)


def test_upstream_untrusted_invite_goes_to_the_core_unchallenged(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(request(b"INVITE", b"sip:carol@example.net", FAR_PHONE), FAR_PHONE)
        assert statuses(out, FAR_PHONE) == [100]
        up = one(out, CORE).request
        assert bytes(up.uri) == b"sip:carol@example.net"

    run(tmp_path, body, upstream=UPSTREAM)


def test_register_with_preloaded_route_reaches_the_registrar(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        reg = register(b"bob", PHONE6, call_id=b"reg@x", branch=b"z9hG4bKreg").replace(
            b"Expires: 600", b"Route: <sip:[2001:db8::1];lr>\r\nExpires: 600"
        )
        out = await h.feed(reg, PHONE6)
        assert statuses(out, PHONE6) == [200]
        assert h.proxy.stats.registrations == 1

    run(tmp_path, body)


# -- Record-Route tokens, Timer C, media timeout ---------------------------------------------


def test_in_dialog_request_with_a_forged_route_is_refused(tmp_path: Path) -> None:
    """A To-tagged request whose Route names us without this call's token is not relayed,
    whoever sends it: no relaying through forged in-dialog requests."""

    async def body(h: Harness) -> None:
        for i, source in enumerate((STRANGER, CALLER)):
            bye = request(
                b"BYE", b"sip:victim@203.0.113.5", source, branch=b"z9hG4bKfb%d" % i,
                call_id=b"forged%d" % i, to_tag=b"x", headers=(b"Route: " + RR4,),
            )  # fmt: skip
            out = await h.feed(bye, source)
            assert statuses(out, source) == [403]
            assert all(s.to(source) for s in out), "nothing relayed"

    run(tmp_path, body)


def test_our_own_responses_carry_received_and_rport(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(invite(), CALLER)
        trying = only(out, CALLER)[0].response
        assert trying.status == 100
        assert trying.via.rport == CALLER[1]
        assert trying.via.received == ip_address(CALLER[0])

    run(tmp_path, body)


def test_timer_c_cancels_a_branch_that_rings_forever(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        out = await h.feed(answer(fwd.data, 180), CALLEE)
        assert statuses(out, CALLER) == [180]
        assert h.proxy.get_timer() == h.clock.now + 180.0
        h.clock.now += 181.0
        before = len(h.sender.sent)
        h.proxy.handle_timer(h.clock.now)
        await h.drain()
        out = h.sender.sent[before:]
        assert methods(out, CALLEE) == [b"CANCEL"]
        assert statuses(out, CALLER) == [408]

    run(tmp_path, body)


def test_media_timeout_sends_bye_to_both_parties(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        await h.feed(answer(fwd.data, 200), CALLEE)
        assert len(h.proxy.dialogs) == 1
        before = len(h.sender.sent)
        h.proxy.media_timeout(b"call1@test")
        await h.drain()
        out = h.sender.sent[before:]
        assert methods(out, CALLEE) == [b"BYE"]
        assert methods(out, CALLER) == [b"BYE"]
        to_callee = only(out, CALLEE)[0].request
        assert to_callee.from_.tag == b"f1" and to_callee.to.tag == b"callee"
        assert to_callee.cseq.seq == 2
        to_caller = only(out, CALLER)[0].request
        assert to_caller.from_.tag == b"callee" and to_caller.to.tag == b"f1"
        assert bytes(to_caller.uri) == b"sip:alice@" + sent_by(CALLER)
        assert len(h.proxy.dialogs) == 0

    run(tmp_path, body)


# -- media relay: SDP rewritten in forwarded messages ----------------------------------------


def with_sdp(data: bytes, sdp: bytes) -> bytes:
    """``data`` (ending in an empty body) carrying ``sdp`` instead."""
    assert data.endswith(b"Content-Length: 0\r\n\r\n")
    head = data[: -len(b"Content-Length: 0\r\n\r\n")]
    return head + b"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s" % (
        len(sdp),
        sdp,
    )


def media_sdp(address: str, port: int) -> bytes:
    fam = "IP6" if ":" in address else "IP4"
    return (
        f"v=0\r\no=- 1 1 IN {fam} {address}\r\ns=-\r\nc=IN {fam} {address}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


def relay_bridge(
    fail: bool = False,
) -> tuple[MediaRelay, MediaBridge, RelayClock, list[bytes]]:
    settings = RelaySettings(addresses=(V4, V6), ports=(30000, 30019), timeout=10.0)
    ports = [(a, p) for a in (V4, V6) for p in range(30000, 30020)] if fail else []
    clock = RelayClock()
    timeouts: list[bytes] = []
    relay = MediaRelay(settings, FakeForwarder(ports), clock=clock, on_timeout=timeouts.append)
    return relay, MediaBridge(relay, "auto", logging.getLogger("test.media")), clock, timeouts


def content_length_right(msg: Request | Response) -> bool:
    return int(msg.get(b"content-length") or b"-1") == len(msg.body)


def test_relayed_call_gets_sdp_rewritten_both_ways(tmp_path: Path) -> None:
    """IPv6 caller, IPv4 callee: the callee is offered the relay's IPv4 address, the caller
    answered (183 and 200) with the relay's IPv6 address; Content-Length follows the body."""
    relay, bridge, _, _ = relay_bridge()

    async def body(h: Harness) -> None:
        out = await h.feed(with_sdp(invite(), media_sdp(CALLER[0], 4000)), CALLER)
        fwd = one(out, CALLEE)
        offered = fwd.request
        assert content_length_right(offered)
        text = offered.body
        assert b"c=IN IP4 192.0.2.1\r\n" in text and b"IP6" not in text, text
        assert b"m=audio 300" in text and b"a=rtpmap:0 PCMU/8000" in text
        for status in (183, 200):
            reply = with_sdp(answer(fwd.data, status), media_sdp(CALLEE[0], 5000))
            out = await h.feed(reply, CALLEE)
            up = one(out, CALLER).response
            assert up.status == status and content_length_right(up)
            assert b"c=IN IP6 2001:db8::1\r\n" in up.body and b"IP4" not in up.body, up.body
            assert b"192.0.2.50" not in up.body
        assert [bytes(c) for c in relay.calls()] == [b"call1@test;f=4"]
        assert bridge.active_calls() == 1
        # The BYE ends the relay session.
        route = b"Route: " + b", ".join(reversed(offered.values(b"record-route")))
        bye = request(
            b"BYE", b"sip:bob@192.0.2.50:5060", CALLER, branch=b"z9hG4bKbye", cseq=2,
            to_tag=b"callee", to=b"sip:bob@192.0.2.50", headers=(route,),
        )  # fmt: skip
        out = await h.feed(bye, CALLER)
        assert one(out, CALLEE).request.method == b"BYE"
        assert relay.calls() == [] and bridge.active_calls() == 0

    run(tmp_path, body, media=bridge)


def test_public_same_family_call_keeps_its_sdp(tmp_path: Path) -> None:
    relay, bridge, _, _ = relay_bridge()
    sdp = media_sdp("203.0.113.7", 4000)

    async def body(h: Harness) -> None:
        caller4 = ("198.51.100.10", 5062)  # trusted IPv4 caller
        data = with_sdp(request(b"INVITE", b"sip:bob@192.0.2.50", caller4), sdp)
        out = await h.feed(data, caller4)
        assert one(out, CALLEE).request.body == sdp
        assert relay.calls() == []

    run(tmp_path, body, media=bridge)


def test_no_relay_ports_fails_the_call_and_leaves_no_session(tmp_path: Path) -> None:
    relay, bridge, _, _ = relay_bridge(fail=True)

    async def body(h: Harness) -> None:
        out = await h.feed(with_sdp(invite(), media_sdp(CALLER[0], 4000)), CALLER)
        assert not only(out, CALLEE)
        # The branch fails with our own 503 "no media relay ports", which goes up as such
        # (only a 503 received from downstream becomes 500, §16.7 step 6).
        assert statuses(out, CALLER) == [100, 503]
        assert relay.calls() == []

    run(tmp_path, body, media=bridge)


def test_final_error_releases_the_relay_session(tmp_path: Path) -> None:
    relay, bridge, _, _ = relay_bridge()

    async def body(h: Harness) -> None:
        out = await h.feed(with_sdp(invite(), media_sdp(CALLER[0], 4000)), CALLER)
        fwd = one(out, CALLEE)
        assert relay.calls()
        out = await h.feed(answer(fwd.data, 486), CALLEE)
        assert statuses(out, CALLER) == [486]
        assert relay.calls() == [] and bridge.active_calls() == 0

    run(tmp_path, body, media=bridge)


def test_relay_timeout_byes_both_parties_of_the_relayed_dialog(tmp_path: Path) -> None:
    """The relay reports ``call_id;f=4`` timed out; wired as ``rtc64 serve`` does it
    (``MediaBridge.call_of``), the proxy BYEs both sides and the session is gone."""
    relay, bridge, clock, timeouts = relay_bridge()

    async def body(h: Harness) -> None:
        out = await h.feed(with_sdp(invite(), media_sdp(CALLER[0], 4000)), CALLER)
        fwd = one(out, CALLEE)
        await h.feed(with_sdp(answer(fwd.data, 200), media_sdp(CALLEE[0], 5000)), CALLEE)
        before = len(h.sender.sent)
        clock.now += 11.0
        relay.handle_timer(clock.now)
        assert timeouts == [b"call1@test;f=4"]
        h.proxy.media_timeout(MediaBridge.call_of(timeouts[0]))
        await h.drain()
        out = h.sender.sent[before:]
        assert methods(out, CALLEE) == [b"BYE"] and methods(out, CALLER) == [b"BYE"]
        assert relay.calls() == [] and bridge.active_calls() == 0

    run(tmp_path, body, media=bridge)


def test_in_flight_cap_never_sheds_calls_in_progress(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        await h.feed(answer(fwd.data, 200), CALLEE)  # call 1 established
        out = await h.feed(invite(branch=b"z9hG4bKc2", call_id=b"call2@test"), CALLER)
        assert one(out, CALLEE).request.method == b"INVITE"  # call 2 awaits its final: cap
        out = await h.feed(invite(branch=b"z9hG4bKc3", call_id=b"call3@test"), CALLER)
        assert statuses(out, CALLER) == [503], "new work over the cap is shed"
        route = b"Route: " + b", ".join(reversed(fwd.request.values(b"record-route")))
        bye = request(
            b"BYE", b"sip:bob@192.0.2.50:5060", CALLER, branch=b"z9hG4bKbye",
            cseq=2, to_tag=b"callee", headers=(route,),
        )  # fmt: skip
        out = await h.feed(bye, CALLER)
        assert methods(out, CALLEE) == [b"BYE"], "an in-dialog BYE is never shed"

    run(tmp_path, body, max_transactions=1)


def test_lagging_loop_sheds_new_calls_but_finishes_calls_in_progress(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        await h.feed(answer(fwd.data, 200), CALLEE)
        h.proxy.admission.target = 0.1
        h.proxy.admission.observe(h.clock.now, 0.5)  # half a second of receive backlog
        assert h.proxy.admission.fraction < 1.0
        out = await h.feed(invite(branch=b"z9hG4bKnew", call_id=b"new@test"), CALLER)
        assert statuses(out, CALLER) == [503]
        assert only(out, CALLER)[0].response.get(b"retry-after") == b"5"
        assert not only(out, CALLEE), "nothing new goes downstream"
        route = b"Route: " + b", ".join(reversed(fwd.request.values(b"record-route")))
        bye = request(
            b"BYE", b"sip:bob@192.0.2.50:5060", CALLER, branch=b"z9hG4bKbye",
            cseq=2, to_tag=b"callee", headers=(route,),
        )  # fmt: skip
        out = await h.feed(bye, CALLER)
        assert methods(out, CALLEE) == [b"BYE"], "the call in progress still ends cleanly"

    run(tmp_path, body)


# -- happy eyeballs ---------------------------------------------------------------------------

DUAL_V6 = ("2001:db8:dead::1", 5060)
DUAL_V4 = ("192.0.2.60", 5060)


def dual_stack_dns() -> Resolver:
    """A resolver whose DNS knows dual.example.net by AAAA and A only (no NAPTR/SRV)."""

    async def backend(query: Query) -> Answer:
        if query.name == "dual.example.net" and query.rdtype is RdType.AAAA:
            return Answer((ip_address(DUAL_V6[0]),), ttl=300.0)
        if query.name == "dual.example.net" and query.rdtype is RdType.A:
            return Answer((ip_address(DUAL_V4[0]),), ttl=300.0)
        return Answer((), Status.NOERROR, ttl=300.0)  # NODATA: no NAPTR, no SRV

    return Resolver(backend=backend, hosts={})


def test_silent_ipv6_loses_to_ipv4_within_the_attempt_delay(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(invite(b"sip:bob@dual.example.net"), CALLER)
        assert statuses(out, CALLER) == [100]
        first = one(out, DUAL_V6)
        assert first.request.method == b"INVITE", "IPv6 is tried first (RFC 8305)"
        assert not only(out, DUAL_V4)
        out = await h.advance(0.3, step=0.05)
        second = one(out, DUAL_V4)
        assert second.request.via.branch != first.request.via.branch, "a new transaction"
        assert second.request.via.host == V4, "sent from the IPv4 listener"
        out = await h.feed(answer(second.data, 180), DUAL_V4)
        assert statuses(out, CALLER) == [180]
        out = await h.feed(answer(second.data, 200), DUAL_V4)
        assert statuses(out, CALLER) == [200]
        # The IPv6 attempt wakes up late: it must not ring twice; it is CANCELled.
        out = await h.feed(answer(first.data, 180), DUAL_V6)
        assert methods(out, DUAL_V6) == [b"CANCEL"]
        assert not only(out, CALLER), "the loser's 180 is not relayed"
        assert h.proxy.stats.race_fallbacks == 1
        # The next call to the same destination tries the healthy family first.
        out = await h.feed(
            invite(b"sip:bob@dual.example.net", branch=b"z9hG4bKn2", call_id=b"c2@test"), CALLER
        )
        assert methods(out, DUAL_V4) == [b"INVITE"]
        assert not only(out, DUAL_V6)

    run(tmp_path, body, resolver=dual_stack_dns())


def test_an_answering_ipv6_target_is_used_alone(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(invite(b"sip:bob@dual.example.net"), CALLER)
        first = one(out, DUAL_V6)
        out = await h.feed(answer(first.data, 100), DUAL_V6)
        out += await h.advance(1.0, step=0.05)
        assert not only(out, DUAL_V4), "a 100 Trying within the delay wins the race"

    run(tmp_path, body, resolver=dual_stack_dns())


def test_request_from_a_strict_router_gets_its_request_uri_back(tmp_path: Path) -> None:
    """§16.4: a strict router put our Record-Route URI in the Request-URI and the remote
    target in the last Route; we restore it and forward to it."""

    async def body(h: Harness) -> None:
        fwd = await call_forwarded(h)
        await h.feed(answer(fwd.data, 200), CALLEE)
        ours = fwd.request.values(b"record-route")[1]  # the entry facing the caller
        strict_uri = ours.strip(b"<>")
        bye = request(
            b"BYE", strict_uri, CALLER, branch=b"z9hG4bKstrict", cseq=2, to_tag=b"callee",
            headers=(b"Route: <sip:bob@192.0.2.50:5060>",),
        )  # fmt: skip
        out = await h.feed(bye, CALLER)
        down = one(out, CALLEE).request
        assert down.method == b"BYE"
        assert bytes(down.uri) == b"sip:bob@192.0.2.50:5060"
        assert not down.has(b"route")

    run(tmp_path, body)


def test_a_losing_attempt_that_answers_2xx_is_acked_and_ended(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        out = await h.feed(invite(b"sip:bob@dual.example.net"), CALLER)
        first = one(out, DUAL_V6)
        out = await h.advance(0.3, step=0.05)
        second = one(out, DUAL_V4)
        out = await h.feed(answer(second.data, 200), DUAL_V4)
        assert statuses(out, CALLER) == [200]
        # The callee also answers on IPv6, late: nobody wants that dialog.
        out = await h.feed(answer(first.data, 200, to_tag=b"late"), DUAL_V6)
        assert not only(out, CALLER), "the caller never sees the second 2xx"
        # Sent to the 2xx's Contact (the test UAS always writes sip:bob@192.0.2.50:5060).
        assert methods(out, CALLEE) == [b"ACK", b"BYE"]
        ack, bye = (s.request for s in only(out, CALLEE))
        assert ack.to.tag == bye.to.tag == b"late"
        assert bye.cseq.seq == ack.cseq.seq + 1
        assert bytes(bye.uri) == b"sip:bob@192.0.2.50:5060", "sent to the 2xx's Contact"

    run(tmp_path, body, resolver=dual_stack_dns())
