"""The workers' channel never loses state to a full queue: it waits, in order."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from rtc64.io.worker_backlog import Backlog
from rtc64.io.worker_link import bind_channels


def _pair() -> tuple[socket.socket, socket.socket]:
    """A worker pair's ends with small buffers (the queue fills after a few datagrams)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
    return a, b


def _drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


def test_a_full_channel_delays_state_in_order_and_loses_none() -> None:
    async def main() -> None:
        mine, theirs = _pair()
        backlog = Backlog([None, mine])
        try:
            sent = [b"state-%04d" % n + b"x" * 1000 for n in range(100)]
            for data in sent:
                backlog.send(1, data)
            assert backlog.queued > 0 and len(backlog) > 0  # the pair's buffer filled
            got: list[bytes] = []
            for _ in range(500):
                got += _drain(theirs)
                if len(got) == len(sent):
                    break
                await asyncio.sleep(0.01)
            assert got == sent  # every one, in the order sent
            assert len(backlog) == 0 and backlog.dropped == 0
            backlog.send(1, b"later")  # nothing waits: straight through
            assert _drain(theirs) == [b"later"]
        finally:
            backlog.close()
            mine.close()
            theirs.close()

    asyncio.run(main())


def test_a_closed_end_is_not_queued_and_a_full_queue_drops() -> None:
    async def main() -> None:
        gone_mine, gone_theirs = _pair()
        gone_theirs.close()
        mine, theirs = _pair()
        backlog = Backlog([None, gone_mine, mine], limit=5)
        try:
            backlog.send(1, b"to nobody")  # refused: a restarted worker asks again itself
            backlog.send(0, b"to myself")  # no end: nothing
            assert len(backlog) == 0 and backlog.queued == 0
            for n in range(300):
                backlog.send(2, b"%d" % n + b"y" * 2000)
            assert len(backlog) == 5 and backlog.dropped > 0  # bounded
        finally:
            backlog.close()
            for s in (gone_mine, mine, theirs):
                s.close()

    asyncio.run(main())


def test_the_mesh_queues_far_more_than_the_kernels_datagram_queue_length(tmp_path: Path) -> None:
    """An unconnected Unix datagram socket holds net.unix.max_dgram_qlen (10) datagrams
    whatever its buffer; a worker pair holds what its buffer holds: a busy worker's share
    of a burst waits instead of being refused."""
    channels = bind_channels(str(tmp_path), 3)
    try:
        end = channels[0].ends[2]
        assert end is not None and channels[0].ends[0] is None
        sent = 0
        while sent < 1000:
            try:
                end.send(b"z" * 1200)
            except BlockingIOError:
                break
            sent += 1
        qlen = int(Path("/proc/sys/net/unix/max_dgram_qlen").read_text())
        assert sent > 2 * qlen  # 1000 with the 4 MB buffers (root, or a wmem_max that allows)
        other = channels[2].ends[0]
        assert other is not None and len(_drain(other)) == sent
        assert _drain(channels[1].ends[0]) == []  # type: ignore[arg-type]  # its own pair
    finally:
        for c in channels:
            c.close()
