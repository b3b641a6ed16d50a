# The TURN benchmark's load generators, in Python, each a process pinned by the caller:
# - alloc_worker: N concurrent UDP clients, each looping Allocate (401) -> Allocate with
#   long-term credentials -> Refresh LIFETIME=0 (RFC 8656 §7, §7.3), one fresh socket
#   (fresh 5-tuple) per cycle, like a browser gathering candidates;
# - relay_sender: one allocation per client socket on ::1 (no REQUESTED-ADDRESS-FAMILY, as
#   browsers send it: the relay must be IPv4, RFC 8656 §7.2), one ChannelBind each to an IPv4
#   peer (the sink), then ChannelData (RFC 8656 §12) paced round-robin over the sockets;
# - sink: the IPv4 peers; counts packets per step id and the send → receive latency.
# Processes talk to the orchestrator over multiprocessing pipes with small tuples.
"""Load generators for ``bench/turn.py`` (allocation clients, ChannelData sender, sink)."""

from __future__ import annotations

import array
import contextlib
import itertools
import os
import select
import socket
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

from bench import turn_stun as stun

CHANNEL = 0x4000
PAYLOAD = 172  # an RTP packet of G.711 20 ms: 12-byte header + 160
TIMEOUT = 1.0  # seconds a benchmark client waits for a response before giving up the cycle
BACKOFF = 0.05  # seconds a client waits after a failed cycle before the next one
RCVBUF = 4 << 20
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux; not exported by Python
_STAMP = struct.Struct("!IQ")  # step id, CLOCK_MONOTONIC ns at sendto

Addr = tuple[str, int]


def pin(cpus: set[int] | None) -> None:
    """Pin this process to ``cpus`` (the nice value is inherited from the orchestrator)."""
    if cpus:
        os.sched_setaffinity(0, cpus)


def renice(value: int) -> None:
    """Set this process's nice value (processes it forks inherit it); needs root below 0."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, value)


def _client_socket(server: Addr, source: str | None = None) -> socket.socket:
    """A non-blocking UDP socket connected to ``server``, from ``source`` when given."""
    fam = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_DGRAM)
    sock.setblocking(False)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(server)
    return sock


def sources(net: int) -> Iterator[str]:
    """127.<net>.0.1 ... 127.<net>.255.254 round-robin: 65,024 loopback source addresses."""
    return itertools.cycle(f"127.{net}.{a}.{b}" for a in range(256) for b in range(1, 255))


class CredentialSource:
    """Long-term (fixed user) or REST (fresh username per cycle) credentials."""

    def __init__(self, mode: str, user: str, password: str, secret: str) -> None:
        self.mode, self.user, self.password, self.secret = mode, user, password, secret
        self._keys: dict[tuple[str, bytes], bytes] = {}

    def auth(self, realm: bytes, nonce: bytes) -> stun.Auth:
        if self.mode == "rest":
            creds = stun.rest_credentials(self.secret, self.user, 86400, time.time())
        else:
            creds = stun.Credentials(self.user, self.password)
        cache = (creds.username, realm)
        key = self._keys.get(cache)
        if key is None:
            key = self._keys[cache] = creds.key(realm)
            if len(self._keys) > 64:
                self._keys.clear()
        return stun.Auth(creds.username.encode(), realm, nonce, key)


# --- allocations per second -----------------------------------------------------------


class _Cycle:
    """One client's Allocate 401 → Allocate → Refresh 0 cycle on a fresh socket."""

    __slots__ = ("auth", "deadline", "sock", "state", "tid")

    def __init__(self, server: Addr, now: float, source: str) -> None:
        self.sock = _client_socket(server, source)
        self.state = 0
        self.tid = stun.transaction_id()
        self.auth: stun.Auth | None = None
        self.deadline = now + TIMEOUT
        self.sock.send(stun.allocate(self.tid, None))

    def send(self, data: bytes, now: float) -> None:
        self.deadline = now + TIMEOUT
        with contextlib.suppress(OSError):
            self.sock.send(data)


def alloc_worker(
    conn: Connection,
    server: Addr,
    creds: CredentialSource,
    clients: int,
    net: int,
    start: float,
    count_from: float,
    end: float,
    cpus: set[int] | None,
) -> None:
    """Run ``clients`` concurrent cycles until ``end``; send back counts for the window.

    Sends ``(completed, requests, failures: Counter)`` where only cycles that finish in
    [count_from, end] are counted (times on CLOCK_MONOTONIC, shared by the processes).
    Each cycle comes from the next source address of 127.<net>.0.0/16 (kernel-chosen
    port): like browsers, every client its own address. From one address a server may
    measure its anti-reflection limit instead (rtc64: 20 401s/s per source address), and
    a quickly reused 5-tuple meets a deallocated one the server still keeps (coturn: ~1 s,
    answering 437).
    """
    pin(cpus)
    while time.monotonic() < start:
        time.sleep(0.005)
    ep = select.epoll()
    cycles: dict[int, _Cycle] = {}
    completed = requests = 0
    failures: Counter[str] = Counter()
    source_iter = sources(net)

    def new_cycle(now: float) -> None:
        nonlocal requests
        c = _Cycle(server, now, next(source_iter))
        cycles[c.sock.fileno()] = c
        ep.register(c.sock.fileno(), select.EPOLLIN)
        if now >= count_from:
            requests += 1

    backlog: list[float] = []  # when failed clients start again

    def end_cycle(c: _Cycle, now: float, failure: str | None) -> None:
        nonlocal completed
        ep.unregister(c.sock.fileno())
        del cycles[c.sock.fileno()]
        c.sock.close()
        if count_from <= now <= end:
            if failure is None:
                completed += 1
            else:
                failures[failure] += 1
        if now >= end:
            return
        if failure is None:
            new_cycle(now)
        else:
            backlog.append(now + BACKOFF)

    now = time.monotonic()
    for _ in range(clients):
        new_cycle(now)
    buf = bytearray(2048)
    next_check = now + 0.1
    while cycles or (backlog and now < end):
        events = ep.poll(0.01 if backlog else 0.05)
        now = time.monotonic()
        while backlog and backlog[0] <= now:
            backlog.pop(0)
            if now < end:
                new_cycle(now)
        for fd, _ in events:
            c = cycles.get(fd)
            if c is None:
                continue
            try:
                n = c.sock.recv_into(buf)
            except OSError as exc:
                end_cycle(c, now, type(exc).__name__)
                continue
            r = stun.decode(bytes(buf[:n]))
            if r is None or r.tid != c.tid:
                continue
            failure, data = _advance(c, r, creds)
            if failure is not None or data is None:
                end_cycle(c, now, failure)
                continue
            if now >= count_from:
                requests += 1
            c.send(data, now)
        if now >= next_check:
            next_check = now + 0.1
            for c in [c for c in cycles.values() if c.deadline < now]:
                end_cycle(c, now, "timeout")
            if now >= end:
                for c in list(cycles.values()):
                    end_cycle(c, now, None if c.state == 0 else "unfinished")
    conn.send((completed, requests, failures))
    conn.close()


def _advance(
    c: _Cycle, r: stun.Response, creds: CredentialSource
) -> tuple[str | None, bytes | None]:
    """The next request of a cycle, or (failure, None) / (None, None) when it is over."""
    if c.state == 0:  # expecting 401 with REALM and NONCE
        if r.cls != stun.ERROR or r.error != 401:
            return f"first Allocate: {r.error or 'success'}", None
        realm, nonce = r.attrs.get(stun.REALM), r.attrs.get(stun.NONCE)
        if realm is None or nonce is None:
            return "401 without realm/nonce", None
        c.auth = creds.auth(realm, nonce)
        c.state, c.tid = 1, stun.transaction_id()
        return None, stun.allocate(c.tid, c.auth)
    assert c.auth is not None
    if r.cls != stun.SUCCESS:
        return f"{'Allocate' if c.state == 1 else 'Refresh'}: {r.error}", None
    if c.state == 1:
        c.state, c.tid = 2, stun.transaction_id()
        return None, stun.refresh(c.tid, c.auth, 0)
    return None, None


# --- transactions for the relay set-up ------------------------------------------------


def transact(
    socks: list[socket.socket],
    build: Callable[[int, bytes], bytes],
    window: int = 32,
    tries: int = 5,
) -> list[stun.Response]:
    """One request per socket (``build(index, tid)``), ``window`` at a time, retransmitted."""
    out: list[stun.Response | None] = [None] * len(socks)
    ep = select.epoll()
    pending: dict[int, tuple[int, bytes, bytes, float, int]] = {}
    todo = iter(range(len(socks)))
    buf = bytearray(2048)

    def send(i: int, tid: bytes, data: bytes, attempt: int) -> None:
        with contextlib.suppress(OSError):
            socks[i].send(data)
        pending[socks[i].fileno()] = (i, tid, data, time.monotonic() + 0.5, attempt)

    def fill() -> None:
        while len(pending) < window:
            i = next(todo, None)
            if i is None:
                return
            ep.register(socks[i].fileno(), select.EPOLLIN)
            tid = stun.transaction_id()
            send(i, tid, build(i, tid), 1)

    fill()
    try:
        while pending:
            for fd, _ in ep.poll(0.05):
                if fd not in pending:
                    continue
                i, tid, _, _, _ = pending[fd]
                try:
                    n = socks[i].recv_into(buf)
                except OSError:
                    continue
                r = stun.decode(bytes(buf[:n]))
                if r is not None and r.tid == tid:
                    out[i] = r
                    del pending[fd]
                    ep.unregister(fd)
            now = time.monotonic()
            for i, tid, data, due, attempt in list(pending.values()):
                if due < now:
                    if attempt >= tries:
                        raise RuntimeError(f"no response to a request from socket {i}")
                    send(i, tid, data, attempt + 1)
            fill()
    finally:
        ep.close()
    return [r for r in out if r is not None]


def _check(responses: list[stun.Response], what: str) -> None:
    bad = Counter(r.error for r in responses if r.cls != stun.SUCCESS)
    if bad:
        raise RuntimeError(f"{what}: error responses {dict(bad)}")


# --- the ChannelData sender -----------------------------------------------------------


class Sender:
    """Allocations with one channel each to an IPv4 peer; paced ChannelData over them."""

    def __init__(self, server: Addr | None, creds: CredentialSource, n: int, peers: list[Addr]):
        self.server, self.creds, self.peers = server, creds, peers
        self.auths: list[stun.Auth] = []
        self.relayed: list[Addr] = []
        if server is None:  # direct: the generator's own ceiling, straight to the sinks
            self.socks = [_client_socket(peers[i % len(peers)]) for i in range(n)]
            return
        self.socks = [_client_socket(server) for _ in range(n)]
        # One 401 for all: its nonce serves every socket where the server's nonces are bound
        # to the source address (rtc64, which also limits 401s per source); where they are
        # per 5-tuple (coturn), the first attempt gets 438/401 with a nonce of its own.
        first = transact(self.socks[:1], lambda i, tid: stun.allocate(tid, None))[0]
        if first.error != 401:
            raise RuntimeError(f"first Allocate: expected 401, got {first.error or 'success'}")
        shared = creds.auth(first.attrs[stun.REALM], first.attrs[stun.NONCE])
        self.auths = [shared] * n
        allocs = transact(self.socks, lambda i, tid: stun.allocate(tid, self.auths[i], 3600))
        again = [i for i, r in enumerate(allocs) if r.error in (401, 438) and stun.NONCE in r.attrs]
        for i in again:
            r = allocs[i]
            self.auths[i] = creds.auth(r.attrs.get(stun.REALM, shared.realm), r.attrs[stun.NONCE])
        if again:
            redo = transact(
                [self.socks[i] for i in again],
                lambda j, tid: stun.allocate(tid, self.auths[again[j]], 3600),
            )
            for i, r in zip(again, redo, strict=True):
                allocs[i] = r
        _check(allocs, "Allocate")
        for r in allocs:
            relayed = r.address(stun.XOR_RELAYED_ADDRESS)
            if relayed is None or ":" in relayed[0]:
                raise RuntimeError(f"relayed address {relayed}: expected IPv4 (no RAF sent)")
            self.relayed.append(relayed)
        self.bind()

    def bind(self) -> None:
        """ChannelBind (or its refresh, which also refreshes the permission)."""
        if self.server is None:
            return
        peers = self.peers
        binds = transact(
            self.socks,
            lambda i, tid: stun.channel_bind(tid, self.auths[i], CHANNEL, peers[i % len(peers)]),
        )
        _check(binds, "ChannelBind")
        if len(binds) != len(self.socks):
            raise RuntimeError("ChannelBind: missing responses")

    def close(self) -> None:
        if self.server is not None and self.auths:
            with contextlib.suppress(RuntimeError):
                transact(self.socks, lambda i, tid: stun.refresh(tid, self.auths[i], 0))
        for s in self.socks:
            s.close()

    def run(self, step: int, rate: float, start: float, count_from: float, end: float) -> int:
        """Send at ``rate`` pps (0: flat out) from ``start`` to ``end``; sent in the window.

        Packets before ``count_from`` carry step id 0 (warm-up, not counted by the sink).
        """
        header = b"" if self.server is None else struct.pack("!HH", CHANNEL, PAYLOAD)
        pkt = bytearray(header + bytes(PAYLOAD))
        off = len(header)
        sends = [s.send for s in self.socks]
        n = len(sends)
        i = counted = sent = 0
        while time.monotonic() < start:
            time.sleep(0.001)
        t0 = time.monotonic()
        now = t0
        while now < end:
            if rate:
                due = int((now - t0) * rate) - sent
                if due <= 0:
                    time.sleep(max(0.0, (sent + 1) / rate - (now - t0)))
                    now = time.monotonic()
                    continue
                due = min(due, 256)
            else:
                due = 64
            in_window = now >= count_from
            _STAMP.pack_into(pkt, off, step if in_window else 0, time.monotonic_ns())
            for _ in range(due):
                try:  # noqa: SIM105 - suppress() costs a frame per packet here
                    sends[i](pkt)
                except OSError:
                    pass  # ENOBUFS/ECONNREFUSED: counted as lost by the sink
                i += 1
                if i == n:
                    i = 0
            sent += due
            if in_window:
                counted += due
            now = time.monotonic()
        return counted


def relay_sender(
    conn: Connection,
    server: Addr | None,
    creds: CredentialSource,
    n: int,
    peers: list[Addr],
    cpus: set[int] | None,
) -> None:
    """Process entry: set up, report ("ready", relayed addresses), then obey commands."""
    pin(cpus)
    try:
        sender = Sender(server, creds, n, peers)
    except (RuntimeError, OSError) as exc:
        conn.send(("error", str(exc)))
        return
    conn.send(("ready", sender.relayed))
    try:
        while True:
            cmd = conn.recv()
            if cmd[0] == "run":
                conn.send(("sent", sender.run(*cmd[1:])))
            elif cmd[0] == "bind":
                try:
                    sender.bind()
                    conn.send(("ok",))
                except RuntimeError as exc:
                    conn.send(("error", str(exc)))
            else:
                break
    finally:
        sender.close()
        conn.close()


# --- the sink (IPv4 peers) ------------------------------------------------------------


def sink(conn: Connection, ports: tuple[int, int], cpus: set[int] | None) -> None:
    """UDP sockets on 127.0.0.1 ``ports`` (low, high; any free port when one is taken);
    count packets and latency per step id.

    Commands: ("result", step) → (count, [p50, p90, p99, max] µs) for that step.
    """
    pin(cpus)
    socks = []
    for port in range(ports[0], ports[1] + 1):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks.append(s)
    conn.send([s.getsockname() for s in socks])
    ep = select.epoll()
    by_fd = {s.fileno(): s.recv_into for s in socks}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    counts: Counter[int] = Counter()
    lat: dict[int, array.array[int]] = {}
    buf = bytearray(2048)
    unpack = _STAMP.unpack_from
    clock = time.monotonic_ns
    while True:
        for fd, _ in ep.poll(0.02):
            recv = by_fd[fd]
            current, samples = -1, None
            while True:
                try:
                    recv(buf)
                except BlockingIOError:
                    break
                step, stamp = unpack(buf)
                if step != current:
                    current = step
                    samples = lat.get(step)
                    if samples is None:
                        samples = lat[step] = array.array("q")
                counts[step] += 1
                samples.append(clock() - stamp)  # type: ignore[union-attr]
        if conn.poll():
            cmd = conn.recv()
            if cmd[0] != "result":
                break
            got = lat.pop(cmd[1], array.array("q"))
            conn.send((counts.pop(cmd[1], 0), _percentiles(got)))
    conn.close()


def _percentiles(samples: array.array[int]) -> list[int]:
    if not samples:
        return [0, 0, 0, 0]
    s = sorted(samples)
    pick = [s[int(len(s) * q)] for q in (0.5, 0.9, 0.99)] + [s[-1]]
    return [v // 1000 for v in pick]
