"""TURN servers and coturn's client tools inside the lab, for the TURN interop tests.

``start_turn(kind, host, workdir, setup)`` starts the server under test in a namespace —
``rtc64`` (``rtc64 serve --only turn``) or ``coturn`` (Debian's ``turnserver``, kept as a
check of the harness itself) — from one ``TurnSetup``: listeners, relay address per
family, realm, long-term users, REST secret, peer allow/deny ranges, TLS certificate.
``uclient``, ``stunclient`` and ``Peer`` wrap ``turnutils_uclient``, ``turnutils_stunclient``
and ``turnutils_peer`` and parse what they print; ``python_client`` runs
``tests.interop.turnclient`` (a JSON job) inside a namespace.

Every process is started through ``Host.popen`` so the lab stops it after the test.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.certs import issue
from tests.interop import turnclient
from tests.interop.lab import Host

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
REPO = Path(__file__).resolve().parents[2]
TURN_PORT, TLS_PORT, PEER_PORT = 3478, 5349, 3480
REALM = "turn.example.test"
_IN_NS = ("ip", "netns", "exec")
SERVER_UNDER_TEST = os.environ.get("RTC64_TURN_SERVER", "rtc64")


@dataclass(frozen=True, slots=True)
class Listener:
    proto: str  # "udp", "tcp" or "tls"
    ip: IPAddress
    port: int

    @property
    def spec(self) -> str:
        host = f"[{self.ip}]" if self.ip.version == 6 else str(self.ip)
        return f"{self.proto}:{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TurnSetup:
    """What a test needs from its TURN server (same meaning for rtc64 and coturn)."""

    listeners: tuple[Listener, ...]
    relays: tuple[IPAddress, ...]
    users: dict[str, str] = field(default_factory=dict)
    secret: str | None = None
    allow_peers: tuple[str, ...] = ()
    deny_peers: tuple[str, ...] = ()
    realm: str = REALM


def listeners(
    *ips: IPAddress, protos: Sequence[str] = ("udp", "tcp"), port: int = TURN_PORT
) -> tuple[Listener, ...]:
    """One listener per (protocol, address); TLS on TLS_PORT."""
    return tuple(Listener(p, ip, TLS_PORT if p == "tls" else port) for p in protos for ip in ips)


class TurnServer:
    """A running TURN server: its log and what it was started with."""

    kind: str

    def __init__(self, host: Host, workdir: Path, setup: TurnSetup) -> None:
        self.host, self.workdir, self.setup = host, workdir, setup
        self.log = workdir / f"{self.kind}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _wait_listening(self, timeout: float = 20.0) -> None:
        want = {(lst.proto != "udp", lst.port) for lst in self.setup.listeners}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with {self.proc.returncode}:\n{self.text()}"
                )
            udp = self.host.run("ss", "-Hlun", check=False).stdout
            tcp = self.host.run("ss", "-Hltn", check=False).stdout
            if all(f":{port} " in (tcp if stream else udp) for stream, port in want):
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} not listening after {timeout} s:\n{self.text()}")


class Coturn(TurnServer):
    """Debian's coturn 4.6 (``turnserver``) with the equivalent command line."""

    kind = "coturn"

    def __init__(self, host: Host, workdir: Path, setup: TurnSetup) -> None:
        super().__init__(host, workdir, setup)
        argv = ["turnserver", "-n", "--no-cli", "--log-file", "stdout", "--simple-log"]
        argv += ["--realm", setup.realm, "--no-dtls", "--fingerprint"]
        argv += ["--pidfile", str(workdir / "coturn.pid"), "--db", str(workdir / "turndb")]
        for ip in dict.fromkeys(lst.ip for lst in setup.listeners):
            argv += ["--listening-ip", str(ip)]
        ports = {lst.proto: lst.port for lst in setup.listeners}
        argv += ["--listening-port", str(ports.get("udp", ports.get("tcp", TURN_PORT)))]
        if "tls" in ports:
            cert, key = certificate(workdir)
            argv += ["--tls-listening-port", str(ports["tls"]), "--cert", str(cert)]
            argv += ["--pkey", str(key)]
        else:
            argv.append("--no-tls")
        for ip in setup.relays:
            argv += ["--relay-ip", str(ip)]
        if setup.secret is not None:
            argv += ["--use-auth-secret", "--static-auth-secret", setup.secret]
        else:
            argv.append("--lt-cred-mech")
            for user, password in setup.users.items():
                argv += ["--user", f"{user}:{password}"]
        for cidr in setup.allow_peers:
            net = ipaddress.ip_network(cidr)
            argv += ["--allowed-peer-ip", f"{net[0]}-{net[-1]}"]
            if net.is_loopback:
                argv.append("--allow-loopback-peers")
        for cidr in setup.deny_peers:
            net = ipaddress.ip_network(cidr)
            argv += ["--denied-peer-ip", f"{net[0]}-{net[-1]}"]
        self.proc = host.popen(argv, log=self.log)
        self._wait_listening()


class Rtc64Turn(TurnServer):
    """``rtc64 serve --only turn``; users added with ``rtc64 user add`` first."""

    kind = "rtc64"

    def __init__(self, host: Host, workdir: Path, setup: TurnSetup) -> None:
        super().__init__(host, workdir, setup)
        data = workdir / "data"
        common = [sys.executable, "-m", "rtc64.cli", "--data-dir", str(data)]
        for user, password in setup.users.items():
            subprocess.run(
                [*common, "user", "add", user, "--password", password, "--realm", setup.realm],
                check=True,
                capture_output=True,
                timeout=30,
                env=_env(),
            )
        argv = [sys.executable, "-m", "rtc64.cli", "--log-level", "debug", "--data-dir"]
        argv += [str(data), "serve", "--only", "turn", "--domain", setup.realm]
        for lst in setup.listeners:
            argv += ["--turn-listen", lst.spec]
        if any(lst.proto == "tls" for lst in setup.listeners):
            cert, key = certificate(workdir)
            argv += ["--turn-tls-cert", str(cert), "--turn-tls-key", str(key)]
        for ip in setup.relays:
            argv += ["--turn-relay-address", str(ip)]
        if setup.secret is not None:
            argv += ["--turn-secret", setup.secret]
        for cidr in setup.allow_peers:
            argv += ["--turn-allow-peer", cidr]
        for cidr in setup.deny_peers:
            argv += ["--turn-deny-peer", cidr]
        self.proc = host.popen(argv, log=self.log, env=_env())
        self._wait_listening()


def rest_credentials(server: TurnServer, user: str, ttl: int = 3600) -> dict[str, Any]:
    """TURN REST credentials for ``server``'s secret: from ``rtc64 turn credentials`` (its
    JSON: username, password, ttl, uris) for rtc64, computed as coturn checks them else."""
    secret = server.setup.secret
    assert secret is not None, "the server has no REST secret"
    if server.kind != "rtc64":
        username, password = turnclient.rest_credentials(secret, user, ttl)
        return {"username": username, "password": password, "ttl": ttl, "uris": []}
    argv = [sys.executable, "-m", "rtc64.cli", "turn", "credentials", "--user", user]
    argv += ["--ttl", str(ttl), "--secret", secret]
    for lst in server.setup.listeners:
        argv += ["--turn-listen", lst.spec]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={**os.environ, **_env()}, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"rtc64 turn credentials failed: {proc.stderr}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def start_turn(
    host: Host, workdir: Path, setup: TurnSetup, kind: str = SERVER_UNDER_TEST
) -> TurnServer:
    """Start the TURN server ``kind`` (``rtc64`` or ``coturn``) in ``host``."""
    if kind == "coturn":
        return Coturn(host, workdir, setup)
    if kind == "rtc64":
        return Rtc64Turn(host, workdir, setup)
    raise ValueError(f"RTC64_TURN_SERVER={kind!r}: expected rtc64 or coturn")


def _env() -> dict[str, str]:
    """This checkout's sources first (worktrees share one venv)."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{REPO / 'src'}:{REPO}" + (f":{path}" if path else "")}


def certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the TLS listener (clients do not verify it)."""
    cert_path, key_path = workdir / "turn-cert.pem", workdir / "turn-cert.key"
    if cert_path.exists():
        return cert_path, key_path
    issued = issue(workdir, "turn-cert", "turn.example.test")
    return issued.cert_path, issued.key_path


# --- coturn's client tools ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UclientResult:
    """What ``turnutils_uclient`` reported."""

    returncode: int
    sent: int
    received: int
    lost: int
    relays: tuple[tuple[IPAddress, int], ...]
    errors: tuple[str, ...]
    text: str

    def __str__(self) -> str:
        return self.text[-4000:]


_TOTALS = re.compile(r"start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)$", re.M)
_LOST = re.compile(r"Total lost packets (\d+)")
_RELAY = re.compile(r"Received relay addr: (\S+):(\d+)$", re.M)
_ERROR = re.compile(r"(?:error|Cannot) .*$", re.M)


def parse_uclient(returncode: int, text: str) -> UclientResult:
    totals = _TOTALS.findall(text)
    sent, received = (int(totals[-1][0]), int(totals[-1][1])) if totals else (0, 0)
    lost = _LOST.search(text)
    relays = tuple((ipaddress.ip_address(a), int(p)) for a, p in _RELAY.findall(text))
    return UclientResult(
        returncode,
        sent,
        received,
        int(lost.group(1)) if lost else -1,
        relays,
        tuple(_ERROR.findall(text)),
        text,
    )


def uclient(
    host: Host,
    server: IPAddress,
    *,
    user: str = "alice",
    password: str | None = None,
    secret: str | None = None,
    peer: IPAddress | None = None,
    port: int = TURN_PORT,
    messages: int = 20,
    flags: Sequence[str] = ("-c",),
    timeout: float = 40.0,
) -> UclientResult:
    """Run ``turnutils_uclient -v`` in ``host`` (default: one client, no RTCP allocation,
    5 ms between packets) and parse its report. ``flags`` are uclient's own (``-t``,
    ``-T``, ``-x``, ``-Z``, ``-y`` ...)."""
    argv = ["turnutils_uclient", "-v", "-u", user, "-p", str(port), "-n", str(messages)]
    argv += ["-m", "1", "-z", "5", *flags]
    if secret is not None:
        argv += ["-W", secret]
    elif password is not None:
        argv += ["-w", password]
    if peer is not None:
        argv += ["-e", str(peer), "-r", str(PEER_PORT)]
    argv.append(str(server))
    try:
        proc = subprocess.run(
            ["ip", "netns", "exec", host.ns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else ""
        return parse_uclient(-1, out + "\n(timed out)")
    return parse_uclient(proc.returncode, proc.stdout + proc.stderr)


_REFLEXIVE = re.compile(r"(UDP|TCP) reflexive addr: (\S+):(\d+)$", re.M)


def stunclient(host: Host, server: IPAddress, port: int = TURN_PORT) -> tuple[IPAddress, int]:
    """``turnutils_stunclient``: the reflexive address the server reported (Binding)."""
    proc = subprocess.run(
        ["ip", "netns", "exec", host.ns, "turnutils_stunclient", "-p", str(port), str(server)],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    found = _REFLEXIVE.search(proc.stdout + proc.stderr)
    if found is None:
        raise AssertionError(f"no reflexive address from {server}:\n{proc.stdout}{proc.stderr}")
    return ipaddress.ip_address(found.group(2)), int(found.group(3))


class Peer:
    """``turnutils_peer``: a UDP echo peer on the given addresses."""

    def __init__(self, host: Host, workdir: Path, *ips: IPAddress, port: int = PEER_PORT) -> None:
        argv = ["turnutils_peer", "-p", str(port)]
        for ip in ips:
            argv += ["-L", str(ip)]
        self.proc = host.popen(argv, log=workdir / f"peer-{host.ns}.log")
        deadline = time.monotonic() + 10
        while f":{port} " not in host.run("ss", "-Hlun", check=False).stdout:
            if time.monotonic() > deadline:
                raise RuntimeError(f"turnutils_peer not listening in {host.ns}")
            time.sleep(0.05)


def python_client(host: Host, job: Any, timeout: float = 60.0) -> Any:
    """Run a ``tests.interop.turnclient`` job (or a list of jobs) in ``host``; the JSON
    result (or the list of results)."""
    proc = subprocess.run(
        [*_IN_NS, host.ns, sys.executable, "-m", "tests.interop.turnclient", json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **_env()},
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise AssertionError(f"turnclient failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout)
