"""``rtc64 probe sip:DOMAIN``: DNS (NAPTR/SRV/AAAA/A) and SIP OPTIONS per family and transport.

Rules (RFC 3263 §4.1-§4.2, RFC 7984, RFC 5118, RFC 5922 §7.2; decisions in ``sipcheck``):

- Transports: ``--transport`` if given, else the URI's ``transport=``, else UDP, TCP and
  TLS (``sips:`` only TLS). NAPTR picks the SRV names when present; else ``_sip._udp``,
  ``_sip._tcp``, ``_sips._tcp``; with no SRV at all, the domain on 5060/5061. A numeric
  host or an explicit port is used as it is.
- Every SRV target gets AAAA and A; a missing AAAA fails (IPv6-only clients cannot reach
  it), a missing A warns. OPTIONS goes to up to ``max_addresses`` addresses per target,
  family and transport, through ``Probe.limit`` (never a burst at one server).
- TLS: a verifying handshake first (system CAs or ``--cafile``; SNI = the SIP domain, and
  the certificate must name the SIP domain, RFC 5922 §7.2, not merely the SRV target: a
  certificate naming only the target is a name mismatch that says so);
  OPTIONS then runs over TLS even when the certificate is refused, so reachability and
  certificate are judged apart.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path

from rtc64.errors import RemoteProtocolError
from rtc64.io.tls import client_context
from rtc64.net.address import IPAddress, format_host
from rtc64.net.rfc3263 import NAPTR_SERVICES, Naptr, Query, RdType, Srv, Status
from rtc64.probe import sipaccount, sipcheck, wire
from rtc64.probe.context import Probe, Sink
from rtc64.probe.sipcheck import SIG, Attempt
from rtc64.probe.verdict import Check
from rtc64.probe.verdict import Status as V
from rtc64.sip.uri import SipUri, parse_uri

TRANSPORTS = ("udp", "tcp", "tls")
WEBSOCKETS = ("ws", "wss")
ALL_TRANSPORTS = (*TRANSPORTS, *WEBSOCKETS)
SECURE = ("tls", "wss")
DEFAULT_PORT = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}
SRV_NAMES = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
_NAPTR_TRANSPORT = {k: v.name.lower() for k, v in NAPTR_SERVICES.items()}


class TargetError(ValueError):
    """The target text is not usable; the message says what was expected."""


@dataclass(frozen=True, slots=True)
class Hop:
    transport: str
    host: str
    port: int
    domain: str = ""
    """The SIP domain the hop was found for: what a TLS certificate must name (RFC 5922)."""


def parse_target(text: str) -> SipUri:
    try:
        uri = parse_uri(text.encode(), "target")
    except RemoteProtocolError as exc:
        raise TargetError(f"{text!r} is not a SIP URI ({exc})") from None
    if not isinstance(uri, SipUri):
        raise TargetError(f"{text!r}: expected sip:DOMAIN or sips:DOMAIN")
    return uri


def wanted_transports(uri: SipUri, requested: tuple[str, ...]) -> tuple[str, ...]:
    """--transport, else the URI's transport=, else UDP/TCP/TLS (WebSocket has no SRV, so
    ws/wss are probed only when asked); sips: keeps TLS and WSS."""
    if requested:
        chosen = tuple(t for t in requested if t in ALL_TRANSPORTS)
    else:
        param = uri.param(b"transport")
        chosen = (param.decode().lower(),) if param else TRANSPORTS
        if uri.secure and chosen == ("tcp",):
            chosen = ("tls",)
        if uri.secure and chosen == ("ws",):
            chosen = ("wss",)
        chosen = tuple(t for t in chosen if t in ALL_TRANSPORTS) or TRANSPORTS
    if uri.secure:
        return tuple(t for t in chosen if t in SECURE) or ("tls",)
    return chosen


async def probe_sip(text: str, probe: Probe, sink: Sink) -> None:
    uri = parse_target(text)
    transports = wanted_transports(uri, probe.settings.transports)
    host = uri.host if isinstance(uri.host, str) else format_host(uri.host)
    request_uri = f"{uri.scheme.decode()}:{host}" + (f":{uri.port}" if uri.port else "")
    hops = await _locate(uri, transports, probe, sink)
    hosts = list(dict.fromkeys(h.host for h in hops))
    addresses = dict(
        zip(hosts, await asyncio.gather(*(_addresses(h, probe, sink) for h in hosts)), strict=True)
    )
    jobs: list[asyncio.Task[Attempt]] = []
    skipped: set[tuple[str, int]] = set()
    for hop in hops:
        for family in (6, 4):
            mine = [a for a in addresses[hop.host] if a.version == family]
            for address in mine[: probe.settings.max_addresses]:
                skip = probe.family_skip(family, "sip.options", SIG, destination=address)
                via = await probe.via_nat64(address) if skip is not None else None
                if via is not None:
                    jobs.append(
                        asyncio.create_task(_attempt(hop, address, request_uri, probe, via=via))
                    )
                    continue
                if skip is not None:
                    if (hop.transport, family) not in skipped:
                        skipped.add((hop.transport, family))
                        sink.add(_grouped(skip, hop.transport))
                    continue
                jobs.append(asyncio.create_task(_attempt(hop, address, request_uri, probe)))
    attempts = list(await asyncio.gather(*jobs))
    for transport in transports:
        per = {
            f: [a for a in attempts if a.transport == transport and a.family == f] for f in (6, 4)
        }
        for family in (6, 4):
            if per[family]:
                sink.add(sipcheck.options_check(transport, family, per[family]))
            elif (transport, family) not in skipped and any(h.transport == transport for h in hops):
                sink.add(_no_address(transport, family))
        parity = sipcheck.parity_check(transport, per[4], per[6])
        if parity is not None:
            sink.add(parity)
    await sipaccount.run(attempts, host, probe, sink)
    for family in (6, 4):
        done = [a for a in attempts if a.family == family]
        for check in (sipcheck.references_check(family, done), sipcheck.tls_check(family, done)):
            if check is not None:
                sink.add(check)


def _grouped(check: Check, transport: str) -> Check:
    return replace(check, group=f"sip.options.{transport}")


def _no_address(transport: str, family: int) -> Check:
    """No server address in ``family``: IPv6 fails (IPv6-only clients cannot reach it);
    IPv4 is not tested (the DNS check already warns)."""
    reason = "dns.no-aaaa" if family == 6 else "dns.no-a"
    return Check(
        "sip.options",
        V.FAIL if family == 6 else V.SKIPPED,
        reason,
        f"SIP over {transport.upper()}/IPv{family}: no server has an IPv{family} address",
        family=family,
        aspect=SIG,
        group=f"sip.options.{transport}",
        reach=True,
    )


async def _locate(uri: SipUri, transports: tuple[str, ...], probe: Probe, sink: Sink) -> list[Hop]:
    name = uri.host if isinstance(uri.host, str) else str(uri.host)
    sockets = [
        Hop(t, name, uri.port or DEFAULT_PORT[t], name) for t in transports if t in WEBSOCKETS
    ]
    plain = tuple(t for t in transports if t not in WEBSOCKETS)
    return [*(await _locate_srv(uri, plain, probe, sink) if plain else []), *sockets]


async def _locate_srv(
    uri: SipUri, transports: tuple[str, ...], probe: Probe, sink: Sink
) -> list[Hop]:
    host = uri.host
    if not isinstance(host, str) or uri.port is not None:
        name = host if isinstance(host, str) else str(host)
        return [Hop(t, name, uri.port or DEFAULT_PORT[t], name) for t in transports]
    resolver = probe.resolver
    naptr = await resolver.query(Query(host, RdType.NAPTR))
    srv_names: dict[str, str] = {}
    records = [r for r in naptr.records if isinstance(r, Naptr)]
    for r in sorted(records, key=lambda r: (r.order, r.preference)):
        t = _NAPTR_TRANSPORT.get(r.service.upper())
        if t in transports and r.flags.lower() == "s" and t not in srv_names:
            srv_names[t] = r.replacement
    if records:
        sink.add(
            Check(
                "sip.dns.naptr",
                V.INFO,
                "dns.records",
                f"NAPTR {host}: {len(records)} record(s)",
                aspect=SIG,
                evidence={
                    "records": [
                        f"{r.order} {r.preference} {r.service} {r.replacement}" for r in records
                    ]
                },
            )
        )
    for t in transports:
        srv_names.setdefault(t, f"{SRV_NAMES[t]}.{host}")
    answers = await asyncio.gather(
        *(resolver.query(Query(n, RdType.SRV)) for n in srv_names.values())
    )
    hops: list[Hop] = []
    shown: dict[str, list[str]] = {}
    for (t, name), answer in zip(srv_names.items(), answers, strict=True):
        srvs = sorted((r for r in answer.records if isinstance(r, Srv)), key=lambda r: r.priority)
        shown[name] = [f"{r.priority} {r.weight} {r.port} {r.target}" for r in srvs]
        hops += [Hop(t, r.target, r.port, host) for r in srvs if r.target not in ("", ".")]
    if hops:
        sink.add(
            Check(
                "sip.dns.srv",
                V.INFO,
                "dns.records",
                f"SRV for {host}: {sum(map(len, shown.values()))} record(s)",
                aspect=SIG,
                evidence={"srv": shown},
            )
        )
        return hops
    failed = [n for n, a in zip(srv_names.values(), answers, strict=True) if a.status.failed]
    sink.add(
        Check(
            "sip.dns.srv",
            V.WARN if failed else V.INFO,
            "dns.failure" if failed else "dns.no-srv",
            f"no SRV record for {host}"
            + (f" (DNS failed for {failed[0]})" if failed else "")
            + f": trying {host} on the default ports",
            aspect=SIG,
            evidence={"queried": list(srv_names.values())},
        )
    )
    return [Hop(t, host, DEFAULT_PORT[t], host) for t in transports]


async def _addresses(host: str, probe: Probe, sink: Sink) -> list[IPAddress]:
    """AAAA and A of an SRV target, with a DNS check per family."""
    try:
        return [ip_address(host)]
    except ValueError:
        pass
    six, four = await asyncio.gather(
        probe.resolver.query(Query(host, RdType.AAAA)), probe.resolver.query(Query(host, RdType.A))
    )
    v6, synthesised = await probe.split_synthesised(
        [r for r in six.records if isinstance(r, IPv6Address)]
    )
    v4 = [r for r in four.records if isinstance(r, IPv4Address)]
    group = f"sip.dns.{host}"
    if not v6 and not v4 and six.status is Status.NXDOMAIN:
        sink.add(
            Check(
                "sip.dns.address",
                V.FAIL,
                "dns.nxdomain",
                f"{host} does not exist",
                aspect=SIG,
                group=group,
            )
        )
        return []
    for family, found, answer in ((6, v6, six), (4, v4, four)):
        kind = "AAAA" if family == 6 else "A"
        if found:
            check = Check(
                "sip.dns.address",
                V.PASS,
                "dns.records",
                f"{host} {kind} {', '.join(map(str, found))}",
                family=family,
                aspect=SIG,
                group=group,
                evidence={"name": host, "type": kind, "records": [str(a) for a in found]},
            )
        elif answer.status.failed:
            check = Check(
                "sip.dns.address",
                V.FAIL,
                "dns.failure",
                f"{host} {kind}: DNS {answer.status.text}",
                family=family,
                aspect=SIG,
                group=group,
                evidence={"name": host},
            )
        elif family == 6:
            dns64 = f" (DNS64 made up {synthesised[0]})" if synthesised else ""
            check = Check(
                "sip.dns.address",
                V.FAIL,
                "dns.no-aaaa",
                f"{host} has no AAAA record{dns64}",
                family=6,
                aspect=SIG,
                group=group,
                evidence={"name": host, "synthesised": [str(a) for a in synthesised]},
            )
        else:
            check = Check(
                "sip.dns.address",
                V.WARN,
                "dns.no-a",
                f"{host} has no A record",
                family=4,
                aspect=SIG,
                group=group,
                evidence={"name": host},
            )
        sink.add(check)
    return [*v6, *v4]


async def _attempt(
    hop: Hop, server: IPAddress, request_uri: str, probe: Probe, *, via: IPAddress | None = None
) -> Attempt:
    """OPTIONS to ``server`` (through NAT64 at ``via`` when given)."""
    timeout = probe.settings.timeout
    address = via or server

    def request(local: tuple[IPAddress, int]) -> bytes:
        return sipcheck.options_request(request_uri, hop.transport, local)

    tls_error: tuple[str, str] | None = None
    async with probe.limit(address):
        try:
            if hop.transport == "udp":
                answer = await wire.udp_exchange(
                    address, hop.port, request, sipcheck.is_final_response, timeout
                )
            else:
                context: ssl.SSLContext | None = None
                if hop.transport in SECURE:
                    cafile = Path(probe.settings.cafile) if probe.settings.cafile else None
                    verifying = client_context(cafile)
                    tls_error = await wire.tls_certificate_error(
                        address, hop.port, verifying, hop.host, timeout, sip_domain=hop.domain
                    )
                    context = client_context(verify=False)
                server_name = hop.host if not sipcheck.is_ip(hop.host) else None
                if hop.transport in WEBSOCKETS:
                    answer = await wire.ws_exchange(
                        address,
                        hop.port,
                        request,
                        sipcheck.is_final_response,
                        timeout,
                        host=_host_header(hop),
                        path=probe.settings.ws_path,
                        tls=context,
                        server_name=server_name,
                    )
                else:
                    answer = await wire.stream_exchange(
                        address,
                        hop.port,
                        request,
                        sipcheck.frame_length,
                        timeout,
                        tls=context,
                        server_name=server_name,
                        accept=sipcheck.is_final_response,
                    )
        except wire.ProbeIOError as exc:
            if exc.reason.startswith("tls.") and tls_error is None:
                tls_error = (exc.reason, exc.text)
            return Attempt(
                hop.host,
                server,
                hop.port,
                hop.transport,
                b"",
                exc.elapsed,
                exc.reason,
                exc.text,
                tls_error,
                via=via,
            )
    parsed = sipcheck.read_answer(answer.data)
    return Attempt(
        hop.host,
        server,
        hop.port,
        hop.transport,
        answer.data,
        answer.elapsed,
        tls_error=tls_error,
        answer=parsed,
        via=via,
    )


def _host_header(hop: Hop) -> str:
    host = f"[{hop.host}]" if ":" in hop.host else hop.host
    return host if hop.port == DEFAULT_PORT[hop.transport] else f"{host}:{hop.port}"
