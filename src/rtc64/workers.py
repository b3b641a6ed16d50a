# Rules (issue 12, "use every core"):
# - ``sip.workers`` SIP worker processes (0: one per CPU core this process may run on; 1:
#   everything in this process, as before). Only with the ``sip`` service.
# - The supervisor (this process) prepares what workers must not race to create (data
#   directory, store schema, secret, self-signed certificate), binds every SIP socket
#   (``io.sip_workers``: SO_REUSEPORT groups + one private port per worker), starts the
#   workers and restarts any that exits. It runs TURN itself (one process: allocations are
#   per process state), on its own slice of ``media.ports``. Worker 0 runs the web console.
# - Each worker is a whole gateway on its sockets: proxy, registrar, its own media relay on
#   its slice of ``media.ports`` (media stays in the worker that handled the call; Record-
#   Route brings every in-dialog request of the call back to it), the store shared
#   (SQLite WAL read from the file, or Redis). Worker 0 also runs the ng control socket
#   and sweeps expired bindings.
# - Per worker, in memory: transactions, dialogs (the Record-Route tokens are signed with
#   the shared secret, so their checks hold in every worker), digest nonce-count tables
#   (nonces themselves are stateless HMACs: a nonce-count replay is caught only by the
#   worker that saw the first use) and auth failure counters, fed with every worker's
#   failures over the worker channel, so lock-outs hold across workers.
"""SIP worker processes for ``rtc64 serve``: the supervisor and each worker's entry."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtc64 import logs
from rtc64.config import Config, tunnel_runs
from rtc64.errors import ConfigError, Rtc64Error
from rtc64.io import interfaces
from rtc64.io import loop as loop_runner
from rtc64.io.secret import load_secret
from rtc64.io.sip_workers import (
    CONFIG_EXIT,
    ListenChange,
    Supervisor,
    WorkerSockets,
    bind_groups,
    control_pairs,
    notify_drained,
    notify_ready,
    own_ports,
    peer_listeners,
    send_change,
    watch_parent,
)
from rtc64.io.worker_link import announce_gone, bind_channels, channel_name
from rtc64.lifecycle import Lifecycle
from rtc64.net.endpoint import BoundListener, ListenSpec
from rtc64.relay.options import refuse_foreign
from rtc64.serve import Gateway, WorkerRole, data_files, open_checked_store, server_tls
from rtc64.settings import media_slices, transport_limits
from rtc64.web.peers import RunningPeer, endpoint_path
from rtc64.web.wiring import start_peer_web

if TYPE_CHECKING:
    import socket


SETTLE_MAX = 5.0  # seconds a new worker may take to settle before it reports ready
SETTLE_SAMPLES = 2  # load samples it needs to have taken
PORTS_FILE = "sip-worker-ports.json"  # the private ports of the last run, in the data dir


def _read_ports(path: Path) -> dict[str, int]:
    """Last run's private ports (nothing if the file is missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and type(v) is int}


def _write_ports(path: Path, ports: dict[str, int], log: logging.Logger) -> None:
    try:
        path.write_text(json.dumps(ports, indent=1, sort_keys=True))
    except OSError as exc:
        log.warning("cannot remember the SIP worker ports in %s: %s", path, exc)


def worker_count(cfg: Config) -> int:
    """How many SIP workers ``cfg`` asks for (1 without the SIP service)."""
    if "sip" not in cfg.general.services:
        return 1
    if cfg.sip.workers:
        return cfg.sip.workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Everything a worker process starts from (pickled into the spawn child)."""

    config: Config
    role: WorkerRole
    reload: Callable[[], Config] | None = None  # SIGHUP: a picklable callable (cli)


async def supervise(
    cfg: Config,
    count: int,
    stop: asyncio.Event,
    log: logging.Logger,
    reload_config: Callable[[], Config] | None = None,
) -> int:
    """Run ``count`` SIP workers (and TURN and the tunnel here) until ``stop``; returns 0.
    Signals: see ``io.sip_workers`` (each worker reloads with ``reload_config`` on SIGHUP)."""
    services = cfg.general.services
    host = await interfaces.local_addresses_async()
    refuse_foreign(cfg.media.addresses, cfg.media.advertise, host)
    data_dir = cfg.prepare_data_dir()
    store = await open_checked_store(cfg)  # creates or upgrades the schema once
    await store.close()
    with data_files(data_dir):
        load_secret(data_dir)
    server_tls(cfg, data_dir, log)  # the self-signed certificate, generated once
    turn = "turn" in services and cfg.turn.enabled
    tunnel = tunnel_runs(cfg)  # like TURN: once, in the supervisor
    shares = count + (1 if turn else 0)  # TURN's slice is the last
    slices = media_slices(cfg.media.ports, shares)
    media = _Media(cfg.media.ports, shares, log)
    ports_file = data_dir / PORTS_FILE
    groups = bind_groups(
        cfg.sip.listen,
        count,
        worker_ports=cfg.sip.worker_ports,
        limits=transport_limits(cfg.sip),
        previous=_read_ports(ports_file),
    )
    _write_ports(ports_file, own_ports(groups), log)
    channel_dir = tempfile.mkdtemp(prefix="rtc64-sip-")  # 0700
    channels = bind_channels(channel_dir, count)
    controls = control_pairs(count)
    names = tuple(channel_name(channel_dir, k) for k in range(count))
    listen = _Listen(cfg, groups, ports_file, log)
    for spec, _ in groups[0].public:
        log.info("SIP listening on %s (%d workers, SO_REUSEPORT)", spec, count)
    for group in groups:
        log.info(
            "SIP worker %d: own ports %s, media ports %d-%d",
            group.index,
            ", ".join(str(spec) for spec, _ in group.own) or "(none: no UDP listener)",
            *slices[group.index],
        )

    def plan(k: int) -> WorkerPlan:
        """Worker ``k``'s start (and restart: with the media range of the last reload)."""
        role = WorkerRole(
            k, listen.groups[k], listen.peers, shares, channels[k], names, listen.private,
            controls[k][1],
        )  # fmt: skip
        return WorkerPlan(media.applied(cfg), role, reload_config)

    def ready() -> None:
        log.info("gateway ready: %d SIP workers", count)

    supervisor = Supervisor(run_worker, plan, count, log.getChild("workers"), on_ready=ready)
    supervisor.on_exit = lambda k: announce_gone(channels, k)  # its connections went with it
    failed: list[int] = []

    def fatal(k: int) -> None:
        failed.append(k)
        stop.set()

    supervisor.on_fatal = fatal
    turn_gateway: Gateway | None = None
    turn_life: Lifecycle | None = None  # SIGHUP for the TURN running here
    turn_web: RunningPeer | None = None
    loop = asyncio.get_running_loop()

    async def drain() -> None:
        log.info("SIGTERM: SIP workers drain their calls, then stop")
        await supervisor.drain()
        stop.set()

    draining: list[asyncio.Task[None]] = []

    def reload() -> None:
        """SIGHUP: new listen sockets handed to the workers first, then SIGHUP to them."""
        if reload_config is not None:
            try:
                new = reload_config()
            except (ConfigError, Rtc64Error, OSError) as exc:
                log.error("SIGHUP: configuration not reloaded here: %s", exc)
            else:
                listen.reload(new, [c for c, _ in controls])
                media.reload(new)
        supervisor.forward(signal.SIGHUP)
        if turn_life is not None:  # TURN's listeners, limits and policy (lifecycle)
            turn_life.reload()

    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGUSR1, supervisor.forward, signal.SIGUSR1)
    loop.add_signal_handler(
        signal.SIGTERM,
        lambda: stop.set() if draining else draining.append(loop.create_task(drain())),
    )
    try:
        supervisor.start()
        if turn or tunnel:

            def here(whole: Config) -> Config:
                """The configuration of the services this process runs itself."""
                values = {
                    **whole.values,
                    "general.services": ("turn",) * turn + ("tunnel",) * tunnel,
                    "media.ports": media_slices(whole.media.ports, shares)[-1],
                    "web.enabled": False,  # worker 0 serves the console (it has a proxy)
                }
                return dataclasses.replace(whole, values=values)

            turn_gateway = Gateway(here(cfg), log)
            await turn_gateway.start()
            if turn and reload_config is not None:
                load = reload_config
                turn_life = Lifecycle(
                    turn_gateway, stop, reload_config=lambda: here(load()), log=log
                )
            if turn:
                pid = os.getpid()
                log.info("TURN runs in the supervisor (pid %d), ports %d-%d", pid, *slices[-1])
            if tunnel:
                log.info("the tunnel server runs in the supervisor (pid %d)", os.getpid())
            if cfg.web.enabled:  # worker 0's console shows TURN from here
                path = endpoint_path(channel_dir, "turn")
                turn_web = await start_peer_web(
                    cfg, path, proxy=None, relay=None, turn=turn_gateway.turn
                )
        await stop.wait()
    finally:
        log.info("rtc64 stopping")
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
        for task in draining:
            task.cancel()
        await supervisor.stop()
        if turn_web is not None:
            await turn_web.stop()
        if turn_gateway is not None:
            await turn_gateway.stop()
        for group in listen.groups:
            group.close()
        for channel in channels:
            channel.close()
        for pair in controls:
            for end in pair:
                end.close()
        shutil.rmtree(channel_dir, ignore_errors=True)
    return CONFIG_EXIT if failed else 0


class _Media:
    """The supervisor's view of ``media.ports`` across reloads: each process takes its new
    slice itself on SIGHUP (``Gateway.media_ports``); a worker started later (a restart)
    starts from the range of the last reload that could be cut for every process."""

    def __init__(self, ports: tuple[int, int], shares: int, log: logging.Logger) -> None:
        self.ports = ports
        self.shares = shares
        self.log = log

    def reload(self, new: Config) -> None:
        ports = new.media.ports
        if ports == self.ports:
            return
        try:
            slices = media_slices(ports, self.shares)
        except ConfigError as exc:  # each process rejects the reload with this error too
            self.log.error("SIGHUP: media.ports not changed: %s", exc)
            return
        self.ports = ports
        shown = ", ".join(f"{k}: {low}-{high}" for k, (low, high) in enumerate(slices))
        self.log.info(
            "SIGHUP: media.ports %d-%d cut into %d slices (%s; the last is TURN's when it runs)",
            *ports, self.shares, shown,
        )  # fmt: skip

    def applied(self, cfg: Config) -> Config:
        """``cfg`` with the current media range."""
        if cfg.media.ports == self.ports:
            return cfg
        return dataclasses.replace(cfg, values={**cfg.values, "media.ports": self.ports})


class _Listen:
    """The supervisor's SIP sockets, changed by a reload of ``sip.listen``
    (``io.sip_workers`` rules)."""

    def __init__(
        self, cfg: Config, groups: list[WorkerSockets], ports_file: Path, log: logging.Logger
    ) -> None:
        self.specs = list(dict.fromkeys(cfg.sip.listen))
        self.groups = groups
        self.ports_file = ports_file
        self.log = log
        self._derive()

    def _derive(self) -> None:
        self.peers = peer_listeners(self.groups)
        self.private = {(b.transport, b.port): g.index for g in self.groups for b in _own(g)}

    def reload(self, new: Config, controls: list[socket.socket]) -> None:
        wanted = list(dict.fromkeys(new.sip.listen))
        if wanted == self.specs:
            return
        added = [s for s in wanted if s not in self.specs]
        removed = [s for s in self.specs if s not in wanted]
        try:
            fresh = bind_groups(
                added,
                len(self.groups),
                worker_ports=new.sip.worker_ports,
                limits=transport_limits(new.sip),
                previous=_read_ports(self.ports_file),
                taken=set(self.private),
            )
        except ConfigError as exc:
            self.log.error("SIGHUP: sip.listen not changed, the workers keep theirs: %s", exc)
            return
        left: list[list[tuple[ListenSpec, Any]]] = []
        for k, group in enumerate(self.groups):
            kept, gone = group.without(removed)
            self.groups[k] = kept.plus(fresh[k])
            left.append(gone)
        self._derive()
        for k, group in enumerate(fresh):
            change = ListenChange(
                own=tuple(spec for spec, _ in group.own),
                public=tuple(spec for spec, _ in group.public),
                removed=tuple(spec for spec, _ in left[k]),
                peers=self.peers,
                private=self.private,
            )
            try:
                send_change(controls[k], change, group)
            except OSError as exc:  # the worker's buffer is full: it restarts with them
                self.log.error("SIGHUP: cannot hand SIP worker %d its sockets: %s", k, exc)
        for pairs in left:
            for _, sock in pairs:
                sock.close()
        self.specs = wanted
        _write_ports(self.ports_file, own_ports(self.groups), self.log)
        self.log.info(
            "SIGHUP: SIP listeners added: %s; removed: %s",
            ", ".join(str(s) for s in added) or "none",
            ", ".join(str(s) for s in removed) or "none",
        )
        for group in fresh:
            shown = ", ".join(str(spec) for spec, _ in group.own) or "(none: no UDP listener)"
            self.log.info("SIP worker %d: new own ports %s", group.index, shown)


async def _settled(gateway: Gateway) -> None:
    """Until the load watch has measured the start-up pause (the collector's first full
    run) and admits new requests again, at most ``SETTLE_MAX`` seconds: "ready" is then
    true for a REGISTER sent the moment it is logged."""
    proxy = gateway.proxy
    if proxy is None:
        return
    admission = proxy.admission
    deadline = asyncio.get_running_loop().time() + SETTLE_MAX
    while asyncio.get_running_loop().time() < deadline:
        if admission.stats.samples >= SETTLE_SAMPLES and not admission.overloaded:
            return
        await asyncio.sleep(0.05)


def _own(group: WorkerSockets) -> list[BoundListener]:
    return [BoundListener(spec, spec.port) for spec, _ in group.own]


def run_worker(plan: WorkerPlan, notify: socket.socket) -> None:
    """A worker process: one gateway on the supervisor's sockets until SIGTERM or the
    supervisor's death."""
    cfg, role = plan.config, plan.role
    logs.setup(cfg.general.log_level, cfg.general.log_format)
    log = logging.getLogger("rtc64").getChild(f"w{role.index}")

    async def main(stop: asyncio.Event) -> int:
        watch_parent(stop)
        gateway = Gateway(cfg, log, role)
        loop = asyncio.get_running_loop()
        try:
            await gateway.start()
            done = asyncio.Event()
            signals = Lifecycle(gateway, done, reload_config=plan.reload, log=log)
            signals.install()  # SIGHUP reload, SIGTERM drain, SIGINT, SIGUSR1 as one process
            try:
                await _settled(gateway)
                notify_ready(notify, role.index)
                waits = [loop.create_task(done.wait()), loop.create_task(stop.wait())]
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    task.cancel()
            finally:
                signals.uninstall()
            if signals.draining and not stop.is_set():
                # Drained: keep answering new calls with 503 on this worker's sockets (the
                # kernel still hashes callers to them) until the supervisor stops everyone.
                notify_drained(notify, role.index)
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
        finally:
            await gateway.stop()
        return 0

    try:
        code = loop_runner.run(main)
    except Rtc64Error as exc:
        log.error("SIP worker %d cannot run: %s", role.index, exc)
        code = CONFIG_EXIT
    except KeyboardInterrupt:
        code = 0
    sys.exit(code)
