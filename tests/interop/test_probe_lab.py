"""``rtc64 probe`` against real servers in network namespaces, verdicts asserted per lab case.

The probe runs on the lab's dual-stack host (both families, like an engineer's laptop) and
as an IPv6-only client (``--family 6``). The gateway namespace holds the world:

- unbound serving ``v4.test`` (SIP SRV -> ``pbx.v4.test``, A only; ``login``, ``turn``
  A only), ``both.test`` (SIP SRV -> ``a`` with AAAA+A, and ``b`` with an AAAA where
  nothing listens: the broken IPv6 SRV target) and ``meet.test`` (AAAA+A);
- Kamailio on both families answering OPTIONS with ``Contact: <sip:$Ri:$Rp>`` (Kamailio
  writes an IPv6 $Ri without brackets) and an IPv4 Record-Route, REGISTER with digest
  (password ``secret``), and INVITE with an SDP answer that has only an IPv4 address;
- coturn relaying only IPv4 (``--relay-ip`` 10.64.4.1) with a long-term user, on UDP/TCP
  3478 and TLS 5349;
- a Python SIP-over-TLS responder on ``a.both.test:5061``: over IPv4 a certificate the
  test CA signed, over IPv6 a self-signed one (the per-family certificate finding);
- rtc64's own gateway answering OPTIONS over WebSocket (ws 8088, wss 8443) for ``ws.test``;
- a Python web server: ``http://meet.test:8080/`` (and ``https://meet.test:8444/``)
  redirects to the IPv4-only
  ``login.v4.test:8081``, whose page names ``ws://meet.test:8080/ws`` (answers 101) and
  ``turn:turn.v4.test``.

``python -m tests.interop.test_probe_lab web CERTDIR`` runs the web server and the TLS
responder inside a namespace.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import issue, san
from tests.interop.lab import V4_GW, V6_DS_GW, V6_GW, Lab
from tests.interop.nat64lab import PYTHON, ROOT, RTC64, Unbound, wait_for, zone
from tests.interop.peers import wait_port

pytestmark = pytest.mark.interop

LAB_TOOLS = ("kamailio", "unbound", "unbound-checkconf", "turnserver", "ss")
LAB_DUAL_STACK = True

ZONES = {
    "v4.test": zone(
        "v4.test",
        f"_sip._udp SRV 0 0 5060 pbx\n_sip._tcp SRV 0 0 5060 pbx\npbx A {V4_GW}\n"
        f"login A {V4_GW}\nturn A {V4_GW}\n",
    ),
    "both.test": zone(
        "both.test",
        "_sip._udp SRV 10 0 5060 a\n_sip._udp SRV 20 0 5060 b\n_sip._tcp SRV 10 0 5060 a\n"
        "_sips._tcp SRV 10 0 5061 a\n"
        f"a AAAA {V6_GW}\na A {V4_GW}\nb AAAA {V6_DS_GW}\n",
    ),
    "srvonly.test": zone("srvonly.test", "_sips._tcp SRV 10 0 5061 a.both.test.\n"),
    "ws.test": zone("ws.test", f"@ AAAA {V6_GW}\n@ A {V4_GW}\n"),
    "meet.test": zone(
        "meet.test", f"@ AAAA {V6_GW}\n@ A {V4_GW}\nturn AAAA {V6_GW}\nturn A {V4_GW}\n"
    ),
}

# Kamailio's INVITE answer: media on IPv4 only, whatever the family of the request.
SDP_ANSWER = "\\r\\n".join(
    ["v=0", "o=- 1 1 IN IP4 V4_GW", "s=-", "c=IN IP4 V4_GW", "t=0 0", "m=audio 30000 RTP/AVP 0", ""]
)
KAMAILIO = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
loadpath "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "sl.so"
loadmodule "textops.so"
loadmodule "pv.so"
loadmodule "auth.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
modparam("usrloc", "db_mode", 0)
request_route {
    if (is_method("REGISTER")) {
        if (!pv_www_authenticate("$td", "secret", "0")) { www_challenge("$td", "1"); exit; }
        save("location");
        exit;
    }
    if (is_method("INVITE")) {
        set_reply_body("SDP_ANSWER", "application/sdp");
        sl_send_reply("200", "OK");
        exit;
    }
    if (is_method("ACK")) { exit; }
    if (is_method("BYE")) { sl_send_reply("200", "OK"); exit; }
    if (is_method("OPTIONS")) {
        append_to_reply("Contact: <sip:$Ri:$Rp>\\r\\n");
        append_to_reply("Record-Route: <sip:V4_GW;lr>\\r\\n");
        sl_send_reply("200", "OK");
        exit;
    }
    sl_send_reply("404", "Not here");
}
""".replace("SDP_ANSWER", SDP_ANSWER).replace("V4_GW", str(V4_GW))

LOGIN_PAGE = (
    "<html><body><h1>Sign in</h1><script>"
    'const signalling = "ws://meet.test:8080/ws";'
    'const ice = [{urls: "turn:turn.v4.test:3478"}];'
    "</script></body></html>"
)


class World:
    def __init__(self, net: Lab, workdir: Path) -> None:
        self.net = net
        self.workdir = workdir
        self.dns = Unbound(net.gw, workdir / "unbound", ZONES, listen=(V6_GW, V4_GW))
        self.ca = make_certificates(workdir)
        cfg = workdir / "kamailio.cfg"
        cfg.write_text(KAMAILIO)
        listen = []
        for proto in ("udp", "tcp"):
            listen += ["-l", f"{proto}:[{V6_GW}]:5060", "-l", f"{proto}:{V4_GW}:5060"]
        net.gw.popen(
            ["kamailio", "-f", str(cfg), "-DD", "-E", *listen, "-Y", str(workdir),
             "-P", str(workdir / "kamailio.pid"), "-w", str(workdir)],
            log=workdir / "kamailio.log",
        )  # fmt: skip
        wait_port(net.gw, "udp", 5060)
        wait_port(net.gw, "tcp", 5060)
        net.gw.popen(
            ["turnserver", "-n", f"--listening-ip={V6_GW}", f"--listening-ip={V4_GW}",
             f"--relay-ip={V4_GW}", "--listening-port=3478", "--lt-cred-mech",
             "--user=probe:secret", "--realm=lab.test", "--no-dtls", "--no-cli",
             "--tls-listening-port=5349",
             f"--cert={workdir / 'signed.pem'}", f"--pkey={workdir / 'signed.key'}",
             "--log-file=stdout", "--simple-log", "--min-port=49152", "--max-port=49300",
             f"--pidfile={workdir / 'turnserver.pid'}", f"--userdb={workdir / 'turndb'}"],
            log=workdir / "turnserver.log",
        )  # fmt: skip
        wait_port(net.gw, "udp", 3478)
        self.web_log = workdir / "web.log"
        web = net.gw.popen(
            [PYTHON, "-m", "tests.interop.test_probe_lab", "web", str(workdir)],
            log=self.web_log,
            cwd=ROOT,
        )

        def ready() -> bool:
            if web.poll() is not None:
                raise RuntimeError(f"web server exited: {self.web_log.read_text()[-2000:]}")
            return "ready" in self.web_log.read_text()

        wait_for("web server", ready, timeout=15)
        # rtc64's own gateway as the SIP-over-WebSocket server (RFC 7118), both families.
        config = workdir / "rtc64.toml"
        config.write_text(
            f'[sip]\ntls_cert = "{workdir / "signed.pem"}"\ntls_key = "{workdir / "signed.key"}"\n'
        )
        listens = []
        for address in (f"[{V6_GW}]", str(V4_GW)):
            listens += ["--sip-listen", f"ws:{address}:8088", "--sip-listen", f"wss:{address}:8443"]
        net.gw.popen(
            [RTC64, "--config", str(config), "--data-dir", str(workdir / "rtc64"), "serve",
             "--only", "sip", "--domain", "ws.test", *listens],
            log=workdir / "rtc64.log",
        )  # fmt: skip
        wait_port(net.gw, "tcp", 8443, timeout=20)

    def probe(self, *args: str, family: str | None = None) -> tuple[int, dict[str, object]]:
        argv = [RTC64, "probe", "--json", "--dns-server", self.dns.server, "--timeout", "2",
                "--deadline", "25", "--ra-listen", "0", *args]  # fmt: skip
        if family:
            argv += ["--family", family]
        proc = self.net.dual.run(*argv, check=False)
        assert proc.stdout, proc.stderr
        return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def world(net: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    workdir = tmp_path_factory.mktemp("probe-lab")
    try:
        yield World(net, workdir)
    finally:
        for host in net.hosts:
            host.stop_all()


def checks(doc: dict[str, object], target: int = 0) -> list[dict[str, object]]:
    targets = doc["targets"]
    assert isinstance(targets, list)
    found = targets[target]["checks"]
    assert isinstance(found, list)
    return found


def find(doc: dict[str, object], check_id: str, **match: object) -> list[dict[str, object]]:
    return [c for c in checks(doc) if c["id"] == check_id
            and all(c.get(k) == v for k, v in match.items())]  # fmt: skip


def matrix(doc: dict[str, object]) -> dict[str, dict[str, str]]:
    targets = doc["targets"]
    assert isinstance(targets, list)
    result: dict[str, dict[str, str]] = targets[0]["matrix"]
    return result


# ---- the web server run inside the gateway namespace ----------------------------------


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    port = writer.get_extra_info("sockname")[1]
    port = 8080 if port == 8444 else port  # https://meet.test:8444 serves the same
    if port == 8080 and path == "/ws" and headers.get("upgrade", "").lower() == "websocket":
        accept = base64.b64encode(
            hashlib.sha1(  # RFC 6455 §4.2.2 says SHA-1
                (headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()
            ).digest()
        ).decode()
        reply = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n")  # fmt: skip
    elif port == 8080 and path == "/app":
        # The IPv6 listener serves a stale maintenance page, the IPv4 one the application.
        ipv6 = ":" in str(writer.get_extra_info("sockname")[0])
        page = "<p>down for maintenance</p>" if ipv6 else LOGIN_PAGE * 3
        reply = (f"HTTP/1.1 200 OK\r\nContent-Length: {len(page)}\r\nConnection: close"
                 f"\r\n\r\n{page}")  # fmt: skip
    elif port == 8080 and path == "/":
        reply = ("HTTP/1.1 302 Found\r\nLocation: http://login.v4.test:8081/sso\r\n"
                 "Content-Length: 0\r\nConnection: close\r\n\r\n")  # fmt: skip
    elif port == 8081 and path == "/sso":
        reply = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                 f"{len(LOGIN_PAGE)}\r\nConnection: close\r\n\r\n{LOGIN_PAGE}")  # fmt: skip
    else:
        reply = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    writer.write(reply.encode())
    await writer.drain()
    writer.close()


async def _sip_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer one OPTIONS with 200, echoing the dialog headers (RFC 3261 §8.2.6.2)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
        return
    keep = [
        line
        for line in head.split(b"\r\n")[1:]
        if line.split(b":")[0].strip().lower() in (b"via", b"from", b"to", b"call-id", b"cseq")
    ]
    reply = b"\r\n".join(
        [b"SIP/2.0 200 OK", *keep, b"Allow: OPTIONS", b"Content-Length: 0", b"", b""]
    )
    writer.write(reply)
    await writer.drain()
    writer.close()


def _tls(certdir: Path, name: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certdir / f"{name}.pem", certdir / f"{name}.key")
    return context


async def _web(certdir: Path) -> None:
    servers = [
        await asyncio.start_server(_handle, str(V6_GW), 8080),
        await asyncio.start_server(_handle, str(V4_GW), 8080),
        await asyncio.start_server(_handle, str(V4_GW), 8081),
        await asyncio.start_server(_handle, str(V6_GW), 8444, ssl=_tls(certdir, "signed")),
        await asyncio.start_server(_handle, str(V4_GW), 8444, ssl=_tls(certdir, "signed")),
        await asyncio.start_server(_sip_tls, str(V4_GW), 5061, ssl=_tls(certdir, "signed")),
        await asyncio.start_server(_sip_tls, str(V6_GW), 5061, ssl=_tls(certdir, "selfsigned")),
    ]
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


def make_certificates(workdir: Path) -> Path:
    """A test CA, a leaf it signs for a.both.test, and a self-signed leaf with the same name."""
    ca = issue(workdir, "ca", "rtc64 probe test CA", ca=True)
    # the SIP domain both.test too (RFC 5922: a sips: certificate names the domain);
    # srvonly.test's SRV points at a.both.test, which it does not name
    names = san("a.both.test", "both.test", "ws.test", "meet.test")
    issue(workdir, "signed", "a.both.test", names=names, signer=ca)
    issue(workdir, "selfsigned", "a.both.test", names=san("a.both.test"))
    return workdir / "ca.pem"


if __name__ == "__main__":
    if sys.argv[1:2] == ["web"]:
        asyncio.run(_web(Path(sys.argv[2])))


# ---- the tests ------------------------------------------------------------------------


def test_ipv4_only_sip_domain_fails_with_no_aaaa(world: World) -> None:
    code, doc = world.probe("sip:v4.test", "--transport", "udp", "--transport", "tcp")
    assert code == 1, doc
    dns6 = find(doc, "sip.dns.address", family=6)
    assert [c["reason"] for c in dns6] == ["dns.no-aaaa"]
    opt6 = find(doc, "sip.options", family=6)
    assert {c["status"] for c in opt6} == {"fail"}
    assert {c["reason"] for c in opt6} == {"dns.no-aaaa"}
    opt4 = find(doc, "sip.options", family=4)
    assert {c["status"] for c in opt4} == {"pass"}, opt4
    assert matrix(doc)["signalling"] == {"ipv6-only": "fail", "dual-stack": "pass",
                                         "nat64": "warn"}  # fmt: skip


def test_dual_stack_sip_domain_with_a_broken_ipv6_srv_target(world: World) -> None:
    code, doc = world.probe("sip:both.test", "--transport", "udp", "--transport", "tcp")
    assert code == 1, doc
    udp6 = find(doc, "sip.options", family=6, status="warn")
    assert [c["reason"] for c in udp6] == ["sip.srv-target-broken"], checks(doc)
    assert "b.both.test" in str(udp6[0]["message"])
    tcp6 = [c for c in find(doc, "sip.options", family=6) if "TCP" in str(c["message"])]
    assert [c["status"] for c in tcp6] == ["pass"]
    assert {c["status"] for c in find(doc, "sip.parity")} == {"pass"}
    refs6 = find(doc, "sip.references", family=6)
    assert [c["reason"] for c in refs6] == ["sip.ipv6-unbracketed"], refs6
    refs4 = find(doc, "sip.references", family=4)
    assert [c["status"] for c in refs4] == ["pass"]


def test_ipv4_only_relay_turn_gives_the_family_finding(world: World) -> None:
    code, doc = world.probe("turn:meet.test:3478?transport=udp", "--turn-user", "probe",
                            "--turn-password", "secret")  # fmt: skip
    assert code == 1, doc
    for family in (6, 4):
        assert [c["status"] for c in find(doc, "turn.binding", family=family)] == ["pass"]
        reach = find(doc, "turn.allocate", family=family)
        assert [c["reason"] for c in reach] == ["turn.auth-required"], reach
    relay6 = find(doc, "turn.relay", family=6)
    assert relay6 and {c["reason"] for c in relay6} == {"turn.relay-no-ipv6"}, relay6
    relay4 = find(doc, "turn.relay", family=4)
    assert relay4 and {c["status"] for c in relay4} == {"pass"}, relay4
    echo4 = find(doc, "turn.echo", family=4)
    assert echo4 and {c["reason"] for c in echo4} == {"turn.echo-ok"}, echo4
    assert {c["reason"] for c in find(doc, "turn.dual")} == {"turn.no-dual-allocation"}
    browser = find(doc, "turn.default-relay")
    assert len(browser) == 2 and all("IPv4" in str(c["message"]) for c in browser), browser
    assert matrix(doc)["media"]["ipv6-only"] == "fail"


def test_turn_without_credentials_stops_at_401_and_skips_relays(world: World) -> None:
    code, doc = world.probe("turn:meet.test:3478?transport=tcp", family="6")
    assert code == 0, doc
    assert [c["reason"] for c in find(doc, "turn.allocate", family=6)] == ["turn.auth-required"]
    assert {c["reason"] for c in find(doc, "turn.relay")} == {"turn.no-credentials"}
    skipped4 = find(doc, "turn.binding", family=4)
    assert [c["reason"] for c in skipped4] == ["local.family-excluded"]


def test_web_login_redirect_to_an_ipv4_only_host(world: World) -> None:
    code, doc = world.probe("http://meet.test:8080/")
    assert code == 1, doc
    http6 = find(doc, "web.http", family=6)
    assert [c["reason"] for c in http6] == ["web.redirect-no-aaaa"], http6
    assert [c["status"] for c in find(doc, "web.http", family=4)] == ["pass"]
    needs = {c["evidence"]["host"]: c["reason"] for c in find(doc, "web.needs")}  # type: ignore[index]
    assert needs["login.v4.test"] == "web.redirect-no-aaaa"
    assert needs["turn.v4.test"] == "web.host-no-aaaa"
    assert [c["reason"] for c in find(doc, "web.websocket")] == ["web.websocket-ok"]
    assert matrix(doc)["web"] == {"ipv6-only": "fail", "dual-stack": "pass", "nat64": "warn"}


def test_unreachable_target_exit_code_and_html_report(world: World, tmp_path: Path) -> None:
    html = world.workdir / "report.html"
    code, doc = world.probe("sip:nowhere.v4.test", "--transport", "udp", "--html", str(html))
    assert code == 3, doc
    assert {c["reason"] for c in find(doc, "sip.dns.address")} == {"dns.nxdomain"}
    page = html.read_text()
    assert "sip:nowhere.v4.test" in page and "dns.nxdomain" in page


def test_tls_certificate_judged_per_family(world: World) -> None:
    code, doc = world.probe("sips:both.test", "--cafile", str(world.ca))
    assert code == 1, doc
    for family in (6, 4):
        assert [c["status"] for c in find(doc, "sip.options", family=family)] == ["pass"]
    assert [c["reason"] for c in find(doc, "sip.tls", family=4)] == ["tls.valid"]
    assert [c["reason"] for c in find(doc, "sip.tls", family=6)] == ["tls.untrusted"]
    assert matrix(doc)["signalling"]["ipv6-only"] == "fail"


def test_tls_certificate_must_name_the_sip_domain(world: World) -> None:
    """RFC 5922 §7.2: sips:srvonly.test is served by a.both.test, whose CA-signed
    certificate names a.both.test but not srvonly.test: a name mismatch, said as such."""
    code, doc = world.probe("sips:srvonly.test", "--cafile", str(world.ca))
    assert code == 1, doc
    v4 = find(doc, "sip.tls", family=4)
    assert [c["reason"] for c in v4] == ["tls.name-mismatch"], v4
    assert "RFC 5922" in str(v4[0]["message"])


def test_browser_on_an_ipv6_only_host_reports_the_failed_login(world: World) -> None:
    """Headless Chromium in the IPv6-only namespace (its DNS: the lab's unbound through
    /etc/netns/NS/resolv.conf) cannot follow the login redirect to the IPv4-only host."""
    netns = Path("/etc/netns") / world.net.v6.ns
    netns.mkdir(parents=True, exist_ok=False)
    try:
        (netns / "resolv.conf").write_text(f"nameserver {V6_GW}\n")
        argv = [RTC64, "probe", "--json", "--dns-server", world.dns.server, "--timeout", "3",
                "--deadline", "28", "--browser", "http://meet.test:8080/"]  # fmt: skip
        proc = world.net.v6.run(*argv, check=False)
    finally:
        (netns / "resolv.conf").unlink(missing_ok=True)
        netns.rmdir()
    assert proc.stdout, proc.stderr
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1, doc
    browser = find(doc, "web.browser")
    assert [c["reason"] for c in browser] == ["web.browser-failed"], browser
    assert "login.v4.test" in json.dumps(browser[0]["evidence"])
    # This host has no IPv4: the IPv4 checks are skipped, not failed.
    assert [c["reason"] for c in find(doc, "web.http", family=4)] == ["local.no-ipv4"]


def test_browser_on_the_dual_stack_host_is_still_an_ipv6_only_client(world: World) -> None:
    """From the dual-stack host --browser goes through the probe's IPv6-only proxy: the
    IPv4-only login host is still a failed request, and the proxy says why."""
    code, doc = world.probe("--browser", "http://meet.test:8080/")
    assert code == 1, doc
    browser = find(doc, "web.browser")
    assert [c["reason"] for c in browser] == ["web.browser-failed"], browser
    failed = json.dumps(browser[0]["evidence"])
    assert "login.v4.test" in failed and "no AAAA" in failed, failed
    # The probe's own IPv4 fetch still works from this host.
    assert [c["status"] for c in find(doc, "web.http", family=4)] == ["pass"]


def test_sip_over_websocket_on_both_families(world: World) -> None:
    """Two targets in one run: ws and wss (RFC 7118) to rtc64's gateway, both families."""
    code, doc = world.probe(
        "sip:ws.test:8088;transport=ws", "sips:ws.test:8443;transport=wss", "--cafile",
        str(world.ca),
    )  # fmt: skip
    targets = doc["targets"]
    assert isinstance(targets, list) and len(targets) == 2
    for index, transport in enumerate(("WS", "WSS")):
        found = checks(doc, index)
        options = [c for c in found if c["id"] == "sip.options"]
        assert len(options) == 2 and {c["status"] for c in options} == {"pass"}, found
        assert all(transport in str(c["message"]) for c in options)
        assert [c["status"] for c in found if c["id"] == "sip.parity"] == ["pass"]
        assert targets[index]["matrix"]["signalling"] == dict.fromkeys(
            ("ipv6-only", "dual-stack", "nat64"), "pass"
        )
    assert {c["reason"] for c in checks(doc, 1) if c["id"] == "sip.tls"} == {"tls.valid"}
    assert code == 0, doc


def test_register_and_test_call_find_ipv4_media_for_ipv6_clients(world: World) -> None:
    code, doc = world.probe("sip:both.test", "--transport", "udp", "--user", "alice",
                            "--password", "secret", "--call", "sip:echo@both.test")  # fmt: skip
    assert code == 1, doc
    for family in (6, 4):
        reg = find(doc, "sip.register", family=family)
        assert [c["reason"] for c in reg] == ["sip.registered"], json.dumps(reg)
    call6 = find(doc, "sip.call", family=6)
    assert [c["reason"] for c in call6] == ["sip.sdp-foreign-family"], call6
    assert [c["reason"] for c in find(doc, "sip.call", family=4)] == ["sip.sdp-private"]
    assert matrix(doc)["media"] == {"ipv6-only": "fail", "dual-stack": "warn", "nat64": "fail"}
    code, doc = world.probe("sip:both.test", "--transport", "udp", "--user", "alice",
                            "--password", "wrong")  # fmt: skip
    assert {c["reason"] for c in find(doc, "sip.register")} == {"sip.register-failed"}


def test_rtc64_turn_relays_both_families(world: World) -> None:
    """rtc64's own TURN server (both relay families, REST secret): the probe finds both
    relays, the dual allocation and a relayed echo through each family."""
    pytest.importorskip("rtc64.turnserver.service", reason="rtc64's TURN service not merged")
    work = world.workdir / "rtc64-turn"
    listens = [f"--turn-listen=udp:[{V6_GW}]:3490", f"--turn-listen=udp:{V4_GW}:3490"]
    relays = [f"--turn-relay-address={V6_GW}", f"--turn-relay-address={V4_GW}"]
    allow = ["--turn-allow-peer=10.64.0.0/16", "--turn-allow-peer=fd00:64::/32"]
    proc = world.net.gw.popen(
        [RTC64, "--data-dir", str(work), "serve", "--only", "turn", *listens, *relays, *allow,
         "--turn-secret", "s3cret", "--web-listen", "[::1]:0"],  # the lab's gateway has 8064
        log=world.workdir / "rtc64-turn.log",
    )  # fmt: skip
    try:
        wait_port(world.net.gw, "udp", 3490, timeout=20)
        code, doc = world.probe("turn:meet.test:3490?transport=udp", "--turn-secret", "s3cret")
        assert code == 0, json.dumps(checks(doc), indent=1)
        for family in (6, 4):
            relay = find(doc, "turn.relay", family=family)
            assert relay and {c["status"] for c in relay} == {"pass"}, relay
            echo = find(doc, "turn.echo", family=family)
            assert echo and {c["reason"] for c in echo} == {"turn.echo-ok"}, echo
        assert {c["status"] for c in find(doc, "turn.dual")} == {"pass"}
        assert matrix(doc)["media"] == dict.fromkeys(("ipv6-only", "dual-stack", "nat64"), "pass")
    finally:
        proc.terminate()
        proc.wait(10)


def test_turn_over_tls_per_family(world: World) -> None:
    code, doc = world.probe("turns:meet.test:5349", "--turn-user", "probe",
                            "--turn-password", "secret")  # fmt: skip
    assert code == 1, doc
    for family in (6, 4):
        binding = find(doc, "turn.binding", family=family)
        assert [c["status"] for c in binding] == ["pass"], binding
        assert "TLS" in str(binding[0]["message"])
    assert {c["reason"] for c in find(doc, "turn.relay", family=6)} == {"turn.relay-no-ipv6"}
    assert {c["reason"] for c in find(doc, "turn.echo", family=4)} == {"turn.echo-ok"}


def test_https_site_and_an_ice_server_given_on_the_command_line(world: World) -> None:
    code, doc = world.probe("https://meet.test:8444/", "--cafile", str(world.ca),
                            "--ice-server", "turn:turn.v4.test:3478?transport=udp")  # fmt: skip
    assert code == 1, doc
    targets = doc["targets"]
    assert isinstance(targets, list)
    assert [t["kind"] for t in targets] == ["web", "turn"]
    assert [c["status"] for c in find(doc, "web.http", family=4)] == ["pass"]
    assert [c["reason"] for c in find(doc, "web.http", family=6)] == ["web.redirect-no-aaaa"]
    turn = {(c["id"], c["family"]): c["reason"] for c in checks(doc, 1)}
    assert turn[("turn.binding", 6)] == "dns.no-aaaa"
    assert turn[("turn.binding", 4)] == "stun.mapped"


def test_web_content_differs_between_the_families(world: World) -> None:
    code, doc = world.probe("http://meet.test:8080/app")
    for family in (6, 4):
        assert [c["status"] for c in find(doc, "web.http", family=family)] == ["pass"]
    parity = find(doc, "web.parity")
    assert [c["reason"] for c in parity] == ["web.parity-differs"], parity
    assert code == 1  # the page names turn.v4.test, which has no AAAA
