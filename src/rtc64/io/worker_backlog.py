# Rules (SIP workers' channel, see ``worker_link``): the state every worker must learn
# (RESET, connections opened and closed, aliases, authentication failures) is never lost
# to a full channel. A datagram the kernel refuses for now (the receiving worker's queue
# is full: EAGAIN) waits here, in order, per destination; everything later for that
# destination queues behind it, and the queue is retried on a timer (5 ms, doubling to
# 200 ms) until the kernel takes it. A destination whose end is closed (ECONNREFUSED:
# only in tests, the supervisor keeps every end) is not queued: a restarted worker's
# RESET makes the others tell it again. A queue past ``limit`` datagrams drops the new
# ones (counted): a worker that far behind is restarted by its supervisor anyway.
"""Per-worker queues of channel datagrams the kernel could not take yet."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Sequence

FIRST_RETRY = 0.005
LAST_RETRY = 0.2


class Backlog:
    """Sends state datagrams to the other workers, queueing what must wait."""

    __slots__ = ("_delay", "_ends", "_queues", "_timer", "dropped", "limit", "queued")

    def __init__(self, ends: Sequence[socket.socket | None], limit: int = 10_000) -> None:
        self._ends = tuple(ends)  # ends[k]: connected to worker k (None: this worker)
        self._queues: dict[int, deque[bytes]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._delay = FIRST_RETRY
        self.limit = limit
        self.queued = 0  # datagrams that had to wait
        self.dropped = 0  # datagrams lost: the queue was full, or the socket failed

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def send(self, worker: int, data: bytes) -> None:
        """Send ``data`` to ``worker`` now, or after what waits for it already."""
        waiting = self._queues.get(worker)
        if waiting is not None:
            self._queue(waiting, data)
            return
        end = self._ends[worker]
        if end is None:
            return
        try:
            end.send(data)
        except (BlockingIOError, InterruptedError):
            self._queues[worker] = waiting = deque()
            self._queue(waiting, data)
            self._arm()
        except OSError:
            return  # closed: a restarted worker's RESET asks the others again

    def _queue(self, waiting: deque[bytes], data: bytes) -> None:
        if len(waiting) >= self.limit:
            self.dropped += 1
            return
        waiting.append(data)
        self.queued += 1

    def _arm(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._retry)

    def _retry(self) -> None:
        self._timer = None
        for worker in list(self._queues):
            waiting = self._queues[worker]
            end = self._ends[worker]
            while waiting and end is not None:
                try:
                    end.send(waiting[0])
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    waiting.clear()  # closed: a restart's RESET resynchronises it
                    break
                waiting.popleft()
            if not waiting or end is None:
                del self._queues[worker]
        if self._queues:
            self._delay = min(self._delay * 2, LAST_RETRY)
            self._arm()
        else:
            self._delay = FIRST_RETRY

    def close(self) -> None:
        """Stop retrying (what waits is lost with the process)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queues.clear()
