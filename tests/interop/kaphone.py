"""Scripted UDP phones for keepalive tests: each registers one contact and answers every
OPTIONS with 200, logging what it received as JSON lines (run inside a lab namespace).

    python -m tests.interop.kaphone LOG LOCAL_IP DOMAIN [USER@PORT>GATEWAY_HOST:PORT ...]

Each phone ``USER@PORT>HOST:PORT`` binds LOCAL_IP:PORT and registers
``sip:USER@DOMAIN`` through HOST:PORT (contact: its own address, Expires 300). The
log has one line per REGISTER answer (``{"kind": "registered", ...}``) and per OPTIONS
(``{"kind": "options", "user", "port", "source", "call_id", "t"}``). ``SIGUSR1`` makes
every phone register again. Runs until SIGTERM.
"""

from __future__ import annotations

import json
import re
import selectors
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

_HEADER = re.compile(rb"^(via|v|from|f|to|t|call-id|i|cseq)[ \t]*:", re.IGNORECASE)


def _register(user: str, domain: str, local: tuple[str, int], gateway: str, cseq: int) -> bytes:
    host, port = local
    branch = uuid.uuid4().hex
    return (
        f"REGISTER sip:{domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK{branch};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{domain}>;tag={branch[:8]}\r\n"
        f"To: <sip:{user}@{domain}>\r\n"
        f"Call-ID: reg-{user}-{port}@{host}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@{host}:{port}>\r\n"
        f"Expires: 300\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _answer(request: bytes) -> bytes:
    head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    kept = [line for line in head[1:] if _HEADER.match(line)]
    return b"SIP/2.0 200 OK\r\n" + b"\r\n".join(kept) + b"\r\nContent-Length: 0\r\n\r\n"


def _call_id(data: bytes) -> str:
    found = re.search(rb"\r\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", data, re.IGNORECASE)
    return found.group(1).decode() if found else ""


def main(argv: list[str]) -> int:
    log_path, local_ip, domain, *phones = argv
    log = Path(log_path).open("a", buffering=1)  # noqa: SIM115 - open until exit
    sel = selectors.DefaultSelector()
    socks: dict[str, tuple[socket.socket, str, tuple[str, int]]] = {}
    cseq = [1]

    def write(**fields: object) -> None:
        log.write(json.dumps({"t": time.time(), **fields}) + "\n")

    for spec in phones:
        who, _, gateway = spec.partition(">")
        user, _, port = who.partition("@")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((local_ip, int(port)))
        sock.setblocking(False)
        host, _, gport = gateway.rpartition(":")
        socks[user] = (sock, gateway, (host, int(gport)))
        sel.register(sock, selectors.EVENT_READ, user)

    def register_all(*_: object) -> None:
        for user, (sock, _, dest) in socks.items():
            local = sock.getsockname()
            sock.sendto(_register(user, domain, local, dest[0], cseq[0]), dest)
        cseq[0] += 1

    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    signal.signal(signal.SIGUSR1, register_all)
    register_all()
    while not stop[0]:
        for key, _ in sel.select(0.2):
            user = str(key.data)
            sock = socks[user][0]
            try:
                data, source = sock.recvfrom(65535)
            except OSError:
                continue
            port = sock.getsockname()[1]
            if data.startswith(b"OPTIONS "):
                sock.sendto(_answer(data), source)
                write(kind="options", user=user, port=port, source=list(source),
                      call_id=_call_id(data))  # fmt: skip
            elif data.startswith(b"SIP/2.0 ") and b"REGISTER" in data:
                write(kind="registered", user=user, port=port, status=int(data[8:11]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
