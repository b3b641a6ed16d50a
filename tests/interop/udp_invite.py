"""A minimal SIP UAC over UDP for interop tests: one INVITE, the final response as JSON.

``python -m tests.interop.udp_invite GW_HOST GW_PORT REQUEST_URI [TIMEOUT]`` sends an
INVITE to the gateway, ACKs a non-2xx final (RFC 3261 §17.1.1.3) and prints
``{"status": ..., "reason": ..., "elapsed": ...}`` (status 0 when nothing came in time).
"""

from __future__ import annotations

import json
import secrets
import socket
import sys
import time


def _request(method: str, uri: str, local: tuple[str, int], branch: str, call_id: str) -> bytes:
    host = f"[{local[0]}]" if ":" in local[0] else local[0]
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {host}:{local[1]};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:alice@{host}>;tag=uac1",
        f"To: <{uri}>",
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:alice@{host}:{local[1]}>",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def invite(gw: tuple[str, int], uri: str, timeout: float) -> dict[str, object]:
    family = socket.AF_INET6 if ":" in gw[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(gw)
        local = sock.getsockname()[:2]
        branch, call_id = "z9hG4bK" + secrets.token_hex(6), secrets.token_hex(8) + "@uac"
        data = _request("INVITE", uri, local, branch, call_id)
        start = time.monotonic()
        sock.send(data)
        resend, interval = start + 0.5, 0.5
        while True:
            now = time.monotonic()
            if now - start > timeout:
                return {"status": 0, "reason": "", "elapsed": now - start}
            if now >= resend and interval:  # Timer A until a provisional arrives
                sock.send(data)
                interval *= 2
                resend = now + interval
            sock.settimeout(max(0.01, min(resend, start + timeout) - now))
            try:
                reply = sock.recv(65535)
            except TimeoutError:
                continue
            head = reply.split(b"\r\n", 1)[0].decode("utf-8", "replace")
            parts = head.split(" ", 2)
            if len(parts) < 2 or not parts[1].isdigit():
                continue
            status = int(parts[1])
            if status < 200:
                interval = 0
                continue
            elapsed = time.monotonic() - start
            if status >= 300:
                ack = _request("ACK", uri, local, branch, call_id)
                to = next((ln for ln in reply.split(b"\r\n") if ln.lower().startswith(b"to:")), b"")
                if to:
                    ack = ack.replace(f"To: <{uri}>".encode(), to)
                sock.send(ack)
            return {
                "status": status,
                "reason": parts[2] if len(parts) > 2 else "",
                "elapsed": elapsed,
            }


if __name__ == "__main__":
    host, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    wait = float(sys.argv[4]) if len(sys.argv) > 4 else 40.0
    print(json.dumps(invite((host, port), target, wait)))
