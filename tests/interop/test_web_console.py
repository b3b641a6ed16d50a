"""The console in headless Chromium (Playwright, Debian's chromium, no browser download):
log in over HTTPS, watch a live call appear and disappear, run a probe and open its
report, visit the other pages.

The browser runs on the IPv6-only lab host and reaches the console on the gateway's IPv6
address (``web.tls``: the gateway's self-signed certificate); the call is a real SIPp
call from the IPv6-only host to the IPv4-only host. Screenshots land in the test's tmp
directory (``console/*.png``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.interop.lab import V4_HOST, V6_GW, V6_HOST, Lab, stop
from tests.interop.peers import Gateway, Sipp, media_dirs, report, wait_port
from tests.interop.webclient import (
    ADMIN_PASSWORD,
    Web,
    register,
    set_admin_password,
    web_config,
)

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "ss", "curl", "chromium")

DRIVER = Path(__file__).resolve().parent / "web_console_driver.py"
ROOT = Path(__file__).resolve().parents[2]
WEB = f"[{V6_GW}]:8443"
ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", "udp:10.64.4.1:5060",
    "--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24",
    "--domain", "example.net", "--media-ports", "30000-30100", "--only", "sip,media",
]  # fmt: skip


def _wait_file(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"console driver did not get ready:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


def test_console_login_live_call_and_pages(net: Lab, work: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.fail("chromium missing as root (Debian package chromium)")
    set_admin_password(net.gw, work / "data")
    gw = Gateway(net.gw, work, ARGS, config=web_config(WEB) + "tls = true\n")
    Web(net.v6, f"https://{WEB}", work, insecure=True).wait_up()
    register(net.v6, work, str(V6_HOST), f"[{V6_GW}]:5060")

    shots = work / "console"
    shots.mkdir()
    log = work / "driver.log"
    driver = net.v6.popen(
        [sys.executable, str(DRIVER), f"https://{WEB}", "admin", ADMIN_PASSWORD, str(shots)],
        log=log, env={"PYTHONPATH": str(ROOT), "HOME": str(work)},
    )  # fmt: skip
    _wait_file(shots / "ready", driver, log, 60)

    uas_dir, uac_dir = media_dirs(work, "call")
    callee = Sipp(net.v4, uas_dir, "uas", "uas_media.xml", local=str(V4_HOST), port=5060)
    wait_port(net.v4, "udp", 5060)
    caller = Sipp(
        net.v6, uac_dir, "uac", "web_uac_call.xml", local=str(V6_HOST), port=5070,
        remote=f"[{V6_GW}]:5060", keys={"target": f"{V4_HOST}:5060"},
        extra=["-s", "callee", "-d", "6000"],
    )  # fmt: skip
    assert caller.wait() == 0, report(gw, caller, callee)
    assert callee.wait() == 0, report(gw, caller, callee)
    try:
        code = driver.wait(150)
    except subprocess.TimeoutExpired:
        stop(driver)
        code = -1
    assert code == 0, log.read_text()[-6000:]

    seen = json.loads((shots / "result.json").read_text())
    assert seen["wrong_password"] == "wrong user or password"
    assert seen["login_form_visible_after_login"] is False
    (cookie,) = seen["cookies"]
    assert cookie == {
        "name": "rtc64_session",
        "secure": True,
        "httpOnly": True,
        "sameSite": "Strict",
    }
    assert "IPv6" in seen["live_call"] and "IPv4" in seen["live_call"], seen["live_call"]
    assert "pkts" in seen["live_call"]
    # the proxy's view: state, each side's family, transport and address, relay use
    live = seen["live_call"]
    assert "confirmed" in live and f"IPv6 udp [{V6_HOST}]:5070" in live, live
    assert f"IPv4 udp {V4_HOST}:5060" in live and "yes" in live, live
    assert seen["overview_contacts"] == "1"
    assert "IPv6" in seen["overview_families"]
    assert "sip:alice@example.net" in seen["registrations"]
    assert "set, hidden" in seen["status"]
    assert seen["after_logout"] == 401
    assert "sip:[fd00:64:6::1]" in seen["probe_row"] and "IPv6" in seen["probe_row"]
    assert seen["probe_title"] == "rtc64 probe report"
    assert "sip:[fd00:64:6::1]" in seen["probe_text"]
    assert seen["console_errors"] == [] or all("401" in e for e in seen["console_errors"]), seen
    for name in ("01-login", "02-calls-empty", "03-call-live", "04-call-ended", "05-overview",
                 "06-registrations", "07-probe-runs", "08-probe-report"):  # fmt: skip
        png = (shots / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000, name
    assert "Traceback" not in gw.text()
