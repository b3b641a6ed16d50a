"""Real RTP through ``rtc64 serve``'s media relay, with SIPp playing G.711 in the lab.

Topology (tests/interop/lab.py, with the dual-stack host): v6 host fd00:64:6::2 —
gateway (fd00:64:6::1, 10.64.4.1; fd00:64:5::1, 10.64.5.1) — v4 host 10.64.4.2, and the
dual-stack host fd00:64:5::2 + 10.64.5.2. Forwarding is off in the gateway: RTP crosses
only through the relay. SIPp plays the first 1.5 s of its G.711 sample capture
(``play_pcap_audio``) or echoes (``-rtp_echo``); tcpdump on each phone's host counts the
RTP that really arrived there, per direction and relative to the SIP messages around it.
Both hosts' networks are trusted, so no authentication is involved.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, Host, Lab, stop
from tests.interop.peers import Gateway, Sipp, report, sipp_received, wait_port
from tests.interop.sniff import Datagram, Sniffer, first_sip, rtp

pytestmark = pytest.mark.interop
LAB_TOOLS = ("sipp", "tcpdump", "ss")
LAB_DUAL_STACK = True

ROOT = Path(__file__).resolve().parents[2]
GW6 = f"[{V6_GW}]:5060"
LISTEN = ["--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060"]
TRUSTED = [
    "--trusted-network", "fd00:64:6::/64", "--trusted-network", "10.64.4.0/24",
    "--trusted-network", "fd00:64:5::/64", "--trusted-network", "10.64.5.0/24",
]  # fmt: skip
SAMPLES = (Path("/usr/share/sip-tester/g711a.pcap"), Path("/usr/share/sipp/g711a.pcap"))
CLIP = 50  # packets of the sample played per clip: 1.5 s at 30 ms
ENOUGH = 40  # of a clip, to count as "media arrived" (loss-free lab; a little slack)
MEDIA_PORT = 6000  # SIPp's default -mp


def _clip(directory: Path) -> Path:
    """A SIPp working directory holding ``rtp.pcap``: CLIP packets of the G.711 sample."""
    sample = next((p for p in SAMPLES if p.exists()), None)
    if sample is None:
        pytest.fail(f"SIPp's G.711 sample capture is missing (looked in {SAMPLES})")
    directory.mkdir(exist_ok=True)
    out = directory / "rtp.pcap"
    subprocess.run(
        ["tcpdump", "-Z", "root", "-r", str(sample), "-c", str(CLIP), "-w", str(out)],
        check=True,
        capture_output=True,
    )
    return directory


def _media(message: str) -> tuple[str, int]:
    """(c= line, m= port) of a traced message's SDP."""
    sdp = message.replace("\r\n", "\n").partition("\n\n")[2]
    conn = re.search(r"^c=(IN IP[46] \S+)", sdp, re.M)
    port = re.search(r"^m=audio (\d+) ", sdp, re.M)
    assert conn is not None and port is not None, message
    return conn.group(1), int(port.group(1))


def _counts(packets: list[Datagram]) -> str:
    flows: dict[str, int] = {}
    for p in packets:
        if p.is_rtp:
            key = f"{p.src}:{p.sport} > {p.dst}:{p.dport}"
            flows[key] = flows.get(key, 0) + 1
    return ", ".join(f"{k}: {n}" for k, n in sorted(flows.items())) or "no RTP"


def _pair(
    net: Lab,
    work: Path,
    uac: str,
    uas: str,
    *,
    uac_extra: tuple[str, ...] = (),
    uas_extra: tuple[str, ...] = (),
) -> tuple[Sipp, Sipp]:
    """A SIPp UAS on the IPv4-only host and a UAC calling it from the IPv6-only host."""
    uas_dir, uac_dir = _clip(work / "uas"), _clip(work / "uac")
    callee = Sipp(net.v4, uas_dir, "uas", uas, local=str(V4_HOST), port=5060, extra=uas_extra)
    wait_port(net.v4, "udp", 5060)
    caller = Sipp(
        net.v6, uac_dir, "uac", uac, local=str(V6_HOST), port=5070, remote=GW6,
        keys={"target": f"{V4_HOST}:5060"}, extra=["-s", "callee", *uac_extra],
    )  # fmt: skip
    return caller, callee


def _finish(gw: Gateway, caller: Sipp, callee: Sipp) -> None:
    assert caller.wait() == 0, report(gw, caller, callee)
    assert callee.wait() == 0, report(gw, caller, callee)
    assert "Traceback" not in gw.text(), gw.text()[-6000:]


def test_call_from_ipv6_to_ipv4_has_media_both_ways(net: Lab, work: Path) -> None:
    """Both ends play: the caller's stream reaches the IPv4 callee from the relay's IPv4
    address, the callee's reaches the IPv6 caller from the relay's IPv6 address."""
    gw = Gateway(net.gw, work, [*LISTEN, *TRUSTED])
    at6, at4 = Sniffer(net.v6, work, "v6"), Sniffer(net.v4, work, "v4")
    caller, callee = _pair(net, work, "uac_media.xml", "uas_media.xml")
    _finish(gw, caller, callee)
    seen6, seen4 = at6.stop(), at4.stop()
    to_callee = rtp(seen4, src=V4_GW, dst=V4_HOST, dport=MEDIA_PORT)
    to_caller = rtp(seen6, src=V6_GW, dst=V6_HOST, dport=MEDIA_PORT)
    assert len(to_callee) >= ENOUGH, _counts(seen4)
    assert len(to_caller) >= ENOUGH, _counts(seen6)
    # What the phones sent went to the relay, on their own family.
    assert len(rtp(seen6, src=V6_HOST, dst=V6_GW)) >= ENOUGH, _counts(seen6)
    assert len(rtp(seen4, src=V4_HOST, dst=V4_GW)) >= ENOUGH, _counts(seen4)
    # The relay address each side was given is the one the media came from.
    (ok,) = [m for m in sipp_received(work / "uac", "SIP/2.0 200") if "INVITE" in m]
    assert _media(ok) == (f"IN IP6 {V6_GW}", to_caller[0].sport), ok
    (offer,) = sipp_received(work / "uas", "INVITE ")
    assert _media(offer) == (f"IN IP4 {V4_GW}", to_callee[0].sport), offer


def test_hold_and_resume_keep_the_call_and_its_media(net: Lab, work: Path) -> None:
    """The caller plays, holds (re-INVITE a=sendonly), is silent for 7 s, resumes
    (a=sendrecv) and plays again; the callee echoes. With ``media.timeout`` 3 s the held
    call is not ended (``hold_timeout`` applies), media flows again after the resume on
    the same relay ports, and the call ends normally."""
    gw = Gateway(net.gw, work, [*LISTEN, *TRUSTED], config="[media]\ntimeout = 3\n")
    at6, at4 = Sniffer(net.v6, work, "v6"), Sniffer(net.v4, work, "v4")
    caller, callee = _pair(net, work, "uac_hold.xml", "uas_hold.xml", uas_extra=("-rtp_echo",))
    _finish(gw, caller, callee)
    seen6, seen4 = at6.stop(), at4.stop()

    hold = first_sip(seen4, b"INVITE ", b"CSeq: 2 INVITE").time
    resume = first_sip(seen4, b"INVITE ", b"CSeq: 3 INVITE").time
    before = rtp(seen4, src=V4_GW, dst=V4_HOST, dport=MEDIA_PORT, before=hold)
    during = rtp(seen4, src=V4_GW, dst=V4_HOST, after=hold, before=resume)
    after = rtp(seen4, src=V4_GW, dst=V4_HOST, dport=MEDIA_PORT, after=resume)
    assert len(before) >= ENOUGH, _counts(seen4)
    assert len(during) == 0, "the caller is silent on hold"
    assert len(after) >= ENOUGH, f"media after resume: {_counts(seen4)}"
    resumed = first_sip(seen6, b"SIP/2.0 200", b"CSeq: 3 INVITE").time
    echoed = rtp(seen6, src=V6_GW, dst=V6_HOST, dport=MEDIA_PORT, after=resumed)
    assert len(echoed) >= ENOUGH, f"echo after resume: {_counts(seen6)}"

    # Each side was offered/answered the same relay address and port all along.
    offers = sipp_received(work / "uas", "INVITE ")
    assert len(offers) == 3, offers
    assert len({_media(m) for m in offers}) == 1, offers
    assert "a=sendonly" in offers[1] and "a=sendrecv" in offers[2], offers
    answers = [m for m in sipp_received(work / "uac", "SIP/2.0 200") if "INVITE" in m]
    assert len(answers) == 3, answers
    assert {_media(m) for m in answers} == {_media(answers[0])}, answers
    assert _media(answers[0])[0] == f"IN IP6 {V6_GW}"
    assert "a=recvonly" in answers[1], answers[1]
    assert "timed out" not in gw.text(), gw.text()[-6000:]


def test_early_media_flows_before_the_200(net: Lab, work: Path) -> None:
    """The callee answers in a 183 with SDP and plays 2.5 s before its 200; the caller
    echoes. Both streams cross the relay before the call is answered."""
    gw = Gateway(net.gw, work, [*LISTEN, *TRUSTED])
    at6, at4 = Sniffer(net.v6, work, "v6"), Sniffer(net.v4, work, "v4")
    caller, callee = _pair(net, work, "uac_early.xml", "uas_early.xml", uac_extra=("-rtp_echo",))
    _finish(gw, caller, callee)
    seen6, seen4 = at6.stop(), at4.stop()

    answered6 = first_sip(seen6, b"SIP/2.0 200", b"CSeq: 1 INVITE").time
    early = rtp(seen6, src=V6_GW, dst=V6_HOST, dport=MEDIA_PORT, before=answered6)
    assert len(early) >= ENOUGH, f"early media at the caller: {_counts(seen6)}"
    answered4 = first_sip(seen4, b"SIP/2.0 200", b"CSeq: 1 INVITE").time
    echoed = rtp(seen4, src=V4_GW, dst=V4_HOST, dport=MEDIA_PORT, before=answered4)
    assert len(echoed) >= ENOUGH, f"the caller's early media at the callee: {_counts(seen4)}"
    (progress,) = sipp_received(work / "uac", "SIP/2.0 183")
    assert _media(progress) == (f"IN IP6 {V6_GW}", early[0].sport), progress


@pytest.mark.parametrize("first", [4, 6])
def test_dual_stack_phone_moves_family_mid_call_and_keeps_its_audio(
    net: Lab, work: Path, first: int
) -> None:
    """The dual-stack phone calls over one family, then re-INVITEs over the other with
    ``c=`` of that family. It is answered with the relay's address of the new family and
    hears the far end (SIPp echoing) again; the far end's media path never changes."""
    gw = Gateway(net.gw, work, [*LISTEN, *TRUSTED])
    # The far end is on the family the phone does not start with: the call starts bridged.
    far: Host = net.v6 if first == 4 else net.v4
    far_ip, gw_ip = (V6_HOST, V6_GW) if first == 4 else (V4_HOST, V4_GW)
    uas_dir = work / "uas"
    uas_dir.mkdir()
    callee = Sipp(
        far, uas_dir, "uas", "uas_reinvite.xml", local=str(far_ip), port=5060,
        extra=("-rtp_echo",),
    )  # fmt: skip
    wait_port(far, "udp", 5060)
    sniff = Sniffer(far, work, "far")
    host = f"[{far_ip}]" if far_ip.version == 6 else str(far_ip)
    log = work / "dualphone.log"
    phone = net.dual.popen(
        [sys.executable, "-m", "tests.interop.dualphone", str(first), f"sip:callee@{host}:5060"],
        log=log, cwd=ROOT,
    )  # fmt: skip
    try:
        phone.wait(60)
    finally:
        stop(phone)
    text = log.read_text(errors="replace")
    assert phone.returncode == 0, text + report(gw, callee)
    result = json.loads(text.strip().splitlines()[-1])
    assert callee.wait() == 0, report(gw, callee)
    seen = sniff.stop()

    other = 6 if first == 4 else 4
    first_gw, other_gw = (V4_GW, V6_GW) if first == 4 else (V6_GW, V4_GW)
    assert (result["invite"], result["reinvite"], result["bye"]) == ("200", "200", "200"), result
    assert f"c=IN IP{first} {first_gw}\r\n" in result["answer1"], result
    assert f"c=IN IP{other} {other_gw}\r\n" in result["answer2"], result
    received = result["received"]
    assert received.get(f"before:rx{first}", 0) >= 60, received
    assert received.get(f"after:rx{other}", 0) >= 60, received
    # The far end was re-offered exactly what it had: the relay, same address and port.
    offers = sipp_received(uas_dir, "INVITE ")
    assert len(offers) == 2, offers
    assert _media(offers[0]) == _media(offers[1]) == (f"IN IP{far_ip.version} {gw_ip}",
                                                      _media(offers[0])[1]), offers  # fmt: skip
    moved = first_sip(seen, b"INVITE ", b"CSeq: 2 INVITE").time
    to_far = rtp(seen, src=gw_ip, dst=far_ip, dport=MEDIA_PORT)
    assert len([p for p in to_far if p.time < moved]) >= 60, _counts(seen)
    assert len([p for p in to_far if p.time > moved]) >= 60, _counts(seen)
    assert len({p.sport for p in to_far}) == 1, _counts(seen)


def test_media_timeout_ends_the_call_with_bye_to_both_sides(net: Lab, work: Path) -> None:
    """The caller plays 1.5 s and then falls silent (the callee only echoes): after
    ``media.timeout`` the relay reports the call idle and rtc64 sends each side a BYE,
    which both SIPp instances answer with 200."""
    gw = Gateway(net.gw, work, [*LISTEN, *TRUSTED], config="[media]\ntimeout = 3\n")
    caller, callee = _pair(net, work, "uac_timeout.xml", "uas.xml", uas_extra=("-rtp_echo",))
    _finish(gw, caller, callee)
    log = gw.text()
    assert "timed out (no media)" in log, log[-6000:]
    assert "media timeout: ending call" in log, log[-6000:]
    for side in ("uac", "uas"):
        byes = sipp_received(work / side, "BYE ")
        assert len(byes) == 1, report(gw, caller, callee)
        assert 'Reason: SIP;cause=408;text="Media timeout"' in byes[0], byes[0]
