"""What makes a ``serve.Gateway`` one SIP worker of several (``workers.py``)."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rtc64.io.sip_workers import WorkerSockets
from rtc64.io.worker_link import Channel, WorkerLink
from rtc64.net.endpoint import BoundListener, Transport
from rtc64.settings import (
    media_slices,
)
from rtc64.web.peers import PeerStats, endpoint_path

if TYPE_CHECKING:
    pass


@dataclass(frozen=True, slots=True)
class WorkerRole:
    """What makes a ``Gateway`` one of several SIP workers (see ``workers.py``)."""

    index: int
    sockets: WorkerSockets
    peers: tuple[BoundListener, ...]  # every worker's private listeners
    shares: int  # processes that cut ``media.ports`` into slices (workers, then TURN)
    channel: Channel  # this worker's ends of the worker channel (io.worker_link)
    names: tuple[bytes, ...]  # every worker's channel name
    private: dict[tuple[Transport, int], int]  # private port -> worker
    control: socket.socket  # the supervisor's new sockets on a reload (io.sip_workers)

    def media_slice(self, ports: tuple[int, int]) -> tuple[int, int]:
        """This worker's slice of the range ``ports`` (``ConfigError``: too small)."""
        return media_slices(ports, self.shares)[self.index]

    def link(self, log: logging.Logger) -> WorkerLink:
        return WorkerLink(self.index, self.channel, self.names, self.private, log)

    @property
    def directory(self) -> str:
        """The supervisor's private directory (channels, stats endpoints)."""
        return os.path.dirname(self.names[0].decode())

    def peer_stats(self) -> PeerStats:
        """Worker 0's client of the other processes' stats (``web.peers``)."""
        others = [f"w{k}" for k in range(1, len(self.names))] + ["turn"]
        return PeerStats([endpoint_path(self.directory, name) for name in others])
