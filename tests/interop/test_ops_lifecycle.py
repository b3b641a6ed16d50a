"""Reload, drain and stop of a running ``rtc64 serve`` with SIPp calls in progress.

Topology (tests/interop/lab.py): SIPp UAC on the IPv6-only host calls a SIPp UAS on the
IPv4-only host through the gateway; the call is held open (``uac_long.xml``, ``-d``) while
the gateway gets SIGHUP (valid and invalid configurations), SIGUSR1, SIGTERM or SIGINT.
Both hosts' networks are trusted in the configuration file (so a reload can change them).
"""

from __future__ import annotations

import re
import signal
import sys
import time
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Lab
from tests.interop.peers import Gateway, Sipp, report, wait_port

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss")

GW6 = f"[{V6_GW}]:5060"
LISTEN = ["--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060"]
TRUSTED = '["fd00:64:6::/64", "10.64.4.0/24"]'
# overload_lag = 0: no overload shedding on the shared cores (it would 503 a test call)
CONFIG = f"[sip]\noverload_lag = 0\ntrusted_networks = {TRUSTED}\n[general]\ndrain_seconds = 30\n"
HOLD_MS = "6000"  # how long the caller keeps the call up


def _wait_log(gw: Gateway, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = gw.text()
        if text in log:
            return log
        if not gw.alive():
            break
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the gateway log:\n{gw.text()[-6000:]}")


def _line(log: str, text: str) -> str:
    return next(line for line in log.splitlines() if text in line)


def _call(net: Lab, work: Path, *, hold: str = HOLD_MS) -> tuple[Sipp, Sipp]:
    """A long call from the IPv6 host to the IPv4 host, answered."""
    (work / "uas").mkdir()
    (work / "uac").mkdir()
    callee = Sipp(net.v4, work / "uas", "uas", "uas.xml", local=str(V4_HOST), port=5060)
    wait_port(net.v4, "udp", 5060)
    caller = Sipp(
        net.v6, work / "uac", "uac", "uac_long.xml", local=str(V6_HOST), port=5070,
        remote=GW6, keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "callee", "-d", hold],
    )  # fmt: skip
    return caller, callee


LISTEN_FILE = f'listen = ["udp:[{V6_GW}]:5060", "udp:{V4_GW}:5060"'


def test_reload_keeps_the_call_applies_new_keys_and_rejects_a_bad_file(
    net: Lab, work: Path
) -> None:
    gw = Gateway(net.gw, work, [], config=f"[sip]\n{LISTEN_FILE}]\n" + CONFIG[6:])
    path = work / "rtc64.toml"
    caller, callee = _call(net, work)
    _wait_log(gw, "answered by")

    # A valid new configuration: one more listener, tracing of the IPv6 phones' network,
    # other registrar limits, and a key that needs a restart.
    path.write_text(
        f'[sip]\n{LISTEN_FILE}, "tcp:{V4_GW}:5060"]\noverload_lag = 0\n'
        f"trusted_networks = {TRUSTED}\n"
        'trace = ["fd00:64:6::/64"]\n[registrar]\nmax_expires = 5400\n'
        '[general]\ndrain_seconds = 30\n[store]\nurl = "sqlite:///nowhere/else.db"\n'
    )
    gw.proc.send_signal(signal.SIGHUP)
    log = _wait_log(gw, "configuration reloaded")
    reloaded = _line(log, "configuration reloaded")
    assert "sip.trace" in reloaded and "registrar.max_expires" in reloaded, reloaded
    assert "sip.listen" in reloaded, reloaded
    # (with SIP workers, the default, each worker opens its own port too)
    opened = rf"listeners opened: (?:tcp:{V4_GW}:\d+, )?tcp:{V4_GW}:5060; closed: none"
    assert re.search(opened, log), log[-4000:]
    assert f"{V4_GW}:5060 " in net.gw.run("ss", "-ltn").stdout
    assert "need a restart, not applied: store.url" in log

    # Invalid: the same one-line error as at start, the old configuration stays.
    path.write_text('[registrar]\nmin_expires = "soon"\n')
    gw.proc.send_signal(signal.SIGHUP)
    log = _wait_log(gw, "reload rejected")
    rejected = _line(log, "reload rejected")
    assert "registrar.min_expires" in rejected and "soon" in rejected, rejected

    # A listener that cannot be bound (not an address of this host): rejected as well.
    path.write_text(
        f'[sip]\n{LISTEN_FILE}, "udp:192.0.2.99:5060"]\noverload_lag = 0\n'
        f"trusted_networks = {TRUSTED}\n"
    )
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20

    def second() -> list[str]:  # (each SIP worker logs its own rejection of the first)
        return [x for x in gw.text().splitlines() if "reload rejected" in x and "sip.listen" in x]

    while not second() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert second() and "192.0.2.99" in second()[0], gw.text()[-4000:]
    assert f"{V4_GW}:5060 " in net.gw.run("ss", "-ltn").stdout  # the reloaded one stays

    gw.proc.send_signal(signal.SIGUSR1)  # every process reports; the call is in one
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        status = [line for line in gw.text().splitlines() if "status: " in line]
        if any("calls=1" in line and "calls_ipv6=1" in line for line in status):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(gw.text()[-4000:])

    assert caller.wait() == 0, report(gw, caller, callee)
    assert callee.wait() == 0, report(gw, caller, callee)
    log = _wait_log(gw, "ended: bye-caller 200")
    assert gw.alive(), log[-4000:]
    # The trace rule from the reload is in force for the rest of the call (the BYE).
    assert f"SIP received from {V6_HOST}:5070" in log, log[-6000:]
    assert "BYE sip:" in log.split("configuration reloaded", 1)[1]
    setup = _line(log, "set up:")
    assert "caller_family=IPv6" in setup and "caller_transport=udp" in setup, setup
    answered = _line(log, "answered by")
    assert "callee_family=IPv4" in answered and "relay=True" in answered, answered
    assert "Traceback" not in log, log[-6000:]


def test_sigterm_drains_new_calls_get_503_and_the_call_in_progress_ends_normally(
    net: Lab, work: Path
) -> None:
    gw = Gateway(net.gw, work, LISTEN, config=CONFIG)
    caller, callee = _call(net, work)
    _wait_log(gw, "answered by")
    gw.proc.send_signal(signal.SIGTERM)
    _wait_log(gw, "draining: new calls get 503")

    (work / "late").mkdir()
    late = Sipp(
        net.v6, work / "late", "late", "uac_refused.xml", local=str(V6_HOST), port=5080,
        remote=GW6, keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "callee"],
    )  # fmt: skip
    assert late.wait() == 0, report(gw, late)
    assert gw.alive(), "the gateway must wait for the call in progress"

    assert caller.wait() == 0, report(gw, caller, callee)
    assert callee.wait() == 0, report(gw, caller, callee)
    assert gw.proc.wait(timeout=30) == 0, gw.text()[-4000:]
    log = gw.text()
    assert "drained: no call left, stopping" in log, log[-4000:]
    assert "ended: bye-caller 200" in log
    assert "Traceback" not in log, log[-6000:]


def test_sigint_stops_at_once_with_a_call_in_progress(net: Lab, work: Path) -> None:
    gw = Gateway(net.gw, work, LISTEN, config=CONFIG)
    caller, _ = _call(net, work, hold="20000")
    _wait_log(gw, "answered by")
    gw.proc.send_signal(signal.SIGINT)
    assert gw.proc.wait(timeout=15) == 0, gw.text()[-4000:]
    assert caller.proc.poll() is None, "the call was still up when the gateway stopped"
    log = gw.text()
    assert "draining" not in log and "rtc64 stopping" in log, log[-4000:]
    assert "Traceback" not in log, log[-6000:]


def test_rtc64_ctl_reload_goes_through_the_same_reload(net: Lab, work: Path) -> None:
    """``rtc64 ctl reload`` (the web API's /api/reload sends SIGHUP) applies the file."""
    gw = Gateway(net.gw, work, LISTEN, config=CONFIG)
    path = work / "rtc64.toml"
    path.write_text(CONFIG.replace("[general]", 'trace = ["sip:alice@example.net"]\n[general]'))
    proc = net.gw.run(
        sys.executable, "-m", "rtc64", "--config", str(path), "ctl", "reload", check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    reloaded = _line(_wait_log(gw, "configuration reloaded"), "configuration reloaded")
    assert "changed=sip.trace" in reloaded, reloaded
    assert gw.alive()
