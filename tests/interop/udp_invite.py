"""A minimal SIP UAC over UDP for interop tests: one INVITE, the final response as JSON.

``python -m tests.interop.udp_invite GW_HOST GW_PORT REQUEST_URI [TIMEOUT]`` sends an
INVITE to the gateway, ACKs a non-2xx final (RFC 3261 §17.1.1.3) and prints
``{"status": ..., "reason": ..., "elapsed": ...}`` (status 0 when nothing came in time).
With ``--until-ok`` first, it sends a new OPTIONS every 0.1 s instead, as a phone retries
after 503, until five in a row get 200, i.e. the gateway admits every new request again
(``{"status", "elapsed", "refused"}``).
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


def options_until_ok(
    gw: tuple[str, int], uri: str, timeout: float, in_a_row: int = 5
) -> dict[str, object]:
    """A new OPTIONS every 0.1 s until ``in_a_row`` are answered 200 (or ``timeout``).

    Answers may come late (a busy gateway): a 200 to any OPTIONS sent here counts, a 503
    (or any other final) to one resets the count."""
    family = socket.AF_INET6 if ":" in gw[0] else socket.AF_INET
    start, refused, ok, last = time.monotonic(), 0, 0, ""
    sent: set[bytes] = set()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect(gw)
        local = sock.getsockname()[:2]
        next_send = start
        while time.monotonic() - start < timeout:
            now = time.monotonic()
            if now >= next_send:
                branch, call_id = "z9hG4bK" + secrets.token_hex(6), secrets.token_hex(8) + "@uac"
                sock.send(_request("OPTIONS", uri, local, branch, call_id))
                sent.add(branch.encode())
                next_send = now + 0.1
            sock.settimeout(max(0.01, next_send - time.monotonic()))
            try:
                reply = sock.recv(65535)
            except TimeoutError:
                continue
            if not any(b in reply for b in sent):
                continue
            if reply.startswith(b"SIP/2.0 200 "):
                ok += 1
                if ok >= in_a_row:
                    return {"status": 200, "elapsed": time.monotonic() - start, "refused": refused}
            else:
                ok, refused = 0, refused + 1
                last = reply.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    return {"status": 0, "elapsed": time.monotonic() - start, "refused": refused, "last": last}


if __name__ == "__main__":
    args = sys.argv[1:]
    until_ok = args[:1] == ["--until-ok"]
    args = args[1:] if until_ok else args
    host, port, target = args[0], int(args[1]), args[2]
    wait = float(args[3]) if len(args) > 3 else 40.0
    run = options_until_ok if until_ok else invite
    print(json.dumps(run((host, port), target, wait)))
