"""SIPp through a gateway of two SIP worker processes (issue 12, ``sip.workers``).

Topology (tests/interop/lab.py): v6 host fd00:64:6::2 — gateway (fd00:64:6::1,
10.64.4.1) — v4 host 10.64.4.2. Every worker reads its own member of the SO_REUSEPORT
group on port 5060 and its own private ports (logged by the supervisor); sending a new
request to a worker's private port picks the worker deterministically, so a REGISTER
handled by one worker and a call handled by the other are not left to the kernel's hash.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import SCENARIOS, Gateway, Sipp, report, sipp_received, wait_port

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

GW6 = f"[{V6_GW}]:5060"
GW4 = f"{V4_GW}:5060"
ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060",
    "--sip-listen", f"tcp:[{V6_GW}]:5060",
    "--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24",
    "--sip-workers", "2",
]  # fmt: skip
CONFIG = '[sip]\ndomains = ["example.net"]\n'
REGISTER_KEYS = {"domain": "example.net", "expires": "300"}
TIMEOUT = 30.0
ROOT = Path(__file__).resolve().parents[2]


def _dir(work: Path, name: str) -> Path:
    d = work / name
    d.mkdir()
    return d


def _own_ports(gw: Gateway, transport: str = "udp") -> dict[int, dict[int, str]]:
    """{worker: {IP version: "host:port"}} of each worker's private ports."""
    found: dict[int, dict[int, str]] = {}
    for k, ports in re.findall(r"SIP worker (\d+): own ports (.*?), media ports", gw.text()):
        for spec in ports.split(", "):
            kind, _, hostport = spec.partition(":")
            if kind == transport:
                found.setdefault(int(k), {})[6 if hostport.startswith("[") else 4] = hostport
    return found


def _pids(gw: Gateway, k: int) -> list[int]:
    return [int(p) for p in re.findall(rf"SIP worker {k} started \(pid (\d+)\)", gw.text())]


def _wait_log(gw: Gateway, pattern: str, timeout: float = TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if re.search(pattern, gw.text()):
            return True
        time.sleep(0.1)
    return False


def _register_bob(net: Lab, work: Path, name: str, remote: str) -> None:
    reg = Sipp(
        net.v4, _dir(work, name), name, "register.xml", local=str(V4_HOST), port=5060,
        remote=remote, keys=REGISTER_KEYS, extra=["-s", "bob"],
    )  # fmt: skip
    assert reg.wait() == 0, report(reg)


def _call_bob(net: Lab, work: Path, name: str, remote: str, calls: int = 1) -> None:
    """``calls`` calls from the v6 host to sip:bob@example.net through ``remote``, answered
    by a SIPp UAS on bob's registered contact (v4 host, port 5060)."""
    uas = Sipp(net.v4, _dir(work, f"{name}-uas"), f"{name}-uas", "uas.xml",
               local=str(V4_HOST), port=5060, calls=calls)  # fmt: skip
    wait_port(net.v4, "udp", 5060)
    uac = Sipp(
        net.v6, _dir(work, f"{name}-uac"), f"{name}-uac", "uac.xml", local=str(V6_HOST),
        port=5070, remote=remote, calls=calls, keys={"target": "example.net"},
        extra=["-s", "bob", "-r", "10"],
    )  # fmt: skip
    assert uac.wait() == 0, report(uac, uas)
    assert uas.wait() == 0, report(uac, uas)


def test_register_through_one_worker_call_through_the_other(net: Lab, work: Path) -> None:
    """bob registers through worker 0's port; calls to him through worker 1's port and
    through the shared port 5060 (the kernel's pick) all reach him, IPv6 to IPv4, with
    in-dialog ACK and BYE back through the worker that record-routed."""
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    try:
        assert "gateway ready: 2 SIP workers" in gw.text(), gw.text()
        own = _own_ports(gw)
        assert sorted(own) == [0, 1], gw.text()
        assert own[0][4] != own[1][4] and own[0][6] != own[1][6]
        _register_bob(net, work, "reg", own[0][4])
        _call_bob(net, work, "w1", f"{own[1][6]}")
        _call_bob(net, work, "shared", GW6, calls=5)
    finally:
        assert gw.stop() == 0, gw.text()[-4000:]
    assert "Traceback" not in gw.text(), gw.text()[-8000:]
    assert "exited with" not in gw.text(), gw.text()[-8000:]  # no worker ever restarted
    assert "w0.web: web console" in gw.text() and "w1.web" not in gw.text()


def test_cancel_through_workers(net: Lab, work: Path) -> None:
    """A ringing call is cancelled: the CANCEL follows the INVITE to its worker (same
    source, same member of the SO_REUSEPORT group), 487 and 200 come back."""
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    try:
        uas = Sipp(net.v4, _dir(work, "uas"), "uas", "uas_cancel.xml", local=str(V4_HOST),
                   port=5060, calls=3)  # fmt: skip
        wait_port(net.v4, "udp", 5060)
        uac = Sipp(
            net.v6, _dir(work, "uac"), "uac", "uac_cancel.xml", local=str(V6_HOST), port=5070,
            remote=GW6, calls=3, keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "bob"],
        )  # fmt: skip
        assert uac.wait() == 0, report(gw, uac, uas)
        assert uas.wait() == 0, report(gw, uac, uas)
    finally:
        gw.stop()


def test_killed_worker_restarts_with_registrations_intact(net: Lab, work: Path) -> None:
    """bob registers through worker 0; worker 0 is killed (SIGKILL), the supervisor starts
    it again on the same sockets, and a call through its port still finds bob."""
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    try:
        own = _own_ports(gw)
        _register_bob(net, work, "reg", own[0][4])
        (first,) = _pids(gw, 0)
        os.kill(first, signal.SIGKILL)
        assert _wait_log(gw, r"SIP worker 0 ready again"), gw.text()[-4000:]
        pids = _pids(gw, 0)
        assert len(pids) == 2 and pids[1] != first, gw.text()[-4000:]
        assert f"SIP worker 0 (pid {first}) exited with -9" in gw.text()
        _call_bob(net, work, "after", own[0][6])
        _call_bob(net, work, "other", own[1][6])
    finally:
        gw.stop()


def test_call_to_a_tcp_flow_another_worker_holds(net: Lab, work: Path) -> None:
    """carol registers an RFC 5626 flow over TCP through worker 0 (the connection is
    worker 0's); a call to her through worker 1 goes out over that connection (worker 1
    hands the INVITE, ACK and BYE to worker 0), and her answers, arriving on worker 0's
    connection with worker 1's Via, are handed back to worker 1."""
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    try:
        tcp = _own_ports(gw, "tcp")
        d = _dir(work, "carol")
        carol = Sipp(
            net.v6, d, "carol", "outbound_register.xml", local=str(V6_HOST), port=5071,
            remote=tcp[0][6], transport="t1",
            keys={"domain": "example.net", "instance": "00000000-0000-4000-8000-00000000000c",
                  "regid": "1"},
            extra=["-s", "carol", "-oocsf", str(SCENARIOS / "outbound_ooc.xml")],
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not sipp_received(d, "SIP/2.0 200"):
            assert carol.proc.poll() is None and time.monotonic() < deadline, report(gw, carol)
            time.sleep(0.1)
        udp = _own_ports(gw)
        uac = Sipp(
            net.v4, _dir(work, "uac"), "uac", "uac.xml", local=str(V4_HOST), port=5070,
            remote=udp[1][4], keys={"target": "example.net"}, extra=["-s", "carol"],
        )  # fmt: skip
        assert uac.wait() == 0, report(gw, uac, carol)
        text = gw.text()
        assert "w1.link: send over worker 0's tcp connection" in text, text[-6000:]
        assert re.search(r"w0\.link: 200 from tcp#\d+ \S+ handed to worker 1", text), text
        assert "cannot reach" not in text
        carol.proc.kill()
    finally:
        gw.stop()


AUTH_CONFIG = (
    CONFIG
    + '[auth]\nrealm = "example.net"\nalgorithms = ["MD5"]\nmax_failures = 4\n'
    + 'users = [{name = "bob", password = "b0b-secret"}]\n'
)


def test_lockout_counts_failures_on_every_worker(net: Lab, work: Path) -> None:
    """Four wrong passwords for bob from the v4 host, alternately through worker 0's and
    worker 1's ports (two each): with failures shared between workers the source is
    locked out in both (auth.max_failures = 4); counted per worker it never would be."""
    args = [a for a in ARGS if not a.startswith("--trusted") and "/" not in a]
    gw = Gateway(net.gw, work, args, config=AUTH_CONFIG)
    try:
        own = _own_ports(gw)
        for n in range(4):
            guess = Sipp(
                net.v4, _dir(work, f"guess{n}"), f"guess{n}", "register.xml",
                local=str(V4_HOST), port=5060 + n, remote=own[n % 2][4], keys=REGISTER_KEYS,
                extra=["-s", "bob", "-au", "bob", "-ap", f"wrong-{n}", "-auth_uri",
                       "example.net"],
            )  # fmt: skip
            assert guess.wait() != 0  # 401 again: the scenario wants a 200
        assert _wait_log(gw, rf"w0\.auth: auth: blocked source {V4_HOST}/32"), gw.text()[-6000:]
        assert _wait_log(gw, rf"w1\.auth: auth: blocked source {V4_HOST}/32"), gw.text()[-6000:]
        # the right password, through either worker, is refused now
        for k in (0, 1):
            right = Sipp(
                net.v4, _dir(work, f"right{k}"), f"right{k}", "register.xml",
                local=str(V4_HOST), port=5070 + k, remote=own[k][4], keys=REGISTER_KEYS,
                extra=["-s", "bob", "-au", "bob", "-ap", "b0b-secret", "-auth_uri",
                       "example.net"],
            )  # fmt: skip
            assert right.wait() != 0
            assert "403 Forbidden" in right.messages(), right.messages()
    finally:
        gw.stop()


def test_a_send_the_other_worker_cannot_make_fails_the_call_at_once(net: Lab, work: Path) -> None:
    """carol's flow is a TCP connection of worker 0. Worker 0 is frozen (SIGSTOP), a call
    to carol enters worker 1, which hands the INVITE to worker 0 over the channel; then
    worker 0 is killed. Its successor finds the connection gone and reports the send back:
    worker 1's transaction fails over at once and the caller gets a final answer other
    than 408 (without the report the INVITE would wait for Timer B: 408)."""
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    try:
        tcp = _own_ports(gw, "tcp")
        d = _dir(work, "carol")
        carol = Sipp(
            net.v6, d, "carol", "outbound_register.xml", local=str(V6_HOST), port=5071,
            remote=tcp[0][6], transport="t1",
            keys={"domain": "example.net", "instance": "00000000-0000-4000-8000-00000000000c",
                  "regid": "1"},
            extra=["-s", "carol", "-oocsf", str(SCENARIOS / "outbound_ooc.xml")],
        )  # fmt: skip
        deadline = time.monotonic() + 15
        while not sipp_received(d, "SIP/2.0 200"):
            assert carol.proc.poll() is None and time.monotonic() < deadline, report(gw, carol)
            time.sleep(0.1)
        (w0,) = _pids(gw, 0)
        os.kill(w0, signal.SIGSTOP)
        udp = _own_ports(gw)
        host, _, port = udp[1][4].rpartition(":")
        caller = net.v4.popen(
            [sys.executable, "-m", "tests.interop.udp_invite", host, port,
             "sip:carol@example.net", "60"],
            log=work / "invite.json", cwd=ROOT,
        )  # fmt: skip
        assert _wait_log(gw, r"w1\.link: send over worker 0's tcp connection"), gw.text()[-4000:]
        os.kill(w0, signal.SIGKILL)
        assert _wait_log(gw, r"SIP worker 0 ready again"), gw.text()[-4000:]
        caller.wait(90)
        answer = json.loads((work / "invite.json").read_text())
        text = gw.text()
        assert answer["status"] not in (0, 408), (answer, text[-6000:])
        assert 400 <= answer["status"] < 600, answer
        assert "w1.link: worker 0 could not send for us: " in text, text[-6000:]
        carol.proc.kill()
    finally:
        gw.stop()


def test_a_nonce_from_one_worker_works_on_the_other_and_a_replay_does_not(
    net: Lab, work: Path
) -> None:
    """bob authenticates through worker 0 (its nonce, nc 1); the same signed REGISTER
    replayed to worker 1's port is refused (stale: the request goes to the worker whose
    counter holds that nonce), and bob's next request with nc 2 through worker 1 passes."""
    args = [a for a in ARGS if not a.startswith("--trusted") and "/" not in a]
    gw = Gateway(net.gw, work, args, config=AUTH_CONFIG)
    try:
        own = _own_ports(gw)
        out = net.v4.run(
            "env", f"PYTHONPATH={ROOT}", sys.executable, "-m", "tests.interop.digest_replay",
            str(V4_HOST), own[0][4], own[1][4], "bob", "b0b-secret", "example.net",
        )  # fmt: skip
        result = json.loads(out.stdout)
        assert result["first"] == 200, (result, gw.text()[-6000:])
        assert result["replay"] == 401 and result["stale"], (result, gw.text()[-6000:])
        assert result["next"] == 200, (result, gw.text()[-6000:])
        assert re.search(r"w1\.link: REGISTER from udp .* handed to worker 0", gw.text())
    finally:
        gw.stop()


RELOAD_BEFORE = '[sip]\ndomains = ["example.net"]\noverload_lag = 0\nlisten = [{listen}]\n'


def test_reload_changes_listeners_in_every_worker_with_calls_in_progress(
    net: Lab, work: Path
) -> None:
    """Two long calls in progress, one through each worker; SIGHUP to the supervisor adds
    udp:10.64.4.1:5062 and removes the TCP listener. Both calls end normally (BYE along
    their route), each worker answers on its new private port and the shared new port,
    and nothing listens on TCP any more."""
    base = [f'"udp:[{V6_GW}]:5060"', f'"udp:{V4_GW}:5060"']
    config = work / "rtc64.toml"
    args = ["--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24",
            "--sip-workers", "2"]  # fmt: skip
    gw = Gateway(
        net.gw, work, args,
        config=RELOAD_BEFORE.format(listen=", ".join([*base, f'"tcp:[{V6_GW}]:5060"'])),
    )  # fmt: skip
    try:
        own = _own_ports(gw)
        callers = []
        for k in (0, 1):
            uas = Sipp(net.v4, _dir(work, f"uas{k}"), f"uas{k}", "uas.xml", local=str(V4_HOST),
                       port=5060 + k)  # fmt: skip
            wait_port(net.v4, "udp", 5060 + k)
            uac = Sipp(
                net.v6, _dir(work, f"uac{k}"), f"uac{k}", "uac_long.xml", local=str(V6_HOST),
                port=5070 + k, remote=own[k][6], keys={"target": f"{V4_HOST}:{5060 + k}"},
                extra=["-s", "bob", "-d", "6000"],
            )  # fmt: skip
            callers.append((uac, uas))
        assert _wait_log(gw, r"w1\.proxy\.calls: call \S+ set up"), gw.text()[-4000:]
        assert _wait_log(gw, r"w0\.proxy\.calls: call \S+ set up"), gw.text()[-4000:]
        config.write_text(RELOAD_BEFORE.format(listen=", ".join([*base, f'"udp:{V4_GW}:5062"'])))
        os.kill(gw.proc.pid, signal.SIGHUP)
        for k in (0, 1):
            assert _wait_log(gw, rf"w{k}: listeners opened: .*udp:{V4_GW}:5062"), gw.text()[-6000:]
        assert "need a restart, not applied: sip.listen" not in gw.text()
        for uac, uas in callers:
            assert uac.wait() == 0, report(gw, uac, uas)
            assert uas.wait() == 0, report(gw, uac, uas)
        new = {
            int(k): re.search(rf"udp:{V4_GW}:(\d+)", ports).group(1)  # type: ignore[union-attr]
            for k, ports in re.findall(r"SIP worker (\d+): new own ports (.*)", gw.text())
        }
        assert sorted(new) == [0, 1], gw.text()[-4000:]
        for k in (0, 1):  # each worker's new private port, then the new shared port
            _register_bob(net, work, f"reg-new{k}", f"{V4_GW}:{new[k]}")
        _register_bob(net, work, "reg-shared", f"{V4_GW}:5062")
        assert ":5060 " not in net.gw.run("ss", "-ltn").stdout  # TCP closed everywhere
    finally:
        gw.stop()
    assert "Traceback" not in gw.text(), gw.text()[-8000:]


def test_responses_from_a_trunk_reach_the_owning_worker_directly(net: Lab, work: Path) -> None:
    """Calls to a target that is no registered contact (an IP literal: a trunk, a static
    route) leave from the worker's own port, so the UAS's responses and its 200 to the
    BYE come back to that worker: nothing crosses the worker channel. Calls go through
    both workers' ports; with the old rule (every request from the shared port) the
    UAS's answers hashed to one worker and half of them crossed."""
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    try:
        own = _own_ports(gw)
        uas = Sipp(net.v4, _dir(work, "uas"), "uas", "uas.xml", local=str(V4_HOST), port=5060,
                   calls=10)  # fmt: skip
        wait_port(net.v4, "udp", 5060)
        for k in (0, 1):
            uac = Sipp(
                net.v6, _dir(work, f"uac{k}"), f"uac{k}", "uac.xml", local=str(V6_HOST),
                port=5070 + k, remote=own[k][6], calls=5,
                keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "bob", "-r", "10"],
            )  # fmt: skip
            assert uac.wait() == 0, report(gw, uac, uas)
        assert uas.wait() == 0, report(gw, uas)
    finally:
        assert gw.stop() == 0, gw.text()[-4000:]
    text = gw.text()
    counts = re.findall(
        r"w(\d)\.link: worker channel: (\d+) messages handed .*?, (\d+) taken", text
    )
    assert sorted(k for k, _, _ in counts) == ["0", "1"], text[-4000:]
    assert all(handed == taken == "0" for _, handed, taken in counts), counts
    assert not re.search(r"from udp \S+ handed to worker", text)


@pytest.mark.parametrize("spread", ["always", "busy"])
def test_a_trunks_calls_are_spread_over_both_workers(net: Lab, work: Path, spread: str) -> None:
    """One trusted source (a trunk: one address, one port) sends 40 calls to the shared
    port: the kernel hands every datagram of it to one worker. With ``sip.spread =
    "always"`` that worker spreads the calls by Call-ID, so both workers set calls up; ACK
    and BYE follow their INVITE's worker, handed over unparsed (their Route names the
    worker's port: ``raw_owner``). With ``"busy"`` (the default) 20 calls/s keep no worker
    busy: every call stays on the worker the kernel picked, nothing crosses."""
    gw = Gateway(net.gw, work, ARGS, config=CONFIG + f'spread = "{spread}"\n')
    try:
        uas = Sipp(net.v4, _dir(work, "uas"), "uas", "uas.xml", local=str(V4_HOST), port=5060,
                   calls=40)  # fmt: skip
        wait_port(net.v4, "udp", 5060)
        uac = Sipp(
            net.v6, _dir(work, "uac"), "uac", "uac.xml", local=str(V6_HOST), port=5070,
            remote=GW6, calls=40, keys={"target": f"{V4_HOST}:5060"},
            extra=["-s", "bob", "-r", "20"],
        )  # fmt: skip
        assert uac.wait() == 0, report(gw, uac, uas)
        assert uas.wait() == 0, report(gw, uas)
    finally:
        assert gw.stop() == 0, gw.text()[-4000:]
    text = gw.text()
    set_up = re.findall(r"rtc64\.w(\d)\S*: call (\S+) set up", text)
    ended = re.findall(r"rtc64\.w(\d)\S*: call (\S+) ended", text)
    by_worker = {k: {c for w, c in set_up if w == k} for k in ("0", "1")}
    assert len(set_up) == 40, by_worker
    assert sorted(ended) == sorted(set_up), "each call ended on the worker that set it up"
    spread_counts = re.findall(r"worker channel: \d+ messages handed .*?\((\d+) spread", text)
    assert len(spread_counts) == 2, text[-4000:]
    if spread == "always":
        assert all(len(calls) >= 5 for calls in by_worker.values()), by_worker
        assert sorted(spread_counts) != ["0", "0"], text[-4000:]
    else:
        assert sorted(len(calls) for calls in by_worker.values()) == [0, 40], by_worker
        assert spread_counts == ["0", "0"], text[-4000:]
    assert not re.search(r"(ACK|BYE) from udp \S+ handed to worker", text), text[-4000:]
    assert "Traceback" not in text, text[-8000:]
