"""rtc64 as a SIP bridge between an IPv6-only and an IPv4-only host, with real SIPp peers.

Topology (tests/interop/lab.py): v6 host fd00:64:6::2 — gateway (fd00:64:6::1,
10.64.4.1) — v4 host 10.64.4.2. Forwarding is off in the gateway namespace: every call
below crosses families only because rtc64 relays it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab, require_lab
from tests.interop.peers import Gateway, Kamailio, Sipp, report, wait_port

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

GW6 = f"[{V6_GW}]:5060"
GW4 = f"{V4_GW}:5060"
LISTEN = [
    "--sip-listen", f"udp:[{V6_GW}]:5060",
    "--sip-listen", f"udp:{V4_GW}:5060",
    "--sip-listen", f"tcp:[{V6_GW}]:5060",
    "--sip-listen", f"tcp:{V4_GW}:5060",
]  # fmt: skip
TRUST_BOTH = ["--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24"]
USERS = """
[auth]
realm = "example.net"
algorithms = ["MD5", "SHA-256"]  # SIPp 3.6 answers only the first challenge, and only MD5
users = [{name = "bob", password = "b0b-secret"}, {name = "alice", password = "al1ce-secret"}]
"""


def _call(
    net: Lab,
    work: Path,
    gw: Gateway,
    *,
    caller: str,
    callee: str,
    caller_transport: str = "u1",
) -> None:
    """One call from the ``caller`` host ("v6"/"v4") to a SIPp UAS on the other host."""
    uas_host, uas_ip = (net.v4, str(V4_HOST)) if callee == "v4" else (net.v6, str(V6_HOST))
    uac_host, uac_ip = (net.v6, str(V6_HOST)) if caller == "v6" else (net.v4, str(V4_HOST))
    gw_addr = GW6 if caller == "v6" else GW4
    target = f"[{uas_ip}]:5060" if ":" in uas_ip else f"{uas_ip}:5060"
    uas_dir, uac_dir = work / f"uas-{callee}", work / f"uac-{caller}"
    uas_dir.mkdir()
    uac_dir.mkdir()
    uas = Sipp(uas_host, uas_dir, "uas", "uas.xml", local=uas_ip, port=5060)
    wait_port(uas_host, "udp", 5060)
    uac = Sipp(
        uac_host, uac_dir, "uac", "uac.xml", local=uac_ip, port=5070, remote=gw_addr,
        transport=caller_transport, keys={"target": target}, extra=["-s", "bob"],
    )  # fmt: skip
    assert uac.wait() == 0, report(gw, uac, uas)
    assert uas.wait() == 0, report(gw, uac, uas)


def test_ipv6_only_caller_reaches_ipv4_only_callee(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, [*LISTEN, *TRUST_BOTH])
    _call(net, work, gw, caller="v6", callee="v4")
    log = gw.text()
    assert "INVITE" in log or gw.alive()


def test_ipv4_only_caller_reaches_ipv6_only_callee(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, [*LISTEN, *TRUST_BOTH])
    _call(net, work, gw, caller="v4", callee="v6")


def test_tcp_caller_on_ipv6_reaches_udp_callee_on_ipv4(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, [*LISTEN, *TRUST_BOTH])
    _call(net, work, gw, caller="v6", callee="v4", caller_transport="t1")


def test_register_then_call_the_aor_with_authentication(net: Lab, work: Path) -> None:
    """bob registers from the IPv4-only host (401, then credentials); alice calls
    sip:bob@example.net from the IPv6-only host and must authenticate her INVITE."""
    gw = Gateway(net.gw, work, [*LISTEN, "--domain", "example.net"], config=USERS)
    reg_dir = work / "reg"
    reg_dir.mkdir()
    reg = Sipp(
        net.v4, reg_dir, "register", "register.xml", local=str(V4_HOST), port=5060,
        remote=GW4, keys={"domain": "example.net", "expires": "300"},
        extra=["-s", "bob", "-au", "bob", "-ap", "b0b-secret", "-auth_uri", "example.net"],
    )  # fmt: skip
    assert reg.wait() == 0, report(gw, reg)
    uas_dir, uac_dir = work / "uas", work / "uac"
    uas_dir.mkdir()
    uac_dir.mkdir()
    uas = Sipp(net.v4, uas_dir, "uas", "uas.xml", local=str(V4_HOST), port=5060)
    wait_port(net.v4, "udp", 5060)
    uac = Sipp(
        net.v6, uac_dir, "uac", "uac_auth.xml", local=str(V6_HOST), port=5070, remote=GW6,
        keys={"target": "example.net"},
        extra=["-s", "bob", "-au", "alice", "-ap", "al1ce-secret", "-auth_uri", "bob@example.net"],
    )  # fmt: skip
    assert uac.wait() == 0, report(gw, uac, uas)
    assert uas.wait() == 0, report(gw, uac, uas)


def test_wrong_password_is_refused_and_blocked(net: Lab, work: Path) -> None:
    gw = Gateway(
        net.gw, work, [*LISTEN, "--domain", "example.net"],
        config=USERS + "max_failures = 2\nblock_seconds = 60\n",
    )  # fmt: skip
    for attempt in range(3):
        d = work / f"reg{attempt}"
        d.mkdir()
        reg = Sipp(
            net.v6, d, f"register{attempt}", "register.xml", local=str(V6_HOST), port=5070,
            remote=GW6, keys={"domain": "example.net", "expires": "300"},
            extra=["-s", "bob", "-au", "bob", "-ap", "wrong", "-auth_uri", "example.net"],
        )  # fmt: skip
        assert reg.wait() != 0, "a wrong password never registers"
    assert "blocked source" in gw.text() or "blocked user" in gw.text(), gw.text()[-4000:]


def test_fork_to_ipv6_and_ipv4_contacts(net: Lab, work: Path) -> None:
    """bob registers from both hosts; a call rings both; the IPv6 phone answers and the
    IPv4 phone's branch is CANCELled."""
    gw = Gateway(net.gw, work, [*LISTEN, *TRUST_BOTH, "--domain", "example.net"])
    for host, ip, remote in ((net.v6, str(V6_HOST), GW6), (net.v4, str(V4_HOST), GW4)):
        d = work / f"reg-{host.ns}"
        d.mkdir()
        reg = Sipp(
            host, d, "register", "register.xml", local=ip, port=5060, remote=remote,
            keys={"domain": "example.net", "expires": "300"}, extra=["-s", "bob"],
        )  # fmt: skip
        assert reg.wait() == 0, report(gw, reg)
    dirs = {n: work / n for n in ("uas6", "uas4", "uac")}
    for d in dirs.values():
        d.mkdir()
    answer = Sipp(net.v6, dirs["uas6"], "uas6", "uas.xml", local=str(V6_HOST), port=5060)
    ring = Sipp(net.v4, dirs["uas4"], "uas4", "uas_cancel.xml", local=str(V4_HOST), port=5060)
    wait_port(net.v6, "udp", 5060)
    wait_port(net.v4, "udp", 5060)
    uac = Sipp(
        net.v6, dirs["uac"], "uac", "uac.xml", local=str(V6_HOST), port=5070, remote=GW6,
        keys={"target": "example.net"}, extra=["-s", "bob"],
    )  # fmt: skip
    assert uac.wait() == 0, report(gw, uac, answer, ring)
    assert answer.wait() == 0, report(gw, uac, answer, ring)
    assert ring.wait() == 0, report(gw, uac, answer, ring)


def test_cancel_before_answer_crosses_families(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, [*LISTEN, *TRUST_BOTH])
    uas_dir, uac_dir = work / "uas", work / "uac"
    uas_dir.mkdir()
    uac_dir.mkdir()
    uas = Sipp(net.v4, uas_dir, "uas", "uas_cancel.xml", local=str(V4_HOST), port=5060)
    wait_port(net.v4, "udp", 5060)
    uac = Sipp(
        net.v6, uac_dir, "uac", "uac_cancel.xml", local=str(V6_HOST), port=5070, remote=GW6,
        keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "bob"],
    )  # fmt: skip
    assert uac.wait() == 0, report(gw, uac, uas)
    assert uas.wait() == 0, report(gw, uac, uas)


def test_untrusted_caller_cannot_use_the_gateway_as_open_relay(net: Lab, work: Path) -> None:
    """No trusted networks and no credentials: the INVITE gets 407, never reaches the callee."""
    gw = Gateway(net.gw, work, LISTEN, config=USERS)
    uac_dir = work / "uac"
    uac_dir.mkdir()
    uac = Sipp(
        net.v6, uac_dir, "uac", "uac.xml", local=str(V6_HOST), port=5070, remote=GW6,
        keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "bob"],
    )  # fmt: skip
    assert uac.wait() != 0
    assert "407" in uac.messages(), report(gw, uac)


def test_ipv6_edge_in_front_of_ipv4_only_kamailio_core(net: Lab, work: Path) -> None:
    """The provider rollout: Kamailio on the IPv4-only host is the registrar and core; rtc64
    is the IPv6 edge (--upstream). A phone on the IPv6-only host registers through rtc64
    (Path added), then a caller on the IPv4 side calls it via Kamailio, which routes the
    INVITE back through rtc64 along the Path."""
    require_lab("kamailio")
    core = Kamailio(net.v4, work, f"udp:{V4_HOST}:5060")
    gw = Gateway(net.gw, work, [*LISTEN, "--upstream", f"sip:{V4_HOST}:5060", *TRUST_BOTH[2:]])
    reg_dir = work / "reg"
    reg_dir.mkdir()
    reg = Sipp(
        net.v6, reg_dir, "register", "register.xml", local=str(V6_HOST), port=5060,
        remote=GW6, keys={"domain": "example.net", "expires": "300"}, extra=["-s", "bob"],
    )  # fmt: skip
    assert reg.wait() == 0, report(gw, reg) + core.text()[-3000:]
    phone_dir, caller_dir = work / "phone", work / "caller"
    phone_dir.mkdir()
    caller_dir.mkdir()
    phone = Sipp(net.v6, phone_dir, "phone", "uas.xml", local=str(V6_HOST), port=5060)
    wait_port(net.v6, "udp", 5060)
    caller = Sipp(
        net.v4, caller_dir, "caller", "uac.xml", local=str(V4_HOST), port=5070,
        remote=f"{V4_HOST}:5060", keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "bob"],
    )  # fmt: skip
    assert caller.wait() == 0, report(gw, caller, phone) + core.text()[-3000:]
    assert phone.wait() == 0, report(gw, caller, phone) + core.text()[-3000:]
    # Kamailio stored the Path rtc64 added and routed the call along it (the port is the
    # SIP worker's own port when several workers run).
    path = rf"via sip:{V4_GW}:\d+;lr;received=sip:\[{V6_HOST}\]:5060"
    assert re.search(path, core.text()), core.text()
    # The phone sees rtc64's IPv6 side first in the Record-Route set (RFC 5658); ports
    # are a SIP worker's own when several run.
    invite = phone.messages()
    pattern = (
        rf"Record-Route: <sip:\[{V6_GW}\]:\d+;lr;r2=on;r64=[0-9a-f]+\.[0-9a-f]{{16}}>, "
        rf"<sip:{re.escape(str(V4_GW))}:\d+;lr;r2=on;r64=[0-9a-f]+\.[0-9a-f]{{16}}>"
    )
    assert re.search(pattern, invite), invite


def test_malformed_input_gets_errors_and_the_gateway_keeps_serving(net: Lab, work: Path) -> None:
    """Every RFC 4475 invalid message and 3000 fuzzed datagrams hit the running gateway:
    malformed requests get a 4xx/5xx with a reason, responses are dropped, the process
    stays up, and a call through it still works afterwards."""
    gw = Gateway(net.gw, work, [*LISTEN, *TRUST_BOTH])
    corpus = Path(__file__).resolve().parent.parent / "conformance" / "corpus"
    proc = net.v6.run(
        sys.executable, "-m", "tests.interop.blaster", str(V6_GW), "5060", str(corpus),
        "3000", "7",
    )  # fmt: skip
    result = json.loads(proc.stdout)
    answers: dict[str, str | None] = result["corpus"]
    for name in ("scalarlg", "bigcode"):  # invalid responses: never answered
        assert answers.pop(name) is None
    answered = {n: a for n, a in answers.items() if a is not None}
    assert answered, answers
    for name, status_line in answered.items():
        code = int(status_line.split(" ")[1])
        assert 400 <= code < 600, (name, status_line)
        assert len(status_line.split(" ", 2)[2]) > 3, f"{name}: reason phrase says why"
    # The corpus notes name these as requests to answer with an error (RFC 4475 §3.1.2).
    for name in ("badinv01", "clerr", "scalar02", "badvers", "mismatch01"):
        assert answers.get(name) is not None, (name, answers)
    assert answers["badvers"].startswith("SIP/2.0 505"), answers["badvers"]
    assert gw.alive(), gw.text()[-3000:]
    # The flood may have made admission control shed new requests (503 Retry-After) for a
    # moment: a phone retries until the gateway admits again (the benchmark measures how
    # fast; 30 s here only bounds a busy CI machine).
    proc = net.v6.run(
        sys.executable, "-m", "tests.interop.udp_invite", "--until-ok",
        str(V6_GW), "5060", f"sip:[{V6_GW}]", "30",
    )  # fmt: skip
    recovered = json.loads(proc.stdout.strip().splitlines()[-1])
    assert recovered["status"] == 200, (recovered, gw.text()[-3000:])
    _call(net, work, gw, caller="v6", callee="v4")
    assert gw.alive()
