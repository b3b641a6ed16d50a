"""``rtc64 probe https://SITE``: the site and every host it sends a client to, per family.

Rules (decisions in ``webcheck``): the start host's AAAA/A; a GET over each family that
follows up to ``MAX_REDIRECTS`` redirects, each hop resolved in the same family (an
IPv6-only client cannot follow a redirect to a host without AAAA: the IPv6 fetch fails
with ``web.redirect-no-aaaa``); content parity between the families; AAAA for every host
the redirects and the page reveal (and ``--ice-server`` URIs); a WebSocket upgrade over
IPv6 to each revealed ``ws(s)://`` endpoint (at most three); AAAA answers a DNS64 made up
do not count as IPv6, and on an IPv6-only host with NAT64 the IPv4 fetch goes through it;
``--browser`` loads the page in headless Chromium (Playwright) as an IPv6-only client
wherever the probe runs: every request, loopback included, goes through ``io.v6proxy``
(AAAA only, IPv6 only; an IPv4 literal or a name without AAAA is refused and the reason
joins the failed request).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from urllib.parse import urlsplit

from rtc64.io.tls import client_context
from rtc64.io.v6proxy import V6Proxy
from rtc64.net.address import IPAddress
from rtc64.net.rfc3263 import Query, RdType
from rtc64.probe import webcheck as wc
from rtc64.probe import wire
from rtc64.probe.context import Probe, Sink
from rtc64.probe.verdict import Aspect, Check, Status, Template

MAX_REDIRECTS = 5
MAX_WEBSOCKETS = 3
CHROMIUM = "/usr/bin/chromium"


class TargetError(ValueError):
    """The URL is not usable."""


@dataclass
class Fetch:
    """One family's walk from the start URL to the final answer."""

    family: int
    hops: list[dict[str, object]] = field(default_factory=list)
    answer: wc.HttpAnswer | None = None
    reason: str = ""
    text: str = ""
    blocked_host: str = ""


async def _addresses(host: str, probe: Probe) -> tuple[list[IPAddress], list[IPAddress]]:
    try:
        literal = ip_address(host)
    except ValueError:
        pass
    else:
        return ([literal], []) if literal.version == 6 else ([], [literal])
    six, four = await asyncio.gather(
        probe.resolver.query(Query(host, RdType.AAAA)), probe.resolver.query(Query(host, RdType.A))
    )
    real, _ = await probe.split_synthesised([r for r in six.records if isinstance(r, IPv6Address)])
    return list(real), [r for r in four.records if isinstance(r, IPv4Address)]


async def probe_web(url: str, probe: Probe, sink: Sink) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetError(f"{url!r}: expected http(s)://HOST[/PATH]")
    host = parts.hostname.lower()
    v6, v4 = await _addresses(host, probe)
    for family, found in ((6, v6), (4, v4)):
        make = Template(
            "web.dns",
            Aspect.WEB,
            family,
            f"web.dns.{host}",
            {"name": host, "records": [str(a) for a in found]},
        )
        if found:
            sink.add(make(Status.PASS, "dns.records", f"{host}: {', '.join(map(str, found))}"))
        elif family == 6:
            sink.add(make(Status.FAIL, "dns.no-aaaa", f"{host} has no AAAA record"))
        else:
            sink.add(make(Status.WARN, "dns.no-a", f"{host} has no A record"))
    fetches: dict[int, Fetch] = {}
    for family in (6, 4):
        skip = probe.family_skip(family, "web.http", Aspect.WEB, group="web.http")
        translated = skip is not None and family == 4 and skip.reason == "local.no-ipv4" and v4
        if translated and await probe.via_nat64(v4[0]) is not None:
            skip = None  # IPv4 through this network's NAT64
        if skip is not None:
            sink.add(skip)
            continue
        fetches[family] = await _walk(url, family, probe)
        sink.add(_http_check(url, fetches[family]))
    parity = _parity(fetches)
    if parity is not None:
        sink.add(parity)
    needed: dict[str, wc.Needed] = {}
    for fetch in fetches.values():
        for hop in fetch.hops[1:]:
            h = str(hop["host"])
            needed.setdefault(h, wc.Needed(h, Aspect.WEB, "a redirect", str(hop["url"])))
        if fetch.answer is not None:
            final = str(fetch.hops[-1]["url"]) if fetch.hops else url
            for n in wc.revealed(fetch.answer.body, final):
                needed.setdefault(f"{n.aspect}:{n.host}", n)
    for ice in probe.settings.ice_servers:
        h = wc.host_of(ice)
        needed.setdefault(f"media:{h}", wc.Needed(h, Aspect.MEDIA, "--ice-server", ice))
    await asyncio.gather(*(_needed_check(n, host, probe, sink) for n in needed.values()))
    sockets = [n for n in needed.values() if n.url.lower().startswith(("ws://", "wss://"))]
    await asyncio.gather(*(_websocket(n, probe, sink) for n in sockets[:MAX_WEBSOCKETS]))
    if probe.settings.browser:
        sink.add(await _browser(url, probe))


async def _walk(url: str, family: int, probe: Probe) -> Fetch:
    fetch = Fetch(family)
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(current)
        host = (parts.hostname or "").lower()
        v6, v4 = await _addresses(host, probe)
        mine = v6 if family == 6 else v4
        if not mine:
            fetch.reason = (
                "web.redirect-no-aaaa"
                if fetch.hops and family == 6
                else ("dns.no-aaaa" if family == 6 else "dns.no-a")
            )
            fetch.blocked_host = host
            fetch.text = f"{host} has no {'AAAA' if family == 6 else 'A'} record"
            fetch.hops.append({"url": current, "host": host, "error": fetch.text})
            return fetch
        address = mine[0]
        target = await probe.via_nat64(address) if family == 4 else None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        data, _ = wc.request(current)
        tls = None
        if parts.scheme == "https":
            tls = client_context(Path(probe.settings.cafile) if probe.settings.cafile else None)
        try:
            async with probe.limit(address):
                raw = await wire.stream_exchange(
                    target or address,
                    port,
                    data,
                    lambda _b: None,
                    probe.settings.timeout,
                    tls=tls,
                    server_name=host if not _is_ip(host) else None,
                    until_close=True,
                )
        except wire.ProbeIOError as exc:
            fetch.reason, fetch.text = exc.reason, exc.text
            fetch.hops.append(
                {"url": current, "host": host, "address": str(address), "error": exc.text}
            )
            return fetch
        answer = wc.read_answer(raw.data)
        hop: dict[str, object] = {
            "url": current,
            "host": host,
            "address": str(address),
            "seconds": round(raw.elapsed, 3),
        }
        if target is not None:
            hop["via_nat64"] = str(target)
        if answer is None:
            fetch.reason, fetch.text = "web.http-error", "not an HTTP answer"
            fetch.hops.append(hop)
            return fetch
        hop["status"] = answer.status
        fetch.hops.append(hop)
        nxt = wc.redirect_target(current, answer)
        if nxt is None:
            fetch.answer = answer
            return fetch
        current = nxt
    fetch.reason, fetch.text = "web.http-error", f"more than {MAX_REDIRECTS} redirects"
    return fetch


def _is_ip(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


def _http_check(url: str, fetch: Fetch) -> Check:
    # A site that answered and then redirected somewhere unreachable is reachable.
    first_answered = bool(fetch.hops) and "status" in fetch.hops[0]
    reach = fetch.answer is not None or not first_answered
    make = Template(
        "web.http", Aspect.WEB, fetch.family, "web.http", {"hops": fetch.hops}, reach=reach
    )
    where = f"GET {url} over IPv{fetch.family}"
    if fetch.answer is not None and fetch.answer.status < 400:
        via = f" after {len(fetch.hops) - 1} redirect(s)" if len(fetch.hops) > 1 else ""
        return make(
            Status.PASS,
            "web.http-ok",
            f"{where}: {fetch.answer.status}{via}, {len(fetch.answer.body)} bytes",
        )
    if fetch.answer is not None:
        return make(Status.FAIL, "web.http-error", f"{where}: HTTP {fetch.answer.status}")
    literal = _is_ip(fetch.blocked_host) if fetch.blocked_host else False
    return make(
        Status.FAIL,
        fetch.reason or "web.http-error",
        f"{where}: {fetch.text}",
        ipv4_literal=literal,
    )


def _parity(fetches: dict[int, Fetch]) -> Check | None:
    a6 = fetches.get(6)
    a4 = fetches.get(4)
    if a6 is None or a4 is None or a6.answer is None or a4.answer is None:
        return None
    evidence = {
        "ipv6": {"status": a6.answer.status, "bytes": len(a6.answer.body)},
        "ipv4": {"status": a4.answer.status, "bytes": len(a4.answer.body)},
    }
    make = Template("web.parity", Aspect.WEB, None, "web.parity", evidence)
    if wc.similar(a6.answer, a4.answer):
        return make(Status.PASS, "web.parity", "the same page over IPv4 and IPv6")
    return make(
        Status.WARN,
        "web.parity-differs",
        f"IPv6 gives {a6.answer.status} ({len(a6.answer.body)} bytes), IPv4 gives "
        f"{a4.answer.status} ({len(a4.answer.body)} bytes)",
    )


async def _needed_check(need: wc.Needed, start: str, probe: Probe, sink: Sink) -> None:
    if need.host == start:
        return
    evidence: dict[str, object] = {"host": need.host, "found": need.found, "url": need.url}
    make = Template("web.needs", need.aspect, 6, f"web.needs.{need.host}", evidence)
    if _is_ip(need.host):
        if ip_address(need.host).version == 4:
            sink.add(
                make(
                    Status.FAIL,
                    "web.ipv4-literal",
                    f"{need.url} ({need.found}) is an IPv4 literal",
                    ipv4_literal=True,
                )
            )
        return
    v6, v4 = await _addresses(need.host, probe)
    evidence["aaaa"] = [str(a) for a in v6]
    evidence["a"] = [str(a) for a in v4]
    if v6:
        sink.add(make(Status.PASS, "dns.records", f"{need.host} ({need.found}) has AAAA"))
    elif need.found == "a redirect":
        sink.add(
            make(
                Status.FAIL,
                "web.redirect-no-aaaa",
                f"{need.host} ({need.found}) has no AAAA: IPv6-only clients stop there",
            )
        )
    else:
        sink.add(
            make(Status.FAIL, "web.host-no-aaaa", f"{need.host} ({need.found}) has no AAAA record")
        )


async def _websocket(need: wc.Needed, probe: Probe, sink: Sink) -> None:
    parts = urlsplit(need.url)
    host = (parts.hostname or "").lower()
    make = Template(
        "web.websocket", Aspect.SIGNALLING, 6, f"web.websocket.{host}", {"url": need.url}
    )
    v6, _ = await _addresses(host, probe)
    if not v6:
        return  # the AAAA check already failed
    skip = probe.family_skip(6, "web.websocket", Aspect.SIGNALLING, destination=v6[0])
    if skip is not None:
        sink.add(skip)
        return
    secure = parts.scheme.lower() == "wss"
    port = parts.port or (443 if secure else 80)
    data, _ = wc.request(
        need.url.replace("wss://", "https://", 1).replace("ws://", "http://", 1), websocket=True
    )
    tls = (
        client_context(Path(probe.settings.cafile) if probe.settings.cafile else None)
        if secure
        else None
    )
    try:
        async with probe.limit(v6[0]):
            raw = await wire.stream_exchange(
                v6[0],
                port,
                data,
                wc.head_length,
                probe.settings.timeout,
                tls=tls,
                server_name=host if not _is_ip(host) else None,
            )
    except wire.ProbeIOError as exc:
        sink.add(
            make(Status.FAIL, "web.websocket-failed", f"WebSocket {need.url} over IPv6: {exc.text}")
        )
        return
    answer = wc.read_answer(raw.data)
    if answer is not None and answer.status == 101:
        sink.add(make(Status.PASS, "web.websocket-ok", f"WebSocket {need.url} upgrades over IPv6"))
    else:
        status = answer.status if answer else "no HTTP answer"
        sink.add(
            make(
                Status.FAIL,
                "web.websocket-failed",
                f"WebSocket {need.url} over IPv6: {status} instead of 101",
            )
        )


async def _browser(url: str, probe: Probe) -> Check:
    make = Template("web.browser", Aspect.WEB, None, "web.browser")
    try:
        from playwright.async_api import async_playwright  # noqa: PLC0415
    except ImportError:
        return make(Status.SKIPPED, "web.browser-unavailable", "--browser needs Playwright")
    if shutil.which(CHROMIUM) is None:
        return make(Status.SKIPPED, "web.browser-unavailable", f"--browser needs {CHROMIUM}")
    failed: list[str] = []
    loaded = 0

    async def aaaa(host: str) -> list[IPv6Address]:
        answer = await probe.resolver.query(Query(host, RdType.AAAA))
        return [r for r in answer.records if isinstance(r, IPv6Address)]

    def note(request_url: str, failure: object) -> None:
        host = urlsplit(request_url).hostname or ""
        why = proxy.reason_for(host)
        failed.append(f"{request_url} ({failure}{'; proxy: ' + why if why else ''})")

    def refused(request_url: str, status: int) -> None:
        if status == 502 and proxy.reason_for(urlsplit(request_url).hostname or ""):
            note(request_url, "502 from the IPv6-only proxy")

    try:
        async with V6Proxy(aaaa, timeout=probe.settings.timeout) as proxy, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    f"--proxy-server={proxy.url}",
                    "--proxy-bypass-list=<-loopback>",
                ],
            )
            try:
                page = await browser.new_page(ignore_https_errors=probe.settings.cafile is not None)
                page.on("requestfailed", lambda r: note(r.url, r.failure))
                # A refused plain-HTTP request is the proxy's 502 response, not a failure.
                page.on("response", lambda r: refused(r.url, r.status))
                response = await page.goto(
                    url, timeout=probe.settings.timeout * 4000, wait_until="load"
                )
                loaded = response.status if response is not None else 0
            finally:
                await browser.close()
    except Exception as exc:  # Playwright raises its own error types
        failed.append(f"{url} ({str(exc).splitlines()[0][:200]})")
    evidence = {"failed": failed[:50], "status": loaded}
    make = Template("web.browser", Aspect.WEB, None, "web.browser", evidence)
    if failed:
        return make(
            Status.FAIL,
            "web.browser-failed",
            f"headless Chromium: {len(failed)} request(s) failed, first {failed[0]}",
        )
    return make(Status.PASS, "web.browser-ok", f"headless Chromium loaded the page ({loaded})")
