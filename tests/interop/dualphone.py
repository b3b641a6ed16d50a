"""A minimal dual-stack SIP phone for the lab, run inside the dual-stack host:
``python -m tests.interop.dualphone FIRST TARGET`` (FIRST is 4 or 6).

It calls TARGET through rtc64 over the FIRST family (INVITE with ``c=`` of that family),
sends 1.5 s of G.711 RTP from its port of that family to the address the 200's SDP names,
then moves: a re-INVITE over the other family, with ``c=`` and a media port of that
family, through the same Route set; after its 200 it sends RTP from the new port. Then a
BYE. SIPp cannot change its local family mid-call, hence this UA; the gateway and the far
end (SIPp with ``-rtp_echo``) are real. Prints one JSON object: every status, both
answers' SDP and the RTP packets received on each port before and after the move.
"""

from __future__ import annotations

import json
import os
import re
import select
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

from tests.interop.lab import V4_DS, V4_GW, V6_DS, V6_GW

SIP_PORT = 5080
RTP_PORTS = {4: 40000, 6: 40002}
PACKETS = 75  # 1.5 s at 20 ms


def host_text(family: int) -> str:
    return str(V4_DS) if family == 4 else f"[{V6_DS}]"


@dataclass
class Phone:
    target: str
    call_id: str = field(default_factory=lambda: f"dual-{os.getpid()}-{time.time_ns()}@lab")
    tag: str = "dualphone"
    cseq: int = 0
    branch: int = 0
    remote_tag: str = ""
    remote_target: str = ""
    routes: list[str] = field(default_factory=list)
    sip: dict[int, socket.socket] = field(default_factory=dict)
    rtp: dict[int, socket.socket] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for family, af, local in ((4, socket.AF_INET, V4_DS), (6, socket.AF_INET6, V6_DS)):
            s = socket.socket(af, socket.SOCK_DGRAM)
            s.bind((str(local), SIP_PORT))
            self.sip[family] = s
            r = socket.socket(af, socket.SOCK_DGRAM)
            r.bind((str(local), RTP_PORTS[family]))
            r.setblocking(False)
            self.rtp[family] = r

    # -- SIP ---------------------------------------------------------------------------

    def _request(self, method: str, family: int, uri: str, body: str = "") -> bytes:
        self.branch += 1
        if method != "ACK":
            self.cseq += 1
        to = f"<{self.target}>" + (f";tag={self.remote_tag}" if self.remote_tag else "")
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {host_text(family)}:{SIP_PORT};branch=z9hG4bKdual{self.branch}"
            ";rport",
            *(f"Route: {r}" for r in self.routes),
            f"From: <sip:dual@example.net>;tag={self.tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            f"Contact: <sip:dual@{host_text(family)}:{SIP_PORT}>",
            "Max-Forwards: 70",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def _gateway(self, family: int) -> tuple[str, int]:
        return (str(V4_GW) if family == 4 else str(V6_GW), 5060)

    def transact(self, method: str, family: int, uri: str, body: str = "") -> dict[str, object]:
        """Send a request (retransmitted every 0.5 s) until a final response; return it."""
        data = self._request(method, family, uri, body)
        sock = self.sip[family]
        deadline = time.monotonic() + 15
        next_send = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= next_send:
                sock.sendto(data, self._gateway(family))
                next_send = time.monotonic() + 0.5
            ready, _, _ = select.select([sock], [], [], 0.1)
            if not ready:
                continue
            resp = parse(sock.recv(65535))
            if resp.get("cseq") != f"{self.cseq} {method}":
                continue
            status = int(str(resp["status"]))
            if status >= 200:
                return resp
            if method == "INVITE":
                next_send = deadline  # provisional: stop retransmitting
        raise TimeoutError(f"no final response to {method}")

    def ack(self, family: int) -> None:
        self.sip[family].sendto(
            self._request("ACK", family, self.remote_target), self._gateway(family)
        )

    # -- RTP -----------------------------------------------------------------------------

    def talk(self, family: int, dest: tuple[str, int], label: str) -> None:
        """Send PACKETS RTP packets from the port of ``family``; count what every port gets."""
        sock = self.rtp[family]
        ssrc = 0x64640000 + family
        start = time.monotonic()
        for seq in range(PACKETS):
            header = struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc)
            sock.sendto(header + b"\xff" * 160, dest)
            self.drain(label, until=start + (seq + 1) * 0.02)
        self.drain(label, until=time.monotonic() + 0.3)

    def drain(self, label: str, until: float) -> None:
        socks = list(self.rtp.items())
        while (left := until - time.monotonic()) > 0:
            ready, _, _ = select.select([s for _, s in socks], [], [], left)
            for family, s in socks:
                if s in ready:
                    while True:
                        try:
                            s.recv(2048)
                        except BlockingIOError:
                            break
                        key = f"{label}:rx{family}"
                        self.received[key] = self.received.get(key, 0) + 1


def parse(data: bytes) -> dict[str, object]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    out: dict[str, object] = {"status": lines[0].split(" ")[1], "body": body.decode()}
    record_routes: list[str] = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        value = value.strip()
        if key == "record-route":
            record_routes += [v.strip() for v in re.split(r",\s*(?=<)", value)]
        elif key in ("to", "t"):
            out["to"] = value
        elif key in ("contact", "m"):
            out["contact"] = value
        elif key == "cseq":
            out["cseq"] = value
    out["record_routes"] = record_routes
    return out


def sdp(family: int, version: int) -> str:
    ip = str(V4_DS) if family == 4 else str(V6_DS)
    fam = f"IP{family}"
    return (
        f"v=0\r\no=- 7 {version} IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\n"
        f"m=audio {RTP_PORTS[family]} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )


def media_of(body: str) -> tuple[str, int]:
    address = re.search(r"^c=IN IP[46] (\S+)", body, re.M)
    port = re.search(r"^m=audio (\d+) ", body, re.M)
    assert address is not None and port is not None, body
    return address.group(1), int(port.group(1))


def main(argv: list[str]) -> int:
    first, target = int(argv[1]), argv[2]
    other = 6 if first == 4 else 4
    phone = Phone(target)
    report: dict[str, object] = {}
    ok = phone.transact("INVITE", first, target, sdp(first, 1))
    report["invite"] = ok["status"]
    phone.remote_tag = str(ok["to"]).rsplit("tag=", 1)[1].split(";")[0]
    phone.remote_target = str(ok["contact"]).strip("<>").split(">")[0]
    record_routes = ok["record_routes"]
    assert isinstance(record_routes, list)
    phone.routes = [str(r) for r in reversed(record_routes)]
    report["answer1"] = ok["body"]
    phone.ack(first)
    phone.talk(first, media_of(str(ok["body"])), "before")

    moved = phone.transact("INVITE", other, phone.remote_target, sdp(other, 2))
    report["reinvite"] = moved["status"]
    report["answer2"] = moved["body"]
    phone.ack(other)
    phone.talk(other, media_of(str(moved["body"])), "after")

    bye = phone.transact("BYE", other, phone.remote_target)
    report["bye"] = bye["status"]
    report["received"] = phone.received
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
