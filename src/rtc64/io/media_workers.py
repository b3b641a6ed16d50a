# Media forwarding in worker processes (``media.workers`` > 1).
#
# Rules:
# - Each worker is a separate process (spawned, not forked: the parent runs an event
#   loop) running a ``MediaForwarder`` on its own loop (uvloop when installed). The
#   engine gives each call one worker; ports of worker k are its slice of the range.
# - Control channel: a ``multiprocessing`` Pipe per worker, one JSON object per message
#   (``send_bytes`` frames it with a length prefix). Parent → worker: ``open``, ``close``,
#   ``update``, ``stop``. Worker → parent: ``counters`` (legs whose counters changed,
#   every ``stats_interval`` seconds), ``failed`` (ports it could not bind).
# - ``open`` is asynchronous; the parent first probes each port with a bind of its own
#   (released at once) so that a port taken by another program is reported to the engine
#   synchronously, like the in-process forwarder does. A port lost to a race after the
#   probe is logged when the worker reports it.
# - ``counters`` answers from the last report: statistics lag by up to one interval.
# - A worker that exits is logged with its exit code and started again; its calls lose
#   their sockets, see no more media and end by the engine's media timeout.
"""Worker processes that run the media forwarder, and their control channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from rtc64.io.media import MediaForwarder
from rtc64.io.sockets import udp_socket
from rtc64.net.address import parse_ip
from rtc64.rtp.legs import LatchMode, LegCounters, LegSpec, LocalPort
from rtc64.rtp.stats import ReceptionSnapshot

Json = dict[str, Any]


# --- wire form of the control messages ------------------------------------------------


def _port_json(local: LocalPort) -> list[object]:
    return [str(local[0]), local[1]]


def _port_from(value: Any) -> LocalPort:
    return (parse_ip(str(value[0]), scope=True), int(value[1]))


def spec_json(spec: LegSpec) -> Json:
    return {
        "leg": spec.leg,
        "local": _port_json(spec.local),
        "peer": spec.peer,
        "remote": None if spec.remote is None else _port_json(spec.remote),
        "mode": int(spec.mode),
        "strict": spec.strict,
        "window": spec.window,
        "rates": [list(r) for r in spec.clock_rates],
    }


def spec_from(d: Json) -> LegSpec:
    return LegSpec(
        leg=int(d["leg"]),
        local=_port_from(d["local"]),
        peer=None if d["peer"] is None else int(d["peer"]),
        remote=None if d["remote"] is None else _port_from(d["remote"]),
        mode=LatchMode(int(d["mode"])),
        strict=bool(d["strict"]),
        window=float(d["window"]),
        clock_rates=tuple((int(pt), int(rate)) for pt, rate in d["rates"]),
    )


def counters_json(c: LegCounters) -> Json:
    return {
        "leg": c.leg,
        "packets": c.packets,
        "octets": c.octets,
        "dropped": c.dropped,
        "forwarded": c.forwarded,
        "last": c.last_packet,
        "latched": None if c.latched is None else _port_json(c.latched),
        "rx": None if c.reception is None else asdict(c.reception),
    }


def counters_from(d: Json) -> LegCounters:
    rx = d["rx"]
    return LegCounters(
        leg=int(d["leg"]),
        packets=int(d["packets"]),
        octets=int(d["octets"]),
        dropped=int(d["dropped"]),
        forwarded=int(d["forwarded"]),
        last_packet=None if d["last"] is None else float(d["last"]),
        latched=None if d["latched"] is None else _port_from(d["latched"]),
        reception=None if rx is None else ReceptionSnapshot(**rx),
    )


def _send(conn: Connection, message: Json) -> None:
    conn.send_bytes(json.dumps(message, separators=(",", ":")).encode())


# --- the worker process -----------------------------------------------------------------


def worker_main(conn: Connection, index: int, stats_interval: float, level: int) -> None:
    """Entry point of a worker process."""
    logging.basicConfig(level=level, format=f"media-worker-{index} %(levelname)s %(message)s")
    from rtc64.io.loop import _loop_factory  # noqa: PLC0415 - in the child only

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_serve(conn, index, stats_interval))


async def _serve(conn: Connection, index: int, stats_interval: float) -> None:
    loop = asyncio.get_running_loop()
    log = logging.getLogger(f"rtc64.media.worker{index}")
    forwarder = MediaForwarder(log)
    done: asyncio.Future[None] = loop.create_future()
    reported: dict[int, tuple[int, int, object]] = {}

    def handle(message: Json) -> None:
        op = message.get("op")
        if op == "open":
            failed = forwarder.open(index, [_port_from(p) for p in message["ports"]])
            if failed:
                _send(conn, {"op": "failed", "ports": [_port_json(p) for p in failed]})
        elif op == "close":
            forwarder.close(index, [_port_from(p) for p in message["ports"]])
        elif op == "update":
            removed = [int(leg) for leg in message["removed"]]
            forwarder.update(index, [spec_from(s) for s in message["legs"]], removed)
            for leg in removed:
                reported.pop(leg, None)
        elif op == "stop" and not done.done():
            done.set_result(None)

    def readable() -> None:
        try:
            while conn.poll():
                handle(json.loads(conn.recv_bytes()))
        except (EOFError, OSError):
            if not done.done():
                done.set_result(None)
        except Exception:
            log.exception("bad control message")

    def push() -> None:
        changed = []
        for c in forwarder.counters(forwarder.leg_ids()).values():
            key = (c.packets, c.dropped, c.latched)
            if reported.get(c.leg) != key:
                reported[c.leg] = key
                changed.append(counters_json(c))
        if changed:
            try:
                _send(conn, {"op": "counters", "legs": changed})
            except OSError:
                if not done.done():
                    done.set_result(None)
        loop.call_later(stats_interval, push)

    loop.add_reader(conn.fileno(), readable)
    loop.call_later(stats_interval, push)
    try:
        await done
    finally:
        loop.remove_reader(conn.fileno())
        forwarder.shutdown()


# --- the parent side ------------------------------------------------------------------


class _Worker:
    __slots__ = ("conn", "index", "process")

    def __init__(self, index: int, process: BaseProcess, conn: Connection) -> None:
        self.index = index
        self.process = process
        self.conn = conn


def _probe(local: LocalPort) -> bool:
    try:
        sock = udp_socket(local[0], local[1], 0)
    except OSError:
        return False
    sock.close()
    return True


class WorkerPool:
    """The engine's ``Forwarder`` over N worker processes."""

    def __init__(
        self,
        count: int,
        *,
        log: logging.Logger | None = None,
        stats_interval: float = 1.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self.log = log or logging.getLogger("rtc64.io.media_workers")
        self.stats_interval = stats_interval
        self._ctx = multiprocessing.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * count
        self._cache: dict[int, LegCounters] = {}
        self._closing = False
        self.restarts = 0
        for i in range(count):
            self._start(i)

    def _start(self, index: int) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker_main,
            args=(child, index, self.stats_interval, self.log.getEffectiveLevel()),
            name=f"rtc64-media-{index}",
            daemon=True,
        )
        process.start()
        child.close()
        worker = _Worker(index, process, parent)
        self._workers[index] = worker
        self._loop.add_reader(parent.fileno(), self._readable, worker)
        self._loop.add_reader(process.sentinel, self._exited, worker)

    def _readable(self, worker: _Worker) -> None:
        try:
            while worker.conn.poll():
                message = json.loads(worker.conn.recv_bytes())
                if message.get("op") == "counters":
                    for d in message["legs"]:
                        c = counters_from(d)
                        self._cache[c.leg] = c
                elif message.get("op") == "failed":
                    self.log.error(
                        "media worker %d could not bind %s", worker.index, message["ports"]
                    )
        except (EOFError, OSError):
            self._loop.remove_reader(worker.conn.fileno())

    def _exited(self, worker: _Worker) -> None:
        self._loop.remove_reader(worker.process.sentinel)
        with contextlib.suppress(OSError, ValueError):
            self._loop.remove_reader(worker.conn.fileno())
        worker.process.join(0)
        worker.conn.close()
        if self._closing or self._workers[worker.index] is not worker:
            return
        self.log.error(
            "media worker %d exited (code %s); starting it again",
            worker.index,
            worker.process.exitcode,
        )
        self.restarts += 1
        self._start(worker.index)

    def _send(self, index: int, message: Json) -> None:
        worker = self._workers[index]
        if worker is None:
            return
        try:
            _send(worker.conn, message)
        except OSError as exc:
            self.log.error("media worker %d: control channel: %s", index, exc)

    # --- Forwarder ----------------------------------------------------------------------

    def open(self, worker: int, ports: Sequence[LocalPort]) -> list[LocalPort]:
        failed = [p for p in ports if not _probe(p)]
        ok = [p for p in ports if p not in failed]
        if ok:
            self._send(worker, {"op": "open", "ports": [_port_json(p) for p in ok]})
        return failed

    def close(self, worker: int, ports: Sequence[LocalPort]) -> None:
        if ports:
            self._send(worker, {"op": "close", "ports": [_port_json(p) for p in ports]})

    def update(self, worker: int, legs: Sequence[LegSpec], removed: Sequence[int]) -> None:
        for leg in removed:
            self._cache.pop(leg, None)
        message = {"op": "update", "legs": [spec_json(s) for s in legs], "removed": list(removed)}
        self._send(worker, message)

    def counters(self, legs: Iterable[int]) -> dict[int, LegCounters]:
        return {leg: self._cache[leg] for leg in legs if leg in self._cache}

    def alive(self) -> list[bool]:
        return [w is not None and w.process.is_alive() for w in self._workers]

    def pids(self) -> list[int | None]:
        return [None if w is None else w.process.pid for w in self._workers]

    def shutdown(self) -> None:
        self._closing = True
        for worker in self._workers:
            if worker is None:
                continue
            with contextlib.suppress(OSError):
                _send(worker.conn, {"op": "stop"})
        for worker in self._workers:
            if worker is None:
                continue
            worker.process.join(2.0)
            if worker.process.is_alive():
                worker.process.terminate()
                worker.process.join(1.0)
            for fd in (worker.conn.fileno(), worker.process.sentinel):
                with contextlib.suppress(OSError, ValueError):
                    self._loop.remove_reader(fd)
            worker.conn.close()
