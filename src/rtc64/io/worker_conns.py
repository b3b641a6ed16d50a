# Rules (SIP workers, RFC 5923 §6, RFC 5626 §5.3): what one worker knows of the stream
# connections the OTHER workers hold, as they announced them over the worker channel
# (``io.worker_link``: OPEN, CLOSE, ALIAS, RESET). Plain data, no I/O.
# - A connection is (owner, connection id, transport, remote address, the name an outbound
#   TLS connection was checked for or None). A send for a SIP domain may use another
#   worker's TLS connection only when that worker opened it and checked it for that very
#   name; a send addressed by IP, or over TCP/WS, may use any connection to that remote
#   (the rules of ``sip_dial.reusable_for``, across processes).
# - An RFC 5923 alias (name, port) -> connection id is known here only because its owner
#   recorded it after checking the peer's certificate (``tls_aliases``): nothing a peer
#   sends to this worker can add one. It goes with its connection (CLOSE), and everything
#   of a worker goes when that worker (re)starts or dies (RESET).
# - ``SentFor``: the top Via branches of requests this worker wrote on its connections
#   for another worker (SEND), so a response arriving on the connection goes back to the
#   worker that owns the transaction even when our Via names the shared port (an RFC 5923
#   ``;alias`` Via must name the port peers dial). Bounded in number and time.
"""Other workers' stream connections and RFC 5923 aliases, as one worker knows them."""

from __future__ import annotations

from dataclasses import dataclass

from rtc64.net.endpoint import SockAddr, Transport
from rtc64.sip import tls_identity

AliasKey = tuple[str, int]
BRANCH_LIFE = 200.0  # seconds: Timer C (180 s) of an INVITE, with a margin
MAX_BRANCHES = 65536


@dataclass(frozen=True, slots=True)
class PeerConnection:
    """A stream connection another worker holds."""

    owner: int
    cid: int
    transport: Transport
    remote: SockAddr
    tls_name: str | None = None  # outbound TLS: the name its server certificate was checked for


class PeerConnections:
    """The other workers' connections and aliases (see the module rules)."""

    __slots__ = ("_aliases", "_by_cid", "_by_remote")

    def __init__(self) -> None:
        self._by_cid: dict[int, PeerConnection] = {}
        self._by_remote: dict[tuple[Transport, SockAddr], dict[int, PeerConnection]] = {}
        self._aliases: dict[AliasKey, int] = {}

    def __len__(self) -> int:
        return len(self._by_cid)

    def opened(self, conn: PeerConnection) -> None:
        """``conn.owner`` announced a connection (again: the newer facts win)."""
        self.closed(conn.cid)
        self._by_cid[conn.cid] = conn
        self._by_remote.setdefault((conn.transport, conn.remote), {})[conn.cid] = conn

    def closed(self, cid: int) -> None:
        """The connection closed: it and its aliases are forgotten."""
        conn = self._by_cid.pop(cid, None)
        if conn is None:
            return
        key = (conn.transport, conn.remote)
        same = self._by_remote.get(key)
        if same is not None:
            same.pop(cid, None)
            if not same:
                del self._by_remote[key]
        for alias in [k for k, v in self._aliases.items() if v == cid]:
            del self._aliases[alias]

    def aliased(self, owner: int, cid: int, name: str, port: int) -> bool:
        """``owner`` recorded an alias for its connection ``cid``; False (ignored) when
        that connection is not one ``owner`` announced as TLS."""
        conn = self._by_cid.get(cid)
        if conn is None or conn.owner != owner or conn.transport is not Transport.TLS:
            return False
        self._aliases[(tls_identity.normalise(name), port)] = cid
        return True

    def forget_worker(self, owner: int) -> int:
        """``owner`` restarted or died: its connections and aliases are gone. Returns how
        many connections were forgotten."""
        gone = [cid for cid, c in self._by_cid.items() if c.owner == owner]
        for cid in gone:
            self.closed(cid)
        return len(gone)

    def get(self, cid: int) -> PeerConnection | None:
        return self._by_cid.get(cid)

    def has(self, transport: Transport, remote: SockAddr) -> bool:
        """Whether another worker holds a connection of ``transport`` to ``remote``."""
        return (transport, remote) in self._by_remote

    def find(
        self, transport: Transport, remote: SockAddr, server_name: str | None = None
    ) -> PeerConnection | None:
        """Another worker's connection a send to ``remote`` may use: one to that remote
        (for a SIP domain over TLS, only one opened and checked for that name), else an
        alias for (the domain, or the address, and the port); the newest first."""
        candidates = self._by_remote.get((transport, remote))
        name = None
        if transport is Transport.TLS:
            name = tls_identity.normalise(server_name or remote[0].compressed)
        if candidates:
            for conn in reversed(candidates.values()):
                if server_name is None or conn.tls_name == name:
                    return conn
        if name is not None:
            cid = self._aliases.get((name, remote[1]))
            if cid is not None:
                return self._by_cid.get(cid)
        return None

    def remotes(self) -> list[tuple[Transport, SockAddr]]:
        return list(self._by_remote)

    def aliases(self) -> dict[AliasKey, int]:
        """(authenticated name, port) -> connection id, every other worker's."""
        return dict(self._aliases)


class SentFor:
    """Top Via branch -> the worker whose request this worker wrote (see the rules)."""

    __slots__ = ("_by_branch",)

    def __init__(self) -> None:
        self._by_branch: dict[bytes, tuple[float, int]] = {}

    def __len__(self) -> int:
        return len(self._by_branch)

    def add(self, branch: bytes, worker: int, now: float) -> None:
        table = self._by_branch
        while table:  # oldest first (insertion order): drop the expired and the excess
            first = next(iter(table))
            if len(table) < MAX_BRANCHES and table[first][0] > now - BRANCH_LIFE:
                break
            del table[first]
        table.pop(branch, None)
        table[branch] = (now, worker)

    def get(self, branch: bytes, now: float) -> int | None:
        found = self._by_branch.get(branch)
        if found is None or found[0] <= now - BRANCH_LIFE:
            return None
        return found[1]
