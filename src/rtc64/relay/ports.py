# Local media port pairs per family (RFC 3550 §11: RTP on an even port, RTCP on the next
# odd one; RFC 5761 puts both on the RTP port when rtcp-mux is negotiated, the pair is
# still reserved so a re-offer without mux needs no new port).
#
# Rules:
# - ``media.addresses`` gives one or more addresses per family; ``media.ports`` the range.
#   Every address has its own pairs (ports are per address, not global).
# - With N workers the even ports are cut into N contiguous slices; worker k owns slice k
#   on every address, so one call's ports can all live in one process.
# - Allocation takes the longest-free pair; a released pair goes to the back of the queue,
#   so a port is reused as late as possible (stray late packets of the old call reach
#   nobody). A pair that failed to bind goes to the back too.
# - Exhaustion, or no address of the wanted family, raises ``RelayUnavailableError`` (503).
# - ``reconfigure`` (a reload) changes the addresses and the range for pairs allocated from
#   then on; pairs in use stay in use and are never handed out twice. A pair released
#   later goes back to the free queue only if the new addresses and range still hold it.
"""Port pairs of the media relay: allocation, release, worker slices."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from rtc64.errors import LocalProtocolError, ProtocolError
from rtc64.net.address import Family, IPAddress, family_of


class RelayUnavailableError(ProtocolError):
    """No media resources for this call: the proxy answers 503."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, 503)


@dataclass(frozen=True, slots=True)
class LocalPair:
    """An RTP (even) + RTCP (odd) port pair on one local address, owned by one worker."""

    address: IPAddress
    port: int
    worker: int = 0

    @property
    def family(self) -> Family:
        return family_of(self.address)

    @property
    def rtcp_port(self) -> int:
        return self.port + 1

    @property
    def rtp(self) -> tuple[IPAddress, int]:
        return (self.address, self.port)

    @property
    def rtcp(self) -> tuple[IPAddress, int]:
        return (self.address, self.port + 1)


class PortPool:
    """Free pairs per (address, worker), reused last."""

    def __init__(
        self, addresses: Sequence[IPAddress], low: int, high: int, workers: int = 1
    ) -> None:
        if not addresses:
            raise LocalProtocolError("media relay needs at least one address")
        if workers < 1:
            raise LocalProtocolError("media relay needs at least one worker")
        first = low + (low & 1)
        evens = list(range(first, high, 2))  # port + 1 <= high
        if len(evens) < workers:
            raise LocalProtocolError(f"port range {low}-{high} too small for {workers} workers")
        self.workers = workers
        self.low = first
        self.high = high
        self.slice_size = -(-len(evens) // workers)
        self._addresses: dict[Family, list[IPAddress]] = {}
        for address in addresses:
            known = self._addresses.setdefault(family_of(address), [])
            if address not in known:
                known.append(address)
        self._next_address: dict[Family, int] = dict.fromkeys(self._addresses, 0)
        self._free: dict[tuple[IPAddress, int], deque[int]] = {}
        self._in_use: set[tuple[IPAddress, int]] = set()
        for family_addresses in self._addresses.values():
            for address in family_addresses:
                for w in range(workers):
                    chunk = evens[w * self.slice_size : (w + 1) * self.slice_size]
                    self._free[(address, w)] = deque(chunk)

    @property
    def families(self) -> frozenset[Family]:
        return frozenset(self._addresses)

    def addresses(self, family: Family) -> tuple[IPAddress, ...]:
        return tuple(self._addresses.get(family, ()))

    def pick_address(self, family: Family) -> IPAddress:
        """The next address of ``family`` (round robin over ``media.addresses``)."""
        choices = self._addresses.get(family)
        if not choices:
            raise RelayUnavailableError(f"no {family.label} media address configured")
        i = self._next_address[family]
        self._next_address[family] = (i + 1) % len(choices)
        return choices[i]

    def worker_of(self, port: int) -> int:
        return min((port - self.low) // 2 // self.slice_size, self.workers - 1)

    def free(self, address: IPAddress, worker: int | None = None) -> int:
        """Free pairs on ``address`` (in one worker's slice, or all)."""
        workers = range(self.workers) if worker is None else (worker,)
        return sum(len(self._free.get((address, w), ())) for w in workers)

    def least_used_worker(self) -> int:
        """The worker with the most free pairs (summed over addresses)."""
        totals = [0] * self.workers
        for (_, w), free in self._free.items():
            totals[w] += len(free)
        return max(range(self.workers), key=lambda w: totals[w])

    def allocate(self, address: IPAddress, worker: int = 0) -> LocalPair:
        free = self._free.get((address, worker))
        if free is None:
            raise RelayUnavailableError(f"{address} is not a media address")
        if not free:
            raise RelayUnavailableError(f"no free media ports on {address}")
        port = free.popleft()
        self._in_use.add((address, port))
        return LocalPair(address, port, worker)

    def release(self, pair: LocalPair) -> None:
        key = (pair.address, pair.port)
        if key in self._in_use:
            self._in_use.discard(key)
            free = self._free.get((pair.address, pair.worker))
            if free is not None and self._holds(pair.port, pair.worker):
                free.append(pair.port)

    def holds(self, pair: LocalPair) -> bool:
        """``pair`` belongs to the current addresses and range (a reload may have left it
        outside: it is never handed out again once released)."""
        known = self._addresses.get(pair.family, ())
        return pair.address in known and self._holds(pair.port, pair.worker)

    def _holds(self, port: int, worker: int) -> bool:
        """``port`` is an RTP port of this range in ``worker``'s slice."""
        return (
            self.low <= port < self.high
            and (port - self.low) % 2 == 0
            and self.worker_of(port) == worker
        )

    def reconfigure(self, addresses: Sequence[IPAddress], low: int, high: int) -> None:
        """New addresses and range (same worker count) for pairs allocated from now on;
        the pairs in use stay reserved (``LocalProtocolError`` as ``__init__``, nothing
        changed then)."""
        fresh = PortPool(addresses, low, high, workers=self.workers)
        in_use = self._in_use
        for key, free in fresh._free.items():
            if any((key[0], port) in in_use for port in free):
                fresh._free[key] = deque(p for p in free if (key[0], p) not in in_use)
        fresh._in_use = in_use
        vars(self).update(vars(fresh))

    @property
    def in_use(self) -> int:
        return len(self._in_use)
