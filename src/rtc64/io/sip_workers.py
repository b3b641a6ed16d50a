# Rules (SIP worker processes, issue 12):
# - The supervisor (the main process) binds every socket before any worker starts and keeps
#   them open for its whole life: per public listen spec one SO_REUSEPORT socket per worker
#   (the kernel hashes each peer's address and port to one member of the group, so a
#   client's retransmissions, CANCEL and ACK reach the worker that has its INVITE), plus per
#   listen spec one private port per worker (no SO_REUSEPORT; numbers distinct per
#   transport, as ``io.worker_link`` tells workers apart by them). A worker writes its
#   private port in Via and Record-Route, so responses and in-dialog requests come back to
#   it. A restarted worker gets the very same sockets: datagrams hashed to it while it was
#   down wait in its socket's buffer, and the hash group never changes. Private ports are
#   ``sip.worker_ports`` + k, or the ones the previous run used where still free (a Path or
#   Record-Route a peer stored keeps working across a restart of the whole gateway), else
#   ephemeral.
# - Workers are ``multiprocessing`` spawn children (a fresh interpreter: no loop, thread or
#   lock state inherited); the sockets travel as file descriptors. A worker that exits is
#   started again, at once the first time and with a growing delay (up to
#   ``RESTART_MAX_DELAY``) while it keeps dying within ``STABLE_AFTER`` seconds;
#   ``on_exit`` hears of each exit first (the worker link's ``announce_gone``).
# - Signals to the supervisor: SIGHUP and SIGUSR1 are passed on to every worker (each
#   reloads / reports itself), SIGTERM drains (passed on; a worker with no call left says
#   so and goes on answering new calls with 503, as its member of each SO_REUSEPORT group
#   still gets its share of callers; the supervisor stops everything once every worker
#   has drained), SIGINT stops everything at once.
# - A reload (SIGHUP) that changes ``sip.listen``: the supervisor re-reads the
#   configuration first, binds the new specs' groups and private ports (none of them a
#   private number already in use), closes its copies of the removed ones, and hands each
#   worker its new sockets (``ListenChange`` and the descriptors, SCM_RIGHTS over the
#   worker's control socket pair, an anonymous socket only our processes hold); then it
#   passes SIGHUP on, and each worker applies the change as one process would (new
#   listeners open, removed ones close, calls and connections stay). A restarted worker
#   gets the current sockets from the start. If the supervisor cannot bind a new spec, it
#   logs why and sends nothing: the workers' reloads are then rejected as one process's.
# - Workers watch the supervisor: when it dies they stop (the sentinel of their parent).
#   A worker tells the supervisor it is ready with one datagram on a Unix socket pair; the
#   supervisor calls ``on_ready`` once all of them are (the gateway's "ready").
"""SIP worker processes: SO_REUSEPORT socket groups and the supervisor that restarts
workers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from typing import Any

from rtc64.errors import ConfigError
from rtc64.io import sockets
from rtc64.io.connection import Limits
from rtc64.io.worker_link import CONNECTION_ID_SPAN

__all__ = ["CONNECTION_ID_SPAN", "Supervisor", "WorkerSockets", "bind_groups"]
from rtc64.net.address import HostPort
from rtc64.net.endpoint import BoundListener, ListenSpec, Transport

RESTART_MAX_DELAY = 10.0  # seconds between restarts of a worker that keeps dying
STABLE_AFTER = 30.0  # a worker that ran this long restarts at once when it dies
STOP_GRACE = 5.0  # seconds a worker has to stop after SIGTERM before SIGKILL
EXIT_WAIT = 2.0  # seconds to reap a worker whose sentinel fired


@dataclass(frozen=True, slots=True)
class WorkerSockets:
    """One worker's sockets: its private ports first (named in Via and Record-Route),
    then its member of each public SO_REUSEPORT group. Picklable into a spawn child."""

    index: int
    own: tuple[tuple[ListenSpec, Any], ...]  # (spec with the bound port, socket.socket)
    public: tuple[tuple[ListenSpec, Any], ...]

    @property
    def specs(self) -> tuple[ListenSpec, ...]:
        return tuple(spec for spec, _ in (*self.own, *self.public))

    def opener(self) -> Callable[[ListenSpec], Any]:
        """The ``SipTransportLayer`` opener handing out these sockets by spec."""
        by_spec = dict((*self.own, *self.public))

        def open_(spec: ListenSpec) -> Any:
            return by_spec[spec]

        return open_

    def close(self) -> None:
        for _, sock in (*self.own, *self.public):
            sock.close()

    def without(
        self, removed: Collection[ListenSpec]
    ) -> tuple[WorkerSockets, list[tuple[ListenSpec, Any]]]:
        """These sockets less the public specs ``removed`` and their private twins (the
        same position in ``own``), and the (spec, socket) pairs left out."""
        gone = {i for i, (spec, _) in enumerate(self.public) if spec in removed}
        left = [p for i, p in enumerate(self.public) if i in gone]
        left += [p for i, p in enumerate(self.own) if i in gone]
        own = tuple(p for i, p in enumerate(self.own) if i not in gone)
        public = tuple(p for i, p in enumerate(self.public) if i not in gone)
        return WorkerSockets(self.index, own, public), left

    def plus(self, more: WorkerSockets) -> WorkerSockets:
        """These sockets and ``more`` (new listen specs on a reload)."""
        return WorkerSockets(self.index, (*self.own, *more.own), (*self.public, *more.public))


def bind_groups(
    specs: Sequence[ListenSpec],
    count: int,
    *,
    worker_ports: int,
    limits: Limits,
    previous: Mapping[str, int] | None = None,
    taken: Collection[tuple[Transport, int]] = (),
) -> list[WorkerSockets]:
    """Every worker's sockets (see the rules); ``ConfigError`` naming the endpoint when a
    bind fails (everything bound so far is closed). Without ``worker_ports`` the private
    ports are the ``previous`` run's where still free (``own_port_key``), else any;
    never one of ``taken`` (private ports already in use, on a reload)."""
    opened: list[Any] = []
    own: list[list[tuple[ListenSpec, Any]]] = [[] for _ in range(count)]
    public: list[list[tuple[ListenSpec, Any]]] = [[] for _ in range(count)]

    def bind(spec: ListenSpec, port: int, key: str, shared: bool = False) -> Any:
        try:
            if spec.transport is Transport.UDP:
                sock = sockets.udp_socket(
                    spec.address,
                    port,
                    limits.udp_rcvbuf,
                    ipv6_min_mtu=limits.udp_ipv6_min_mtu,
                    ipv4_no_df=limits.udp_ipv4_no_df,
                    reuse_port=shared,
                )
            else:
                sock = sockets.listen_socket(spec.address, port, reuse_port=shared)
        except OSError as exc:
            shown = str(dataclasses.replace(spec, port=port))
            raise ConfigError(key, shown, f"an address to bind ({exc})") from exc
        opened.append(sock)
        return sock

    try:
        for spec in specs:
            first = bind(spec, spec.port, "sip.listen", shared=True)
            actual = dataclasses.replace(spec, port=first.getsockname()[1])
            public[0].append((actual, first))
            for k in range(1, count):
                public[k].append((actual, bind(actual, actual.port, "sip.listen", shared=True)))
        publics = [spec for spec, _ in public[0]]
        used = set(taken)  # private ports are told apart by number
        for k in range(count):
            for spec in publics:
                bare = dataclasses.replace(spec, advertise=None)
                if worker_ports:
                    sock = bind(bare, worker_ports + k, "sip.worker_ports")
                else:
                    last = (previous or {}).get(own_port_key(k, spec), 0)
                    sock = _bind_again(bare, last, bind)
                    for _ in range(8):  # another family's private port has that number
                        if (spec.transport, sock.getsockname()[1]) not in used:
                            break
                        opened.remove(sock)
                        sock.close()
                        sock = bind(bare, 0, "sip.worker_ports")
                used.add((spec.transport, sock.getsockname()[1]))
                bound = sock.getsockname()[1]
                adv = spec.advertise
                mine = dataclasses.replace(
                    spec,
                    port=bound,
                    advertise=None if adv is None else HostPort(adv.host, bound),
                )
                own[k].append((mine, sock))
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    return [WorkerSockets(k, tuple(own[k]), tuple(public[k])) for k in range(count)]


def own_port_key(index: int, public: ListenSpec) -> str:
    """How a worker's private port is remembered between runs (``bind_groups``)."""
    return f"{index} {public}"


def own_ports(groups: Sequence[WorkerSockets]) -> dict[str, int]:
    """The private ports to remember for the next run, by ``own_port_key``."""
    return {
        own_port_key(g.index, spec): mine.port
        for g in groups
        for (spec, _), (mine, _) in zip(g.public, g.own, strict=True)
    }


def _bind_again(spec: ListenSpec, port: int, bind: Callable[[ListenSpec, int, str], Any]) -> Any:
    """``spec`` on last run's ``port`` when it is still free, else on any port."""
    if port:
        try:
            return bind(spec, port, "sip.worker_ports")
        except ConfigError:
            pass
    return bind(spec, 0, "sip.worker_ports")


def peer_listeners(groups: Sequence[WorkerSockets]) -> tuple[BoundListener, ...]:
    """Every worker's private listeners: each worker knows them all as its own ports."""
    return tuple(BoundListener(spec, spec.port) for g in groups for spec, _ in g.own)


CONFIG_EXIT = 2
"""A worker's exit code for a configuration it cannot run (``rtc64 serve``'s own)."""


class Supervisor:
    """Starts ``count`` workers (``target(args_for(k), notify)`` in a spawn child; the
    worker calls ``notify_ready(notify, k)`` once serving), restarts the ones that exit,
    and stops them all on ``stop``."""

    def __init__(
        self,
        target: Callable[[Any, socket.socket], object],
        args_for: Callable[[int], Any],
        count: int,
        log: logging.Logger,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self._target = target
        self._args_for = args_for
        self._on_ready = on_ready
        self._ready: set[int] = set()
        self._drained: set[int] = set()  # workers that finished draining (still serving 503)
        self._all_ready = False
        self._notify, self._child_notify = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._notify.setblocking(False)
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[BaseProcess | None] = [None] * count
        self._started: list[float] = [0.0] * count
        self._failures: list[int] = [0] * count
        self._stopping = False
        self._pending: dict[int, asyncio.Handle] = {}  # restarts waiting for their delay
        self.restarts = 0
        self.log = log
        self.on_exit: Callable[[int], None] | None = None
        """Told the index of a worker that exited (before it is restarted)."""
        self.on_fatal: Callable[[int], None] | None = None
        """Told the index of a worker that exited with ``CONFIG_EXIT`` before every worker
        was ever ready: the configuration cannot run, a restart would fail the same way,
        so the gateway stops (as one process does) instead of restarting it forever."""

    @property
    def pids(self) -> list[int | None]:
        return [None if p is None else p.pid for p in self._procs]

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self._notify.fileno(), self._readiness)
        for k in range(len(self._procs)):
            self._spawn(k)

    def _readiness(self) -> None:
        while True:
            try:
                data = self._notify.recv(64)
            except (BlockingIOError, InterruptedError):
                return
            drained = data.startswith(b"D")
            try:
                k = int(data[1:] if drained else data)
            except ValueError:
                continue
            if drained:
                self._drained.add(k)
                continue
            if self._all_ready:
                self.log.info("SIP worker %d ready again", k)
                continue
            self._ready.add(k)
            if len(self._ready) == len(self._procs):
                self._all_ready = True
                if self._on_ready is not None:
                    self._on_ready()

    def _spawn(self, k: int) -> None:
        if self._stopping:
            return
        proc = self._ctx.Process(
            target=self._target,
            args=(self._args_for(k), self._child_notify),
            name=f"rtc64-sip-{k}",
            daemon=True,
        )
        proc.start()
        self._procs[k] = proc
        self._started[k] = time.monotonic()
        asyncio.get_running_loop().add_reader(proc.sentinel, self._exited, k, proc)
        self.log.info("SIP worker %d started (pid %s)", k, proc.pid)

    def _exited(self, k: int, proc: BaseProcess) -> None:
        loop = asyncio.get_running_loop()
        loop.remove_reader(proc.sentinel)
        proc.join(EXIT_WAIT)  # the sentinel fires as the child exits, a moment before it is reaped
        code, pid = proc.exitcode, proc.pid
        if code is not None:
            proc.close()
        if self._procs[k] is proc:
            self._procs[k] = None
        if self._stopping:
            return
        if self.on_exit is not None:
            self.on_exit(k)
        if code == CONFIG_EXIT and not self._all_ready and self.on_fatal is not None:
            self.log.error("SIP worker %d (pid %s) cannot start; the gateway stops", k, pid)
            self.on_fatal(k)
            return
        ran = time.monotonic() - self._started[k]
        self._failures[k] = 0 if ran >= STABLE_AFTER else self._failures[k] + 1
        delay = 0.0 if self._failures[k] <= 1 else min(2.0 ** (self._failures[k] - 2), 10.0)
        self.log.warning(
            "SIP worker %d (pid %s) exited with %s after %.1fs; restarting%s",
            k,
            pid,
            code,
            ran,
            f" in {delay:.0f}s" if delay else "",
        )
        self.restarts += 1
        self._pending[k] = loop.call_later(delay, self._restart, k)

    def _restart(self, k: int) -> None:
        self._pending.pop(k, None)
        if self._procs[k] is None:
            self._spawn(k)

    def forward(self, sig: int) -> None:
        """Pass ``sig`` on to every running worker (SIGHUP reload, SIGUSR1 status)."""
        for proc in self._procs:
            if proc is not None and proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)

    async def drain(self) -> None:
        """SIGTERM to every worker (each drains its calls, then answers new ones with 503
        until stopped: its socket still gets its share of callers); returns once all have
        drained or exited. No worker is restarted from here on."""
        self._stopping = True
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        self.forward(signal.SIGTERM)
        while any(
            p is not None and p.is_alive() and k not in self._drained
            for k, p in enumerate(self._procs)
        ):
            await asyncio.sleep(0.1)

    async def stop(self, sig: int = signal.SIGINT) -> None:
        """``sig`` (default SIGINT: stop now) to every worker, SIGKILL those still running
        after ``STOP_GRACE``."""
        self._stopping = True
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()
        loop = asyncio.get_running_loop()
        procs = [p for p in self._procs if p is not None]
        for proc in procs:
            loop.remove_reader(proc.sentinel)
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, sig)
        deadline = time.monotonic() + STOP_GRACE
        while any(p.is_alive() for p in procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for proc in procs:
            if proc.is_alive():
                self.log.warning("SIP worker pid %s did not stop: killed", proc.pid)
                proc.kill()
            proc.join(1.0)
        self._procs = [None] * len(self._procs)
        loop.remove_reader(self._notify.fileno())
        self._notify.close()
        self._child_notify.close()


def notify_ready(notify: socket.socket, index: int) -> None:
    """In a worker: tell the supervisor this worker serves."""
    with contextlib.suppress(OSError):  # the supervisor is gone; watch_parent stops us
        notify.send(b"%d" % index)


def notify_drained(notify: socket.socket, index: int) -> None:
    """In a worker: tell the supervisor this worker has no call left."""
    with contextlib.suppress(OSError):
        notify.send(b"D%d" % index)


def watch_parent(stop: asyncio.Event) -> None:
    """In a worker: set ``stop`` when the supervisor process goes away."""
    parent = multiprocessing.parent_process()
    if parent is not None and parent.sentinel is not None:
        asyncio.get_running_loop().add_reader(parent.sentinel, stop.set)


@dataclass(frozen=True, slots=True)
class ListenChange:
    """What one worker gets when a reload changes ``sip.listen`` (with the descriptors of
    the sockets of ``own`` and ``public``, in that order)."""

    own: tuple[ListenSpec, ...]
    public: tuple[ListenSpec, ...]
    removed: tuple[ListenSpec, ...]
    peers: tuple[BoundListener, ...]  # every worker's private listeners, as now
    private: dict[tuple[Transport, int], int]  # private port -> worker, as now


def control_pairs(count: int) -> list[tuple[socket.socket, socket.socket]]:
    """One (supervisor end, worker end) socket pair per worker for ``ListenChange``."""
    return [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(count)]


def send_change(control: socket.socket, change: ListenChange, group: WorkerSockets) -> None:
    """Hand a worker its ``change`` and the sockets of ``group`` (the new specs only)."""
    fds = [sock.fileno() for _, sock in (*group.own, *group.public)]
    socket.send_fds(control, [pickle.dumps(change)], fds)


def receive_changes(control: socket.socket) -> list[tuple[ListenChange, dict[ListenSpec, Any]]]:
    """In a worker: every change the supervisor sent since the last call, in order, each
    with its sockets by spec (nothing waiting: an empty list)."""
    control.setblocking(False)
    found: list[tuple[ListenChange, dict[ListenSpec, Any]]] = []
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 20, 1024)
        except (BlockingIOError, InterruptedError):
            return found
        change = pickle.loads(data)  # noqa: S301 - from our own supervisor only
        socks = [socket.socket(fileno=fd) for fd in fds]
        found.append((change, dict(zip((*change.own, *change.public), socks, strict=True))))
