"""Transport failures and outbound TLS checks through a running gateway (issue 8).

One network namespace with only loopback: rtc64 "A" (the proxy under test) on 127.0.0.1,
a second rtc64 "B" as a real TLS SIP server on 127.0.0.2 and 127.0.0.3 with a configured
certificate naming 127.0.0.2 and sip:example.test only, and a UDP client (tests/interop/
udp_invite.py) that sends one INVITE through A.

- RFC 3261 §17.1.4/§16.7: a refused TCP connect, a failed TLS handshake and a WebSocket
  target without connection are answered 503 at once (the old behaviour: 408 after 32 s).
- RFC 5922: A refuses B's certificate unless it trusts it (``sip.tls_ca_file``) or an
  operator opted out (``sip.tls_verify``, ``sip.tls_no_verify_domains``), and refuses a
  trusted certificate that does not name the target (127.0.0.3).
"""

from __future__ import annotations

import contextlib
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import issue, san
from tests.interop.lab import Host, require_lab, sh
from tests.interop.peers import Gateway

pytestmark = pytest.mark.interop

FAST = 5.0  # seconds: a failure must be answered well before Timer B (32 s)
A_LISTEN = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060", "tls:127.0.0.1:5061", "ws:127.0.0.1:5080"]
B_TLS = "127.0.0.2:5071"
B_OTHER = "127.0.0.3:5071"  # same server and certificate, an address the cert does not name
B_PLAIN = "127.0.0.2:5072"  # B's plain WebSocket listener: refuses a TLS ClientHello


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    require_lab()
    ns = Host(f"r64tf-{uuid.uuid4().hex[:6]}")
    sh("ip", "netns", "add", ns.ns)
    try:
        ns.run("ip", "link", "set", "lo", "up")
        yield ns
    finally:
        ns.stop_all()
        sh("ip", "netns", "del", ns.ns, check=False)


def _certificate(where: Path) -> tuple[Path, Path]:
    issued = issue(where, "b-cert", "b.example.test", names=san("sip:example.test", "127.0.0.2"))
    return issued.cert_path, issued.key_path


@pytest.fixture(scope="module")
def server_b(host: Host, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """rtc64 B, a TLS SIP server; yields its certificate (the CA bundle A may trust)."""
    work = tmp_path_factory.mktemp("b")
    cert, key = _certificate(work)
    config = f'[sip]\ntls_cert = "{cert}"\ntls_key = "{key}"\n'
    # A runs in the same namespace with the default TURN and console ports: B needs neither
    config += "[turn]\nenabled = false\n[web]\nenabled = false\n"
    args = ["--sip-listen", "udp:127.0.0.2:5070", "--sip-listen", f"tls:{B_TLS}"]
    args += ["--sip-listen", f"tls:{B_OTHER}", "--sip-listen", f"ws:{B_PLAIN}"]
    args += ["--trusted-network", "127.0.0.0/8"]
    args += ["--media-ports", "31000-31099"]
    gw = Gateway(host, work, args, config)
    try:
        yield cert
    finally:
        gw.stop()


@contextlib.contextmanager
def gateway_a(host: Host, work: Path, config: str = "") -> Iterator[Gateway]:
    args = [a for spec in A_LISTEN for a in ("--sip-listen", spec)]
    args += ["--trusted-network", "127.0.0.0/8", "--media-ports", "30000-30099"]
    gw = Gateway(host, work, args, config)
    try:
        yield gw
    finally:
        gw.stop()


def invite(host: Host, uri: str) -> dict[str, object]:
    """One INVITE from a UDP client through A; the final response."""
    # 20 s: under the runner's 30 s limit, well past FAST (the old answer came at 32 s).
    args = ("-m", "tests.interop.udp_invite", "127.0.0.1", "5060", uri, "20")
    proc = host.run(sys.executable, *args)
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _quick_503(
    result: dict[str, object], gw: Gateway, *needles: str, status: int = 503, logged: bool = True
) -> None:
    log = gw.text()
    assert result["status"] == status, f"{result}\n{log[-4000:]}"
    elapsed = result["elapsed"]
    assert isinstance(elapsed, float) and elapsed < FAST, result
    reason = str(result["reason"])
    for needle in needles:
        assert needle in reason, result
        if logged:
            assert needle in log, log[-4000:]
    assert "IPv4Address(" not in log and "IPv6Address(" not in log, log[-4000:]


def _answered_by_b(result: dict[str, object], gw: Gateway) -> None:
    # B has no bob: any final from B (not A's 503, not a timeout) shows TLS worked.
    assert result["status"] not in (0, 408, 503), f"{result}\n{gw.text()[-4000:]}"


def test_refused_tcp_target_gets_503_at_once(host: Host, tmp_path: Path) -> None:
    with gateway_a(host, tmp_path) as gw:
        result = invite(host, "sip:bob@127.0.0.1:5999;transport=tcp")
        _quick_503(result, gw, "tcp connection to 127.0.0.1:5999 failed: Connection refused")


def test_websocket_target_without_connection_fails_at_once(host: Host, tmp_path: Path) -> None:
    """WebSocket is inbound only: no connection to the target is a failed flow (RFC 5626
    430), answered at once rather than after Timer B."""
    with gateway_a(host, tmp_path) as gw:
        result = invite(host, "sip:bob@127.0.0.1:5999;transport=ws")
        _quick_503(result, gw, "no open connection to ws:127.0.0.1:5999", status=430, logged=False)


def test_untrusted_self_signed_tls_server_gets_503(
    host: Host, server_b: Path, tmp_path: Path
) -> None:
    with gateway_a(host, tmp_path) as gw:
        result = invite(host, f"sip:bob@{B_TLS};transport=tls")
        _quick_503(result, gw, f"TLS handshake with {B_TLS} failed", "certificate verify failed")


def test_tls_handshake_with_a_plain_server_gets_503(
    host: Host, server_b: Path, tmp_path: Path
) -> None:
    with gateway_a(host, tmp_path, "[sip]\ntls_verify = false\n") as gw:
        result = invite(host, f"sip:bob@{B_PLAIN};transport=tls")
        _quick_503(result, gw, f"TLS handshake with {B_PLAIN} failed")


def test_tls_server_trusted_through_the_ca_bundle(
    host: Host, server_b: Path, tmp_path: Path
) -> None:
    with gateway_a(host, tmp_path, f'[sip]\ntls_ca_file = "{server_b}"\n') as gw:
        _answered_by_b(invite(host, f"sip:bob@{B_TLS};transport=tls"), gw)
        # The same trusted certificate does not name 127.0.0.3: refused (RFC 5922).
        result = invite(host, f"sip:bob@{B_OTHER};transport=tls")
        _quick_503(result, gw, "certificate does not name 127.0.0.3")


@pytest.mark.parametrize(
    "config",
    ['[sip]\ntls_no_verify_domains = ["127.0.0.2"]\n', "[sip]\ntls_verify = false\n"],
    ids=["per-domain", "global"],
)
def test_opt_out_reaches_the_untrusted_server(
    host: Host, server_b: Path, tmp_path: Path, config: str
) -> None:
    with gateway_a(host, tmp_path, config) as gw:
        _answered_by_b(invite(host, f"sip:bob@{B_TLS};transport=tls"), gw)
        assert "outbound TLS accepts any" in gw.text()
