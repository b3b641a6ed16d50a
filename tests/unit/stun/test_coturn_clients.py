"""The codec against coturn's own clients (Debian ``coturn``), on loopback only.

``turnutils_stunclient`` must read our Binding answers (XOR-MAPPED-ADDRESS, FINGERPRINT)
on both families; ``turnutils_uclient`` must accept our 401 (REALM, NONCE) and sign its
second Allocate so that our ``long_term_key`` and ``check_integrity`` verify it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from ipaddress import ip_address

import pytest

from rtc64.stun import attributes as a
from rtc64.stun.integrity import long_term_key
from rtc64.stun.message import (
    Class,
    Message,
    Method,
    check_fingerprint,
    check_integrity,
    decode,
    encode,
    error_response,
    response,
)

pytestmark = pytest.mark.skipif(
    shutil.which("turnutils_stunclient") is None or shutil.which("turnutils_uclient") is None,
    reason="coturn's clients are not installed (apt-get install coturn)",
)

REALM = "example.org"
NONCE = "0123456789abcdef"
FAMILIES = [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")]


class Server:
    """A minimal STUN/TURN responder built on the codec; records what it received."""

    def __init__(self, family: socket.AddressFamily, host: str) -> None:
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.received: list[Message] = []
        self.signed = threading.Event()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()

    def run(self) -> None:
        try:
            while not self.signed.is_set() and not self.stopped.is_set():
                try:
                    data, addr = self.sock.recvfrom(65535)
                except TimeoutError:
                    continue
                msg = decode(data)
                self.received.append(msg)
                source = (ip_address(addr[0]), addr[1])
                if msg.method == Method.BINDING:
                    out = response(msg, a.XOR_MAPPED_ADDRESS(source), a.SOFTWARE("rtc64"))
                    self.sock.sendto(encode(out, fingerprint=True), addr)
                elif msg.method == Method.ALLOCATE and not msg.has(a.MESSAGE_INTEGRITY):
                    out = error_response(msg, 401, None, a.REALM(REALM), a.NONCE(NONCE))
                    self.sock.sendto(encode(out, fingerprint=True), addr)
                elif msg.method == Method.ALLOCATE:
                    self.signed.set()
        finally:
            self.sock.close()


@pytest.mark.parametrize(("family", "host"), FAMILIES, ids=["ipv4", "ipv6"])
def test_stunclient_reads_our_binding_answer(family: socket.AddressFamily, host: str) -> None:
    server = Server(family, host)
    try:
        done = subprocess.run(
            ["turnutils_stunclient", "-p", str(server.port), host],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert "reflexive addr" in done.stdout
    assert server.received
    assert server.received[0].method == Method.BINDING
    assert server.received[0].cls is Class.REQUEST


@pytest.mark.parametrize(("family", "host"), FAMILIES, ids=["ipv4", "ipv6"])
def test_uclient_signs_its_allocate_with_our_key(family: socket.AddressFamily, host: str) -> None:
    server = Server(family, host)
    argv = ["turnutils_uclient", "-y", "-n", "1", "-u", "alice", "-w", "secret"]
    client = subprocess.Popen(
        [*argv, "-p", str(server.port), host],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert server.signed.wait(20), [m.method for m in server.received]
    finally:
        client.terminate()
        client.wait(10)
        server.stop()
    first, signed = server.received[0], server.received[-1]
    assert first.method == signed.method == Method.ALLOCATE
    assert first.get(a.REQUESTED_TRANSPORT) == 17
    assert first.unknown_required() == ()
    assert signed.get(a.USERNAME) == "alice"
    assert signed.get(a.REALM) == REALM
    assert signed.get(a.NONCE) == NONCE
    assert check_integrity(signed, long_term_key("alice", REALM, "secret"))
    assert not check_integrity(signed, long_term_key("alice", REALM, "wrong"))
    assert check_fingerprint(first)
    assert check_fingerprint(signed)
