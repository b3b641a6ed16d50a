"""``rtc64 probe turn:HOST``: STUN Binding and TURN Allocate per family and transport.

Rules (RFC 8656 §7, RFC 6156, RFC 5928 §3 for SRV; decisions in ``turncheck``):

- The host's AAAA and A (``_turn._udp``/``_turn._tcp``/``_turns._tcp`` SRV when no port is
  given); every address family is probed on its own 5-tuple, through ``Probe.limit``.
- Per transport and family: Binding; Allocate without a family and without credentials
  (a 401 with realm proves a TURN server), and with credentials (which relay family a
  browser gets: RFC 8656 §7.2 says IPv4 unless the client asks); Allocate with
  REQUESTED-ADDRESS-FAMILY IPv4 and IPv6 and with ADDITIONAL-ADDRESS-FAMILY
  (authenticated when credentials are given, on a fresh 5-tuple each; every allocation
  is deleted with Refresh 0 afterwards).
- With credentials, each relay family gets an echo: a local UDP peer learns its mapped
  address with a Binding, the client permits it, sends a Send indication, the peer
  answers through the relay and the client must see the same payload in a Data
  indication (each leg resent every 0.25 s until it arrives, within the timeout). A
  relay family this host has no address in is skipped.
- Through NAT64: when the resolver's DNS64 reveals a prefix and the server has an IPv4
  address, a Binding goes to the synthesised IPv6 address.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from typing import Any, TypeVar

from rtc64.io.tls import client_context
from rtc64.net import rfc6052
from rtc64.net.address import IPAddress
from rtc64.net.rfc3263 import Query, RdType, Srv, Status
from rtc64.probe import turncheck as tc
from rtc64.probe import wire
from rtc64.probe.context import Probe, Sink
from rtc64.probe.verdict import Check, Template
from rtc64.probe.verdict import Status as V
from rtc64.stun.attributes import DATA, XOR_PEER_ADDRESS
from rtc64.stun.message import Class, Method, build, decode, encode
from rtc64.stun.reader import StunError

T = TypeVar("T")
SRV_NAMES = {"udp": "_turn._udp", "tcp": "_turn._tcp", "tls": "_turns._tcp"}
STUN_SRV = {"udp": "_stun._udp", "tcp": "_stun._tcp", "tls": "_stuns._tcp"}


@dataclass(frozen=True, slots=True)
class Server:
    """One server address on one transport (each request gets its own 5-tuple)."""

    transport: str
    host: str
    address: IPAddress
    port: int


async def probe_turn(text: str, probe: Probe, sink: Sink) -> None:
    uri = tc.parse_turn_uri(text)
    transports = tuple(
        t for t in uri.transports if t in (probe.settings.transports or uri.transports)
    )
    creds = _credentials(probe)
    servers = await _servers(uri, transports, probe, sink)
    jobs = []
    for transport in transports:
        host, port, addresses = servers[transport]
        for family in (6, 4):
            mine = [a for a in addresses if a.version == family]
            if not mine:
                if addresses or family == 6:
                    sink.add(_no_address(transport, family, host))
                continue
            skip = probe.family_skip(
                family,
                "turn.binding",
                tc.MEDIA,
                destination=mine[0],
                group=f"turn.binding.{transport}",
            )
            if skip is not None:
                sink.add(skip)
                continue
            jobs.append(_one(uri, Server(transport, host, mine[0], port), creds, probe, sink))
    await asyncio.gather(*jobs)
    await _through_nat64(servers, transports, probe, sink)


def _credentials(probe: Probe) -> tc.Credentials | None:
    s = probe.settings
    if s.turn_secret:
        return tc.Credentials.rest(s.turn_secret, s.turn_user or "rtc64-probe", time.time())
    if s.turn_user and s.turn_password is not None:
        return tc.Credentials(s.turn_user, s.turn_password)
    return None


def _no_address(transport: str, family: int, host: str) -> Check:
    make = Template(
        "turn.binding", tc.MEDIA, family, f"turn.binding.{transport}", {"name": host}, reach=True
    )
    if family == 6:
        return make(V.FAIL, "dns.no-aaaa", f"{host} has no AAAA record: no TURN over IPv6")
    return make(V.SKIPPED, "dns.no-a", f"{host} has no A record: TURN over IPv4 not tested")


async def _servers(
    uri: tc.TurnUri, transports: tuple[str, ...], probe: Probe, sink: Sink
) -> dict[str, tuple[str, int, list[IPAddress]]]:
    """(host, port, addresses) per transport, with DNS checks."""
    hosts = dict.fromkeys(transports, (uri.host, uri.port))
    try:
        literal = [IPv6Address(uri.host) if ":" in uri.host else IPv4Address(uri.host)]
    except ValueError:
        literal = []
    if not literal and not uri.explicit_port:
        names = STUN_SRV if not uri.turn else SRV_NAMES
        answers = await asyncio.gather(
            *(probe.resolver.query(Query(f"{names[t]}.{uri.host}", RdType.SRV)) for t in transports)
        )
        for t, answer in zip(transports, answers, strict=True):
            srvs = sorted(
                (r for r in answer.records if isinstance(r, Srv)), key=lambda r: r.priority
            )
            if srvs and srvs[0].target not in ("", "."):
                hosts[t] = (srvs[0].target, srvs[0].port)
                sink.add(
                    Check(
                        "turn.dns.srv",
                        V.INFO,
                        "dns.records",
                        f"{names[t]}.{uri.host} SRV -> {srvs[0].target}:{srvs[0].port}",
                        aspect=tc.MEDIA,
                    )
                )
    cache: dict[str, list[IPAddress]] = {}
    for host, _ in dict.fromkeys(hosts.values()):
        if literal:
            cache[host] = list(literal)
            continue
        six, four = await asyncio.gather(
            probe.resolver.query(Query(host, RdType.AAAA)),
            probe.resolver.query(Query(host, RdType.A)),
        )
        real, synthesised = await probe.split_synthesised(
            [r for r in six.records if isinstance(r, IPv6Address)]
        )
        found: list[IPAddress] = [*real, *(r for r in four.records if isinstance(r, IPv4Address))]
        if synthesised:
            sink.add(
                Check(
                    "turn.dns",
                    V.INFO,
                    "dns.records",
                    f"{host}: AAAA {synthesised[0]} is DNS64's (NAT64), not the server's",
                    aspect=tc.MEDIA,
                    evidence={"name": host, "synthesised": [str(a) for a in synthesised]},
                )
            )
        cache[host] = found
        if not found:
            nx = six.status is Status.NXDOMAIN
            failed = six.status.failed or four.status.failed
            reason = "dns.nxdomain" if nx else "dns.failure" if failed else "dns.no-address"
            sink.add(
                Check("turn.dns", V.FAIL, reason, f"{host}: no address ({reason})", aspect=tc.MEDIA)
            )
        else:
            sink.add(
                Check(
                    "turn.dns",
                    V.INFO,
                    "dns.records",
                    f"{host}: {', '.join(map(str, found))}",
                    aspect=tc.MEDIA,
                    evidence={"name": host, "addresses": [str(a) for a in found]},
                )
            )
    return {t: (h, p, cache[h]) for t, (h, p) in hosts.items()}


async def _session(server: Server, probe: Probe) -> wire.StunSession:
    session = wire.StunSession(probe.settings.timeout)
    tls = client_context(verify=False) if server.transport == "tls" else None
    named = server.transport == "tls" and server.host != str(server.address)
    await session.open(
        server.address,
        server.port,
        server.transport,
        tc.stream_frame_length,
        tls=tls,
        server_name=server.host if named else None,
    )
    return session


async def _exchange(
    server: Server, data: bytes, probe: Probe
) -> tuple[tc.StunAnswer | None, float, str]:
    """One request on a fresh 5-tuple: (answer, seconds incl. connect, error reason)."""
    start = time.monotonic()
    async with probe.limit(server.address):
        session: wire.StunSession | None = None
        try:
            session = await _session(server, probe)
            raw, _ = await session.request(data)
        except wire.ProbeIOError as exc:
            return None, time.monotonic() - start, exc.reason
        finally:
            if session is not None:
                await session.close()
    return tc.read_answer(raw), time.monotonic() - start, ""


async def _one(
    uri: tc.TurnUri, server: Server, creds: tc.Credentials | None, probe: Probe, sink: Sink
) -> None:
    family, transport = server.address.version, server.transport
    answer, seconds, error = await _exchange(server, tc.binding_request(), probe)
    sink.add(tc.binding_check(transport, family, answer, seconds, error))
    if not uri.turn:
        return
    answer, seconds, error = await _exchange(server, tc.allocate_request(), probe)
    sink.add(tc.reachability_check(transport, family, answer, seconds, error))
    if answer is None or answer.bad:
        return
    if creds is not None:
        await _browser_like(server, creds, probe, sink)
    for relay in (4, 6):
        await _relay(server, relay, creds, probe, sink)
    await _dual(server, creds, probe, sink)


async def _browser_like(server: Server, creds: tc.Credentials, probe: Probe, sink: Sink) -> None:
    """An authenticated Allocate without REQUESTED-ADDRESS-FAMILY, as browsers send it:
    which relay family does such a client get over this transport family?"""
    async with probe.limit(server.address):
        session: wire.StunSession | None = None
        try:
            session = await _session(server, probe)
            answer, auth = await _allocate(session, None, False, creds)
            sink.add(tc.default_relay_check(server.transport, server.address.version, answer))
            if answer.success and auth is not None:
                await _release(session, auth)
        except wire.ProbeIOError:
            pass  # the reachability check already reports a dead server
        finally:
            if session is not None:
                await session.close()


async def _allocate(
    session: wire.StunSession, family: int | None, additional: bool, creds: tc.Credentials | None
) -> tuple[tc.StunAnswer, tc.Auth | None]:
    raw, _ = await session.request(tc.allocate_request(family, additional))
    answer = tc.read_answer(raw)
    if answer.code == 401 and creds is not None and answer.realm and answer.nonce:
        auth = tc.Auth(creds, answer.realm, answer.nonce)
        raw, _ = await session.request(tc.allocate_request(family, additional, auth))
        answer = tc.read_answer(raw)
        if answer.code == 438 and answer.nonce:  # stale nonce: once more with the new one
            auth = tc.Auth(creds, answer.realm or auth.realm, answer.nonce)
            raw, _ = await session.request(tc.allocate_request(family, additional, auth))
            answer = tc.read_answer(raw)
        return answer, auth
    return answer, None


async def _relay(
    server: Server, relay: int, creds: tc.Credentials | None, probe: Probe, sink: Sink
) -> None:
    start = time.monotonic()
    transport = server.transport
    async with probe.limit(server.address):
        session: wire.StunSession | None = None
        try:
            session = await _session(server, probe)
            answer, auth = await _allocate(session, relay, False, creds)
            seconds = time.monotonic() - start
            check = tc.relay_check(
                transport, relay, answer, seconds, authenticated=creds is not None
            )
            sink.add(check)
            if answer.success and auth is not None:
                relayed = [r for r in answer.relayed if r[0].version == relay]
                if relayed and check.status is V.PASS:
                    sink.add(await _echo(session, auth, relayed[0], server, probe))
                await _release(session, auth)
        except wire.ProbeIOError as exc:
            seconds = time.monotonic() - start
            sink.add(
                tc.relay_check(
                    transport, relay, None, seconds, exc.reason, authenticated=creds is not None
                )
            )
        finally:
            if session is not None:
                await session.close()


async def _dual(server: Server, creds: tc.Credentials | None, probe: Probe, sink: Sink) -> None:
    start = time.monotonic()
    authenticated = creds is not None
    async with probe.limit(server.address):
        session: wire.StunSession | None = None
        try:
            session = await _session(server, probe)
            answer, auth = await _allocate(session, None, True, creds)
            seconds = time.monotonic() - start
            sink.add(tc.dual_check(server.transport, answer, seconds, authenticated=authenticated))
            if answer.success and auth is not None:
                await _release(session, auth)
        except wire.ProbeIOError as exc:
            seconds = time.monotonic() - start
            sink.add(
                tc.dual_check(
                    server.transport, None, seconds, exc.reason, authenticated=authenticated
                )
            )
        finally:
            if session is not None:
                await session.close()


async def _release(session: wire.StunSession, auth: tc.Auth) -> None:
    with contextlib.suppress(wire.ProbeIOError):  # else it expires on its own (LIFETIME 120)
        await session.request(tc.refresh_zero(auth))


async def _echo(
    session: wire.StunSession,
    auth: tc.Auth,
    relayed: tuple[IPAddress, int],
    server: Server,
    probe: Probe,
) -> Check:
    """Payload from the client through the relay to a local peer and back."""
    family, transport = relayed[0].version, server.transport
    make = Template(
        "turn.echo",
        tc.MEDIA,
        family,
        f"turn.echo.{transport}",
        {"relayed": f"{relayed[0]} port {relayed[1]}"},
    )
    client = f"client over IPv{server.address.version}"
    where = f"relayed echo through the IPv{family} relay ({transport.upper()}, {client})"
    stun_server = server.address if server.address.version == family else None
    local = probe.local_source(stun_server or relayed[0])
    if local is None:
        return make(V.SKIPPED, f"local.no-ipv{family}", f"{where}: no local IPv{family} peer")
    peer = wire.PeerSocket()
    timeout = probe.settings.timeout
    token = secrets.token_bytes(16)
    try:
        await peer.open(local)
        assert peer.local is not None
        mapped = peer.local
        if stun_server is not None and transport == "udp":
            peer.sendto(tc.binding_request(), (stun_server, server.port))
            with contextlib.suppress(TimeoutError):
                data, _ = await peer.receive(timeout)
                seen = tc.read_answer(data)
                mapped = seen.mapped or mapped
        permit_request = tc.signed(Method.CREATE_PERMISSION, [XOR_PEER_ADDRESS(mapped)], auth)
        raw, _ = await session.request(permit_request)
        permit = tc.read_answer(raw)
        if not permit.success:
            text = f"{where}: CreatePermission {permit.code} {permit.reason}"
            return make(V.FAIL, "turn.echo-failed", text)
        send = build(
            Method.SEND,
            Class.INDICATION,
            tc.tid(),
            XOR_PEER_ADDRESS(mapped),
            DATA(b"rtc64-probe" + token),
        )
        data = encode(send)
        async with asyncio.timeout(timeout):
            # UDP may lose a datagram (or a relay install its permission a moment after
            # answering): each leg is resent every RESEND seconds until it arrives.
            source = await _until(lambda: session.send(data), _peer_gets(peer, token, timeout))
            reply = b"rtc64-echo" + token
            await _until(lambda: peer.sendto(reply, source), _client_gets(session, token))
    except (TimeoutError, OSError, wire.ProbeIOError) as exc:
        return make(V.FAIL, "turn.echo-failed", f"{where}: no echo ({type(exc).__name__})")
    finally:
        peer.close()
    return make(V.PASS, "turn.echo-ok", f"{where}: data went out via {source[0]} and came back")


RESEND = 0.25


async def _until(send: Callable[[], None], arrival: Coroutine[Any, Any, T]) -> T:
    """Call ``send`` now and every ``RESEND`` seconds until ``arrival`` completes."""
    task = asyncio.ensure_future(arrival)
    try:
        while True:
            send()
            done, _ = await asyncio.wait({task}, timeout=RESEND)
            if done:
                return task.result()
    finally:
        task.cancel()


async def _peer_gets(peer: wire.PeerSocket, token: bytes, timeout: float) -> tuple[IPAddress, int]:
    while True:
        data, source = await peer.receive(timeout)
        if data.endswith(token):
            return source


async def _client_gets(session: wire.StunSession, token: bytes) -> None:
    while True:
        raw = await session.inbox.get()
        try:
            msg = decode(raw)
            if msg.method == Method.DATA and (msg.get(DATA) or b"").endswith(token):
                return
        except StunError:
            continue


async def _through_nat64(
    servers: dict[str, tuple[str, int, list[IPAddress]]],
    transports: tuple[str, ...],
    probe: Probe,
    sink: Sink,
) -> None:
    if "udp" not in transports or 6 not in probe.settings.families:
        return
    host, port, addresses = servers["udp"]
    v4 = [a for a in addresses if isinstance(a, IPv4Address)]
    prefixes = await probe.nat64_prefixes()
    if not v4 or not prefixes:
        return
    target = rfc6052.synthesize(v4[0], prefixes[0])
    if not probe.routable(target):
        return
    answer, seconds, error = await _exchange(
        Server("udp", host, target, port), tc.binding_request(), probe
    )
    # An IPv4 server reached from IPv6 through the translator: the IPv4 service's result.
    sink.add(tc.binding_check("udp", 4, answer, seconds, error, via=f" via NAT64 {target}"))
