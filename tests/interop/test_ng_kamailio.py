"""Kamailio's rtpengine module drives rtc64's media relay over the ng protocol.

Topology (tests/interop/lab.py): v6 host fd00:64:6::2 — gateway (fd00:64:6::1,
10.64.4.1) — v4 host 10.64.4.2. In the gateway namespace run Kamailio (listening on both
legs, calling rtpengine_offer/answer/delete) and ``rtc64 relay`` (the relay and its ng
socket on 127.0.0.1). A SIPp UAC on the IPv6-only host calls a SIPp UAS
on the IPv4-only host: the UAS must get an SDP with ``c=IN IP4 10.64.4.1`` (the relay),
the caller a 200 OK whose SDP says ``c=IN IP6 fd00:64:6::1``.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Host, Lab
from tests.interop.peers import Sipp, sipp_received, wait_port

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "kamailio", "ss")

NG_PORT = 2223
MEDIA_PORTS = "42000-42100"

KAMAILIO_NG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
auto_aliases=no
loadpath "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:NG_PORT")
modparam("rtpengine", "rtpengine_retr", 2)
request_route {
    if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
    if (has_totag()) {
        if (loose_route()) {
            if (is_method("BYE")) { rtpengine_delete(); }
            t_relay();
            exit;
        }
        if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } exit; }
        sl_send_reply("404", "Not here");
        exit;
    }
    if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
    if (!is_method("INVITE")) { sl_send_reply("405", "Method Not Allowed"); exit; }
    record_route();
    if (has_body("application/sdp")) {
        if (!rtpengine_offer("OFFER_FLAGS")) {
            sl_send_reply("503", "Media relay unavailable");
            exit;
        }
    }
    t_on_reply("MEDIA");
    t_on_failure("FAILED");
    xlog("L_INFO", "ngtest: $rm $ru from $si\\n");
    t_relay();
}
onreply_route[MEDIA] {
    if (has_body("application/sdp")) { rtpengine_answer("ANSWER_FLAGS"); }
}
failure_route[FAILED] {
    rtpengine_delete();
}
"""

COMMON = "replace-origin replace-session-connection ICE=remove trust-address"
STYLES = {
    # rtpengine's "address family" flag, per direction.
    "address-family": (f"address-family=IP4 {COMMON}", f"address-family=IP6 {COMMON}"),
    # Interface names, mapped to families by rtc64's ng.interfaces (internal=ipv4,
    # external=ipv6); the answer names none: the relay answers on the offerer's family.
    "direction": (f"direction=external direction=internal {COMMON}", COMMON),
}


class NgServer:
    """rtc64's relay + ng listener, alone, in the gateway namespace."""

    def __init__(self, host: Host, workdir: Path) -> None:
        self.log = workdir / "ngserver.log"
        argv = [sys.executable, "-m", "rtc64", "relay", "--log-level", "debug"]
        argv += ["--ng-listen", f"udp:127.0.0.1:{NG_PORT}", "--media-ports", MEDIA_PORTS]
        argv += ["--media-address", str(V6_GW), "--media-address", str(V4_GW)]
        argv += ["--interface", "internal=ipv4", "--interface", "external=ipv6"]
        self.proc = host.popen(argv, log=self.log)
        deadline = time.monotonic() + 20
        while "ng server ready" not in self.text():
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"rtc64 relay exited with {self.proc.returncode}:\n{self.text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"rtc64 relay not ready:\n{self.text()}")
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class KamailioNg:
    """Kamailio on both gateway legs, with rtpengine_* calls pointed at rtc64."""

    def __init__(self, host: Host, workdir: Path, offer: str, answer: str) -> None:
        self.log = workdir / "kamailio.log"
        script = KAMAILIO_NG.replace("NG_PORT", str(NG_PORT))
        script = script.replace("OFFER_FLAGS", offer).replace("ANSWER_FLAGS", answer)
        config = workdir / "kamailio.cfg"
        config.write_text(script)
        argv = ["kamailio", "-f", str(config), "-DD", "-E", "-Y", str(workdir)]
        argv += ["-l", f"udp:[{V6_GW}]:5060", "-l", f"udp:{V4_GW}:5060"]
        argv += ["-P", str(workdir / "kamailio.pid"), "-w", str(workdir)]
        self.proc = host.popen(argv, log=self.log)
        wait_port(host, "udp", 5060)
        deadline = time.monotonic() + 10
        while "rtpengine instance <udp:127.0.0.1" not in self.text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Kamailio did not reach rtc64's ng socket:\n{self.text()}")
            time.sleep(0.05)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _sdp(message: str) -> str:
    return message.replace("\r\n", "\n").partition("\n\n")[2]


def _report(ng: NgServer, kam: KamailioNg, *sipps: Sipp) -> str:
    parts = ["--- rtc64 relay\n" + ng.text()[-6000:], "--- kamailio\n" + kam.text()[-6000:]]
    for s in sipps:
        parts.append(f"--- sipp {s.name}\n" + s.log.read_text(errors="replace")[-2000:])
        parts.append(s.messages())
    return "\n".join(parts)


def _call(
    net: Lab, work: Path, style: str, scenario: str = "uac.xml", uas_extra: tuple[str, ...] = ()
) -> tuple[NgServer, KamailioNg, Path, Path]:
    """One call from the IPv6-only host to the IPv4-only host through Kamailio + rtc64."""
    offer, answer = STYLES[style]
    ng = NgServer(net.gw, work)
    kam = KamailioNg(net.gw, work, offer, answer)
    uas_dir, uac_dir = work / "uas", work / "uac"
    uas_dir.mkdir()
    uac_dir.mkdir()
    uas = Sipp(net.v4, uas_dir, "uas", "uas.xml", local=str(V4_HOST), port=5060, extra=uas_extra)
    wait_port(net.v4, "udp", 5060)
    uac = Sipp(
        net.v6, uac_dir, "uac", scenario, local=str(V6_HOST), port=5070,
        remote=f"[{V6_GW}]:5060", keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "bob"],
    )  # fmt: skip
    assert uac.wait() == 0, _report(ng, kam, uac, uas)
    assert uas.wait() == 0, _report(ng, kam, uac, uas)
    return ng, kam, uac_dir, uas_dir


@pytest.mark.parametrize("style", sorted(STYLES))
def test_kamailio_bridges_ipv6_caller_to_ipv4_callee_through_rtc64(
    net: Lab, work: Path, style: str
) -> None:
    ng, _, uac_dir, uas_dir = _call(net, work, style)
    log = ng.text()

    # The IPv4-only callee was offered the relay's IPv4 address, nothing of IPv6.
    invites = sipp_received(uas_dir, "INVITE ")
    assert invites, log[-4000:]
    offered = _sdp(invites[0])
    assert f"c=IN IP4 {V4_GW}" in offered, offered
    assert "IP6" not in offered, offered
    port4 = re.search(r"^m=audio (\d+) ", offered, re.M)
    assert port4 is not None and 42000 <= int(port4.group(1)) <= 42100, offered

    # The IPv6-only caller got the relay's IPv6 address in the answer.
    oks = [m for m in sipp_received(uac_dir, "SIP/2.0 200") if "application/sdp" in m]
    assert oks, log[-4000:]
    answered = _sdp(oks[0])
    assert f"c=IN IP6 {V6_GW}" in answered, answered
    assert "IP4" not in answered, answered

    # Kamailio pinged, offered, answered and deleted through the ng socket.
    for command in ("ping", "offer", "answer", "delete"):
        assert re.search(rf"ng \S+ {command}\b[^\n]* -> ok", log), log[-4000:]
    assert "Traceback" not in log, log[-4000:]
    if style == "direction":
        assert "unknown interface" not in log, log[-4000:]


def test_media_crosses_families_both_ways(net: Lab, work: Path) -> None:
    """The caller plays G.711 over IPv6 to the relay; the relay sends it to the callee over
    IPv4, where SIPp echoes it back; the relay returns it to the caller over IPv6."""
    ng, _, _, _ = _call(net, work, "direction", "uac_media.xml", ("-rtp_echo",))
    log = ng.text()
    deleted = re.search(r"ng deleted call-id=\S+: (.*)", log)
    assert deleted is not None, log[-4000:]
    counts = re.findall(r"RTP (\d+) received, (\d+) forwarded", deleted.group(1))
    assert len(counts) == 2, deleted.group(0)
    for received, forwarded in counts:  # caller's packets, then the callee's echo
        assert int(received) >= 20 and int(forwarded) >= 20, deleted.group(0)
    assert "Traceback" not in log, log[-4000:]
