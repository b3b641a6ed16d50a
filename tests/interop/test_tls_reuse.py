"""RFC 5923 connection reuse between servers over mutual TLS, with a real peer.

rtc64 (namespace ``r64reach-gw-*``, 10.77.0.1) and Kamailio 5.6 with its tls module
(``r64reach-kam-*``, 10.77.0.2), each with a certificate from one test CA naming its
address, each asking the other for a client certificate. rtc64 sends its upstream traffic
to Kamailio over TLS with ``;alias`` in its Via (``sip.tls_alias``); Kamailio, with
``tcp_accept_aliases``, then sends its requests for rtc64 back over that connection: both
directions over ONE TLS connection, counted with ``ss`` in both namespaces.

Each gateway runs the default SIP workers (one per core, at least two are asked for
here), with private ports from ``sip.worker_ports`` (41000 + k): sending the UDP request
to worker k's own port makes worker k handle it, so both workers' requests are shown to
share the one connection (issue 11: aliases and connections are known to every worker).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.certs import issue, san
from tests.interop.lab import Host, require_lab, sh
from tests.interop.peers import Gateway, Sipp, wait_port

GW, KAM = "10.77.0.1", "10.77.0.2"
WORKER_PORTS = 41000  # worker k's own ports: 41000 + k (UDP and TLS)


def make_pki(where: Path) -> dict[str, Path]:
    """A test CA and one leaf per server (SAN: its address and a name), PEM files."""
    ca = issue(where, "ca", "rtc64 reach test CA", ca=True)
    out = {"ca": ca.cert_path}
    for name, address in (("gw", GW), ("kam", KAM)):
        leaf = issue(where, name, f"{name}.test", names=san(f"{name}.test", address), signer=ca)
        out[name], out[f"{name}-key"] = leaf.cert_path, leaf.key_path
    return out


KAMAILIO_HEAD = """#!KAMAILIO
debug=3
log_stderror=yes
children=1
tcp_children=1
auto_aliases=no
enable_tls=yes
tcp_accept_aliases=yes
loadpath "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tls.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "siputils.so"
loadmodule "maxfwd.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
modparam("tls", "config", "{tls_cfg}")
"""
KAMAILIO_TLS = (
    KAMAILIO_HEAD
    + """request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    xlog("L_INFO", "kam: $rm $ru from $si:$sp over $pr, via $hdr(Via)\\n");
    if ($rd == "kam.test") {{ sl_send_reply("200", "Kamailio here"); exit; }}
    $du = "sip:{gw}:5061;transport=tls";
    t_relay();
}}
"""
)

KAMAILIO_TLS_CFG = """[server:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = no
private_key = {key}
certificate = {cert}
ca_list = {ca}

[client:default]
method = TLSv1.2+
verify_certificate = yes
require_certificate = yes
private_key = {key}
certificate = {cert}
ca_list = {ca}
"""


def options(target: str, n: int, local: tuple[str, int]) -> bytes:
    host, port = local
    return (
        f"OPTIONS sip:{target} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-reach-{n};rport\r\n"
        f"Max-Forwards: 20\r\nFrom: <sip:probe@{host}>;tag=r{n}\r\nTo: <sip:{target}>\r\n"
        f"Call-ID: reach-{n}@{host}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()


ASK = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
s.settimeout(8)
port = str(s.getsockname()[1]).encode()
s.sendto(sys.stdin.buffer.read().replace(b"PORT", port), (sys.argv[2], int(sys.argv[3])))
while True:
    line = s.recv(65535).split(b"\\r\\n", 1)[0].decode()
    if not line.startswith("SIP/2.0 1"):
        print(line)
        break
"""


def ask(host: Host, source: str, dest: str, target: str, n: int, port: int = 5060) -> str:
    """One OPTIONS over UDP from ``source`` inside ``host`` to ``dest``:``port`` (a SIP
    worker's own port picks the worker): the final status line (or what went wrong)."""
    msg = options(target, n, (source, 0)).replace(f"{source}:0".encode(), f"{source}:PORT".encode())
    proc = subprocess.run(
        ["ip", "netns", "exec", host.ns, sys.executable, "-c", ASK, source, dest, str(port)],
        input=msg, capture_output=True, timeout=20, check=False,
    )  # fmt: skip
    return proc.stdout.decode().strip() or proc.stderr.decode().strip()[-300:]


def tls_connections(host: Host) -> list[tuple[str, str]]:
    """(local, peer) of every established connection to or from a port 5061."""
    out = host.run("ss", "-Htn", "state", "established", check=False).stdout
    pairs = [tuple(line.split()[-2:]) for line in out.splitlines() if ":5061" in line]
    return [(a, b) for a, b in pairs]


@pytest.fixture
def hosts() -> Iterator[tuple[Host, Host]]:
    require_lab("kamailio")
    if not Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so").exists():
        pytest.fail("kamailio-tls-modules missing (run make test)")
    tag = uuid.uuid4().hex[:6]
    gw, kam = Host(f"r64reach-gw-{tag}", []), Host(f"r64reach-kam-{tag}", [])
    made: list[str] = []
    try:
        for h in (gw, kam):
            sh("ip", "netns", "add", h.ns)
            made.append(h.ns)
            h.run("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", f"rg{tag}", "netns", gw.ns, "type", "veth",
           "peer", "name", f"rk{tag}", "netns", kam.ns)  # fmt: skip
        gw.run("ip", "addr", "add", f"{GW}/24", "dev", f"rg{tag}")
        kam.run("ip", "addr", "add", f"{KAM}/24", "dev", f"rk{tag}")
        gw.run("ip", "link", "set", f"rg{tag}", "up")
        kam.run("ip", "link", "set", f"rk{tag}", "up")
        yield gw, kam
    finally:
        for h in (gw, kam):
            h.stop_all()
        for ns in made:
            sh("ip", "netns", "del", ns, check=False)


def start_kamailio(
    host: Host, tmp_path: Path, pki: dict[str, Path], template: str | None = None
) -> Path:
    """Kamailio with TLS in ``host`` (``template``: its configuration, KAMAILIO_TLS by
    default, formatted with ``tls_cfg``, ``gw`` and ``kam``); its log's path."""
    tls_cfg = tmp_path / "tls.cfg"
    tls_cfg.write_text(KAMAILIO_TLS_CFG.format(key=pki["kam-key"], cert=pki["kam"], ca=pki["ca"]))
    cfg = tmp_path / "kamailio.cfg"
    cfg.write_text((template or KAMAILIO_TLS).format(tls_cfg=tls_cfg, gw=GW, kam=KAM))
    log = tmp_path / "kamailio.log"
    argv = ["kamailio", "-f", str(cfg), "-DD", "-E", "-Y", str(tmp_path), "-m", "64"]
    argv += ["-l", f"udp:{KAM}:5060", "-l", f"tls:{KAM}:5061", "-w", str(tmp_path)]
    argv += ["-P", str(tmp_path / "kamailio.pid")]
    host.popen(argv, log=log)
    wait_port(host, "tcp", 5061)
    return log


def gateway_config(
    address: str, domain: str, upstream: str, pki: dict[str, Path], name: str, *, alias: bool
) -> str:
    # the default SIP workers (one per core), each with its own ports 41000 + k
    return f"""
[sip]
worker_ports = {WORKER_PORTS}
listen = ["udp:{address}:5060", "tls:{address}:5061"]
domains = ["{domain}"]
trusted_networks = ["10.77.0.0/24"]
upstream = "sip:{upstream}:5061;transport=tls"
tls_cert = "{pki[name]}"
tls_key = "{pki[name + "-key"]}"
tls_ca_file = "{pki["ca"]}"
tls_verify_clients = true
tls_client_ca = "{pki["ca"]}"
tls_alias = {"true" if alias else "false"}
"""


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def workers(gw: Gateway) -> int:
    """How many SIP workers the gateway runs (at least two: the point of these tests)."""
    found = re.search(r"gateway ready: (\d+) SIP workers", gw.text())
    assert found is not None and int(found.group(1)) >= 2, gw.text()[-3000:]
    return int(found.group(1))


def handed_over(gw: Gateway) -> set[int]:
    """The workers that sent a TLS message over another worker's connection."""
    return {
        int(k) for k in re.findall(r"rtc64\.w(\d+)\.link.*send over worker \d+'s tls", gw.text())
    }


def test_kamailio_reuses_rtc64s_connection_for_requests_to_rtc64(
    hosts: tuple[Host, Host], tmp_path: Path
) -> None:
    """rtc64 opens TLS to Kamailio presenting its certificate, Via ``;alias``; Kamailio's
    request for rtc64 then goes over that connection: one connection, both directions."""
    gw_host, kam_host = hosts
    pki = make_pki(tmp_path)
    kam_log = start_kamailio(kam_host, tmp_path, pki)
    config = gateway_config(GW, "gw.test", KAM, pki, "gw", alias=True)
    gw = Gateway(gw_host, tmp_path, ["--media-policy", "never"], config=config)
    try:
        workers(gw)
        out = ask(gw_host, GW, GW, "kam.test", 1, WORKER_PORTS)  # worker 0 -> Kamailio
        assert out.startswith("SIP/2.0 200 Kamailio here"), (out, gw.text()[-3000:])
        (opened,) = tls_connections(gw_host)
        local = opened[0]
        assert local.startswith(f"{GW}:") and not local.endswith(":5061")  # rtc64 opened it
        # our ;alias Via names the port Kamailio dials (5061), not worker 0's own port
        assert f"over tls, via SIP/2.0/TLS {GW}:5061;" in text(kam_log)
        assert ";alias" in text(kam_log).split("kam: OPTIONS sip:kam.test", 1)[1].split("\n")[0]
        out = ask(gw_host, GW, GW, "kam.test", 2, WORKER_PORTS + 1)  # worker 1: same connection
        assert out.startswith("SIP/2.0 200 Kamailio here"), (out, gw.text()[-3000:])
        assert tls_connections(gw_host) == [opened], gw.text()[-3000:]
        assert handed_over(gw) == {1}, gw.text()[-3000:]
        out = ask(kam_host, KAM, KAM, "gw.test", 3)  # Kamailio -> rtc64 (relayed, TLS)
        assert out.startswith("SIP/2.0 200") and "Kamailio" not in out, (out, text(kam_log)[-3000:])
        assert tls_connections(gw_host) == [opened]  # still the one rtc64 opened
        assert len(tls_connections(kam_host)) == 1
        assert "found connection by peer address" in text(kam_log)
    finally:
        gw.stop()


def test_kamailio_sends_no_alias_so_rtc64_opens_its_own_connection(
    hosts: tuple[Host, Host], tmp_path: Path
) -> None:
    """Kamailio opens TLS to rtc64 with a certificate rtc64 verifies, but its Via carries
    no ``;alias`` (Kamailio 5.6 only accepts aliases, ``tcp_accept_aliases``; nothing in
    its core or tls module adds one to its own Via): rtc64 must not reuse that
    connection for requests to Kamailio (RFC 5923 §6) and opens its own."""
    gw_host, kam_host = hosts
    pki = make_pki(tmp_path)
    kam_log = start_kamailio(kam_host, tmp_path, pki)
    config = gateway_config(GW, "gw.test", KAM, pki, "gw", alias=False)
    gw = Gateway(gw_host, tmp_path, ["--media-policy", "never"], config=config)
    try:
        workers(gw)
        out = ask(kam_host, KAM, KAM, "gw.test", 1)  # Kamailio -> rtc64 first
        assert out.startswith("SIP/2.0 200"), (out, text(kam_log)[-3000:], gw.text()[-3000:])
        (theirs,) = tls_connections(gw_host)
        assert theirs[0] == f"{GW}:5061"  # Kamailio opened it
        for k in (0, 1):  # rtc64 -> Kamailio from each worker: one connection of ours
            out = ask(gw_host, GW, GW, "kam.test", 2 + k, WORKER_PORTS + k)
            assert out.startswith("SIP/2.0 200 Kamailio here"), (out, gw.text()[-3000:])
        assert len(tls_connections(gw_host)) == 2
        # With ;alias rtc64 would have logged the alias or why it refused it.
        assert "RFC 5923" not in gw.text()
    finally:
        gw.stop()


def test_rtc64_reuses_a_verified_peers_connection(hosts: tuple[Host, Host], tmp_path: Path) -> None:
    """Two gateways: A opens TLS to B with ``;alias``; B verifies A's certificate names the
    Via host, records the alias and sends its request for A over A's connection."""
    a_host, b_host = hosts
    pki = make_pki(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Gateway(
        a_host, tmp_path / "a", ["--media-policy", "never"],
        config=gateway_config(GW, "gw.test", KAM, pki, "gw", alias=True),
    )  # fmt: skip
    b = Gateway(
        b_host, tmp_path / "b", ["--media-policy", "never"],
        config=gateway_config(KAM, "kam.test", GW, pki, "kam", alias=False),
    )  # fmt: skip
    try:
        workers(a), workers(b)
        out = ask(a_host, GW, GW, "kam.test", 1, WORKER_PORTS)  # A's worker 0 -> B
        assert out.startswith("SIP/2.0 200"), (out, a.text()[-3000:], b.text()[-3000:])
        assert f"reused for {GW}:5061" in b.text(), b.text()[-3000:]
        (opened,) = tls_connections(a_host)
        out = ask(a_host, GW, GW, "kam.test", 2, WORKER_PORTS + 1)  # A's worker 1 -> B
        assert out.startswith("SIP/2.0 200"), (out, a.text()[-3000:], b.text()[-3000:])
        assert tls_connections(a_host) == [opened] and handed_over(a) == {1}, a.text()[-3000:]
        for k in (0, 1):  # B -> A (B's upstream) from each of B's workers: A's connection
            out = ask(b_host, KAM, KAM, "gw.test", 3 + k, WORKER_PORTS + k)
            assert out.startswith("SIP/2.0 200"), (out, b.text()[-3000:])
            assert tls_connections(a_host) == [opened], b.text()[-3000:]
        assert len(tls_connections(b_host)) == 1
        assert len(handed_over(b)) == 1, b.text()[-3000:]  # the one without the connection
    finally:
        a.stop()
        b.stop()


def test_a_killed_workers_alias_leaves_every_worker(
    hosts: tuple[Host, Host], tmp_path: Path
) -> None:
    """B's worker holding A's aliased connection is killed (-9): the kernel closes the
    connection and the supervisor tells B's other worker, which forgets the alias and
    sends its next request for A over a connection of its own (not into the dead worker's
    channel, where it would wait for the restart and fail); the restarted worker then
    uses that connection as well."""
    a_host, b_host = hosts
    pki = make_pki(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Gateway(
        a_host, tmp_path / "a", ["--media-policy", "never"],
        config=gateway_config(GW, "gw.test", KAM, pki, "gw", alias=True),
    )  # fmt: skip
    b = Gateway(
        b_host, tmp_path / "b", ["--media-policy", "never"],
        config=gateway_config(KAM, "kam.test", GW, pki, "kam", alias=False),
    )  # fmt: skip
    try:
        workers(b)
        out = ask(a_host, GW, GW, "kam.test", 1, WORKER_PORTS)  # A -> B: B records the alias
        assert out.startswith("SIP/2.0 200"), (out, a.text()[-3000:], b.text()[-3000:])
        found = re.search(rf"rtc64\.w(\d+)\.transport: RFC 5923: .* reused for {GW}:5061", b.text())
        assert found is not None, b.text()[-3000:]
        holder = int(found.group(1))
        (pid,) = re.findall(rf"SIP worker {holder} started \(pid (\d+)\)", b.text())
        os.kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 10
        while f"SIP worker {holder} (pid {pid}) exited" not in b.text():
            assert time.monotonic() < deadline, b.text()[-3000:]
            time.sleep(0.05)
        other = 1 - holder
        out = ask(b_host, KAM, KAM, "gw.test", 2, WORKER_PORTS + other)  # B -> A
        assert out.startswith("SIP/2.0 200"), (out, b.text()[-3000:])
        ((local, peer),) = tls_connections(b_host)  # B's own, to A's 5061
        assert peer == f"{GW}:5061" and not local.endswith(":5061"), b.text()[-3000:]
        # the restarted worker learns that live connection (the others answer its RESET)
        # and nothing of its predecessor's: its request for A goes over it too
        while f"SIP worker {holder} ready again" not in b.text():
            assert time.monotonic() < deadline + 30, b.text()[-3000:]
            time.sleep(0.1)
        out = ask(b_host, KAM, KAM, "gw.test", 3, WORKER_PORTS + holder)
        assert out.startswith("SIP/2.0 200"), (out, b.text()[-3000:])
        assert tls_connections(b_host) == [(local, peer)], b.text()[-3000:]
    finally:
        a.stop()
        b.stop()


KAMAILIO_DIALOG = (
    KAMAILIO_HEAD
    + """request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    xlog("L_INFO", "kam: $rm $ru from $si:$sp over $pr, route $hdr(Route)\\n");
    if (has_totag()) {{
        if (loose_route()) {{ xlog("L_INFO", "kam: in-dialog $rm to $du\\n"); t_relay(); exit; }}
        sl_send_reply("404", "Not here"); exit;
    }}
    if (is_method("OPTIONS")) {{ sl_send_reply("200", "Kamailio here"); exit; }}
    record_route();
    $du = "sip:{kam}:5070";
    t_relay();
}}
"""
)


@pytest.mark.parametrize("alias", [True, False], ids=["alias", "no-alias"])
def test_a_peers_in_dialog_requests_reach_the_call_worker_and_the_caller(
    hosts: tuple[Host, Host], tmp_path: Path, alias: bool
) -> None:
    """A call from worker 1 through Kamailio (TLS) to a callee that hangs up. The TLS
    connection to Kamailio was opened by worker 0 (an OPTIONS first) and worker 1 sends
    the INVITE over it (RFC 5923 reuse across workers).

    With ``sip.tls_alias``, our Record-Route names the shared port Kamailio aliased, with
    worker 1's own port as ``r64w``: the callee's BYE comes back over that one connection
    (no second connection to a worker's own port) and worker 0 hands it to worker 1.
    Without it, the entry names worker 1's own port and Kamailio opens a connection of its
    own there: the BYE, from a port other than the one its flow token names, still goes
    to the caller (the entry facing the sender is the first of two), not back to
    Kamailio. Either way the call ends on the worker that set it up."""
    gw_host, kam_host = hosts
    pki = make_pki(tmp_path)
    kam_log = start_kamailio(kam_host, tmp_path, pki, KAMAILIO_DIALOG)
    config = gateway_config(GW, "gw.test", KAM, pki, "gw", alias=alias)
    gw = Gateway(gw_host, tmp_path, ["--media-policy", "never"], config=config)
    try:
        workers(gw)
        out = ask(gw_host, GW, GW, "kam.test", 1, WORKER_PORTS)  # worker 0 opens the TLS
        assert out.startswith("SIP/2.0 200 Kamailio here"), (out, gw.text()[-3000:])
        (opened,) = tls_connections(gw_host)
        uas = Sipp(kam_host, tmp_path, "uas", "uas_hangs_up.xml", local=KAM, port=5070)
        wait_port(kam_host, "udp", 5070)
        uac = Sipp(
            gw_host, tmp_path, "uac", "uac_callee_hangs_up.xml", local=GW, port=5090,
            remote=f"{GW}:{WORKER_PORTS + 1}", keys={"target": "kam.test"},
            extra=["-s", "callee"],
        )  # fmt: skip
        assert uac.wait() == 0, (uac.messages()[-3000:], gw.text()[-3000:], text(kam_log)[-3000:])
        assert uas.wait() == 0, (uas.messages()[-3000:], text(kam_log)[-3000:])
        kam = text(kam_log)
        bye = re.search(r"kam: in-dialog BYE to (\S+)", kam)
        assert bye is not None, kam[-3000:]
        if alias:
            assert tls_connections(gw_host) == [opened], (gw.text()[-3000:], kam[-3000:])
            assert bye.group(1).startswith(f"sips:{GW}:5061;"), kam[-3000:]
            assert f";r64w={WORKER_PORTS + 1};" in bye.group(1), kam[-3000:]
            assert "found connection by peer address" in kam, kam[-3000:]
        else:
            assert bye.group(1).startswith(f"sips:{GW}:{WORKER_PORTS + 1};"), kam[-3000:]
            assert "r64w" not in bye.group(1), kam[-3000:]
            out = gw_host.run("ss", "-Htn", "state", "established", check=False).stdout
            theirs = [ln.split()[-2] for ln in out.splitlines() if f"{KAM}:5061" not in ln]
            assert theirs == [f"{GW}:{WORKER_PORTS + 1}"], out  # Kamailio's, to worker 1
    finally:
        gw.stop()
    log = gw.text()
    assert re.search(r"rtc64\.w1\S*: call \S+ set up", log), log[-4000:]
    assert re.search(r"rtc64\.w1\S*: call \S+ ended: bye-callee 200", log), log[-4000:]
    assert 1 in handed_over(gw), log[-3000:]
    assert "Traceback" not in log, log[-6000:]
