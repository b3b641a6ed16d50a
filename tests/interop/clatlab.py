"""The CLAT lab on top of ``Nat64Lab``: ``rtc64 clat run`` in the IPv6-only host, its
status, and the IPv4 echo server and client the CLAT tests share (the ``clat`` fixture is
in ``conftest``)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from tests.interop.nat64lab import PYTHON, ROOT, Nat64Lab, wait_for


class ClatLab:
    def __init__(self, lab: Nat64Lab) -> None:
        self.lab = lab
        self.state = lab.workdir / "clat"
        self.ns_prefix = f"r64c{lab._tag}-"
        self.log = lab.workdir / "clat.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def rtc64(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.lab.v6.run(
            "env", f"PYTHONPATH={ROOT}/src", PYTHON, "-m", "rtc64", *args, check=False
        )

    def start(self, *extra: str) -> None:
        self.proc = self.lab.v6.popen(
            [
                "env",
                f"PYTHONPATH={ROOT}/src",
                PYTHON,
                "-m",
                "rtc64",
                "clat",
                "run",
                "--state-dir",
                str(self.state),
                "--netns-prefix",
                self.ns_prefix,
                *extra,
            ],
            log=self.log,
        )

    def status(self) -> dict[str, Any]:
        out = self.rtc64("clat", "status", "--json", "--state-dir", str(self.state)).stdout
        return json.loads(out) if out.strip() else {}

    def running(self) -> list[dict[str, Any]]:
        return [x for x in self.status().get("links", []) if x.get("state") == "running"]

    def wait(self, what: str, check: Any, timeout: float = 20) -> None:
        try:
            wait_for(what, check, timeout)
        except RuntimeError:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{what}: status {self.status()}\nlog:\n{log}") from None

    def namespaces(self) -> list[str]:
        return [n for n in os.listdir("/run/netns") if n.startswith(self.ns_prefix)]


def in_v4(c: ClatLab, code: str) -> subprocess.Popen[bytes]:
    return c.lab.v4.popen([PYTHON, "-c", code], log=c.lab.workdir / "v4server.log")


ECHO = """
import socket, threading
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("{a}", 7000))
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("{a}", 7001)); t.listen()
def tcp():
    while True:
        c, _ = t.accept(); c.sendall(b"tcp:" + c.recv(100)); c.close()
threading.Thread(target=tcp, daemon=True).start()
while True:
    d, p = u.recvfrom(4096); u.sendto(("%d from %s" % (len(d), p[0])).encode(), p)
"""

CLIENT = """
import socket, sys
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(5)
for size in (20, 1400):
    u.sendto(b"x" * size, ("{a}", 7000)); print("udp", u.recvfrom(100)[0].decode())
t = socket.create_connection(("{a}", 7001), timeout=5); t.sendall(b"hi")
print(t.recv(100).decode(), t.getsockname()[0])
"""
