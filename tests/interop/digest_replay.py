"""A REGISTER with digest credentials, then the same request replayed elsewhere, for the
SIP workers test (run inside a lab namespace; MD5, qop=auth, computed here by hand).

    python -m tests.interop.digest_replay LOCAL_IP FIRST_GW_HOST:PORT OTHER_GW_HOST:PORT
        USER PASSWORD DOMAIN

1. REGISTER through FIRST (401, then 200 with nc=00000001);
2. the same credentials in a new request from another port to OTHER (a replay);
3. a new REGISTER with the same nonce and nc=00000002 to OTHER (a client going on).
Prints ``{"first": status, "replay": status, "next": status, "stale": bool}`` (0: no answer).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import socket
import sys


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _register(local: tuple[str, int], user: str, domain: str, cseq: int, auth: str = "") -> bytes:
    branch = "z9hG4bK" + secrets.token_hex(6)
    lines = [
        f"REGISTER sip:{domain} SIP/2.0",
        f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@{domain}>;tag=rp{cseq}",
        f"To: <sip:{user}@{domain}>",
        "Call-ID: replay-test@lab",
        f"CSeq: {cseq} REGISTER",
        f"Contact: <sip:{user}@{local[0]}:{local[1]}>",
        "Expires: 300",
    ]
    if auth:
        lines.append(f"Authorization: {auth}")
    return ("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode()


def _exchange(sock: socket.socket, data: bytes, to: tuple[str, int]) -> bytes:
    sock.sendto(data, to)
    sock.settimeout(5.0)
    while True:
        try:
            reply = sock.recv(65535)
        except TimeoutError:
            return b""
        if not reply.startswith(b"SIP/2.0 1"):
            return reply


def _status(reply: bytes) -> int:
    return int(reply[8:11]) if reply.startswith(b"SIP/2.0 ") else 0


def _addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def main(argv: list[str]) -> int:
    local_ip, first, other, user, password, domain = argv
    uri = f"sip:{domain}"
    out: dict[str, object] = {}
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
    ):
        a.bind((local_ip, 0))
        b.bind((local_ip, 0))
        local = a.getsockname()[:2]
        reply = _exchange(a, _register(local, user, domain, 1), _addr(first))
        challenge = re.search(rb"WWW-Authenticate: Digest ([^\r\n]*algorithm=MD5[^\r\n]*)", reply)
        if challenge is None:
            print(json.dumps({"error": reply.decode(errors="replace")}))
            return 1
        params = dict(re.findall(r'(\w+)="?([^",]*)"?', challenge.group(1).decode()))
        realm, nonce = params["realm"], params["nonce"]
        ha1 = _md5(f"{user}:{realm}:{password}")
        ha2 = _md5(f"REGISTER:{uri}")

        def auth(nc: str) -> str:
            cnonce = secrets.token_hex(8)
            resp = _md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            return (
                f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
                f'response="{resp}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
            )

        credentials = auth("00000001")
        signed = _register(local, user, domain, 2, credentials)
        out["first"] = _status(_exchange(a, signed, _addr(first)))
        # the attacker's copy: the captured credentials (they do not cover the Via, the
        # CSeq or the Contact) in a new request of its own, binding its own address
        forged = _register(b.getsockname()[:2], user, domain, 2, credentials)
        replay = _exchange(b, forged, _addr(other))
        out["replay"] = _status(replay)
        out["stale"] = b"stale=true" in replay.lower() or b"stale=TRUE" in replay
        out["next"] = _status(
            _exchange(a, _register(local, user, domain, 3, auth("00000002")), _addr(other))
        )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
