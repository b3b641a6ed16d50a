# The SIP transaction layer: owns every client and server transaction, matches messages
# to them and runs their timers (RFC 3261 §17; RFC 6026 §7-§8; §9.2 for CANCEL).
#
# Rules:
# - Sans-I/O: inputs are parsed messages, an opaque ``dest`` with a ``reliable`` flag, and
#   ``now`` (seconds, any monotonic origin). Every entry point returns a list of events
#   (``Send``, ``NewRequest``, ``ResponseReceived``...) for the caller to act on, in order.
# - Matching is O(1): client transactions by (branch, CSeq method) (§17.1.3), server
#   transactions by the §17.2.3 key (RFC 3261 branch or RFC 2543 fields), RFC 2543 INVITEs
#   also by their ACK key.
# - Timers: one heap entry per transaction for its earliest deadline; an entry whose
#   sequence number no longer matches the transaction's is stale and skipped (lazy
#   deletion). The heap is rebuilt when stale entries outnumber live ones.
# - Before a message is matched to a transaction, the transaction's overdue timers fire
#   (it may have ended already). A transaction that reaches TERMINATED leaves every table
#   at once and is reported with ``Terminated``; nothing is ever sent for it again.
# - A stray response is returned for stateless forwarding (§16.7, §18.1.2); an ACK that no
#   transaction absorbs goes to the TU (§17.2.3: the ACK for a 2xx is end-to-end).
"""Transaction manager: matching, dispatch and timers for all SIP transactions."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from rtc64.errors import LocalProtocolError
from rtc64.sip.message import Request, Response, make_response
from rtc64.sip.serializer import serialize
from rtc64.sip.timers import DEFAULT_TIMERS, Timer, TimerConfig
from rtc64.sip.transaction_base import (
    Absorbed,
    AckReceived,
    ClientTimeout,
    Event,
    Input,
    NewRequest,
    ResponseReceived,
    Send,
    ServerTimeout,
    State,
    StrayResponse,
    Terminated,
    TransportFailed,
)
from rtc64.sip.transaction_client import (
    NON_INVITE_CLIENT,
    ClientKey,
    ClientTransaction,
    client_key,
    invite_client_table,
    make_ack,
    make_cancel,
    response_input,
    response_key,
)
from rtc64.sip.transaction_server import (
    NON_INVITE_SERVER,
    ServerKey,
    ServerTransaction,
    invite_server_table,
    is_rfc3261,
    rfc2543_ack_key,
    server_key,
    to_tag_of,
)

AnyTransaction = ClientTransaction | ServerTransaction
_TERMINATED = State.TERMINATED
_COMPACT_SLACK = 64


class TransactionLayer:
    """All transactions of one SIP element.

    ``rfc6026`` (default on) adds the ACCEPTED state to INVITE transactions: a server
    transaction absorbs INVITE retransmissions after a 2xx and passes ACKs to the TU until
    Timer L, a client transaction passes 2xx retransmissions to the TU until Timer M.
    Without it a 2xx terminates both, as RFC 3261 §17.1.1.2 and §17.2.1 say.
    ``auto_trying`` makes a new INVITE server transaction send 100 Trying at once
    (§17.2.1; leave it off when the TU answers within 200 ms).
    """

    __slots__ = (
        "_ack2543",
        "_branches",
        "_client",
        "_heap",
        "_ict",
        "_ist",
        "_live",
        "_seq",
        "_server",
        "auto_trying",
        "rfc6026",
        "timers",
    )

    def __init__(
        self,
        timers: TimerConfig = DEFAULT_TIMERS,
        *,
        rfc6026: bool = True,
        auto_trying: bool = False,
    ) -> None:
        self.timers = timers
        self.rfc6026 = rfc6026
        self.auto_trying = auto_trying
        self._ict = invite_client_table(rfc6026)
        self._ist = invite_server_table(rfc6026)
        self._client: dict[ClientKey, ClientTransaction] = {}
        self._server: dict[ServerKey, ServerTransaction] = {}
        self._ack2543: dict[ServerKey, ServerTransaction] = {}
        self._branches: dict[bytes, int] = {}  # RFC 3261 branches of live server transactions
        self._heap: list[tuple[float, int, AnyTransaction]] = []
        self._seq = 0
        self._live = 0  # heap entries that are not stale

    def __len__(self) -> int:
        return len(self._client) + len(self._server)

    @property
    def client_count(self) -> int:
        return len(self._client)

    @property
    def server_count(self) -> int:
        return len(self._server)

    def transactions(self) -> Iterator[AnyTransaction]:
        """Every live transaction (clients first)."""
        yield from self._client.values()
        yield from self._server.values()

    # -- client side ------------------------------------------------------------------------

    def start_client(
        self,
        request: Request,
        dest: object,
        reliable: bool,
        now: float,
        data: bytes | None = None,
    ) -> tuple[ClientTransaction, list[Event]]:
        """Start a client transaction for ``request`` (its top Via carries our branch).

        ``data`` is the request's bytes when the caller has them already (a spliced
        forward); otherwise ``request`` is serialised once here. The events hold the first
        ``Send``. Raises ``LocalProtocolError`` for ACK, a missing RFC 3261 branch or a
        branch + method already in use."""
        key = client_key(request)
        if key in self._client:
            raise LocalProtocolError(f"client transaction {key!r} exists already")
        table = self._ict if request.method == b"INVITE" else NON_INVITE_CLIENT
        if data is None:
            data = serialize(request)
        txn = ClientTransaction(request, data, dest, reliable, timers=self.timers, table=table)
        self._client[key] = txn
        out: list[Event] = []
        txn.start(now, out)
        self._after(txn, out)
        return txn, out

    def find_client(self, response: Response) -> ClientTransaction | None:
        """The client transaction ``response`` belongs to (§17.1.3), if any."""
        key = response_key(response)
        return None if key is None else self._client.get(key)

    def receive_response(self, response: Response, now: float) -> list[Event]:
        """Match a response to its client transaction and run it.

        Events: ``ResponseReceived`` when the TU should see it (every 1xx, the first
        final, 2xx retransmissions in ACCEPTED), ``Absorbed`` for retransmitted finals
        (with a ``Send`` of the ACK again for INVITE), ``StrayResponse`` when nothing
        matches."""
        out: list[Event] = []
        key = response_key(response)
        txn = None if key is None else self._client.get(key)
        if txn is not None:
            txn.advance(now, out)
            if txn.state is _TERMINATED:
                self._finish(txn, out)
                txn = None
        if txn is None:
            out.append(StrayResponse(response))
            return out
        if not txn.handle(response_input(response.status), now, out, response):
            out.append(Absorbed(txn))
        self._after(txn, out)
        return out

    def client_for(self, branch: bytes, method: bytes) -> ClientTransaction | None:
        """The live client transaction with this §17.1.3 key, if any."""
        return self._client.get((branch, method))

    def receive_status(
        self, txn: ClientTransaction, status: int, now: float
    ) -> tuple[bool, list[Event]] | None:
        """Run a 1xx or 2xx response to ``txn`` known by its status alone (a proxy
        forwarding raw bytes): whether the TU should see it (else it was absorbed), and
        the events. None, with nothing changed, when ``txn`` has left the layer, one of
        its timers is overdue or its state wants the parsed response
        (``receive_response`` then)."""
        if self._client.get(txn.key) is not txn:
            return None
        deadline = txn.deadline
        if deadline is not None and deadline <= now:
            return None
        out: list[Event] = []
        seen = txn.take_status(status, now, out)
        if seen is None:
            return None
        self._after(txn, out)
        return seen, out

    # -- server side ------------------------------------------------------------------------

    def find_server(self, request: Request) -> ServerTransaction | None:
        """The server transaction ``request`` belongs to (§17.2.3), if any."""
        if request.method == b"ACK":
            if is_rfc3261(request):
                return self._server.get(server_key(request, b"INVITE"))
            txn = self._ack2543.get(rfc2543_ack_key(request))
            if txn is not None and txn.to_tag == request.to.tag:
                return txn
            return None
        return self._server.get(server_key(request))

    def serves_branch(self, branch: bytes) -> bool:
        """A live server transaction has this RFC 3261 branch (a raw request with it may
        be a retransmission: never refuse it before parsing)."""
        return branch in self._branches

    def find_invite_for_cancel(self, cancel: Request) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL cancels (§9.2), if still live."""
        return self._server.get(server_key(cancel, b"INVITE"))

    def receive_request(
        self, request: Request, dest: object, reliable: bool, now: float
    ) -> list[Event]:
        """Match a request to its server transaction, or create one.

        Events: ``NewRequest`` for a new transaction; ``Absorbed`` (plus a ``Send`` of
        the last response, if any) for a retransmission or an ACK for a non-2xx final;
        ``AckReceived`` for an ACK the TU must handle (2xx or no transaction)."""
        out: list[Event] = []
        is_ack = request.method == b"ACK"
        txn = self.find_server(request)
        if txn is not None:
            txn.advance(now, out)
            if txn.state is _TERMINATED:
                self._finish(txn, out)
                txn = None
        if txn is None:
            if is_ack:
                out.append(AckReceived(request, dest, None))
                return out
            table = self._ist if request.method == b"INVITE" else NON_INVITE_SERVER
            txn = ServerTransaction(request, dest, reliable, now, timers=self.timers, table=table)
            self._server[txn.key] = txn
            branch = txn.key[0]
            if isinstance(branch, bytes) and len(txn.key) == 4:
                self._branches[branch] = self._branches.get(branch, 0) + 1
            if txn.ack_key is not None:
                self._ack2543[txn.ack_key] = txn
            out.append(NewRequest(txn))
            if self.auto_trying and txn.invite:
                txn.respond(100, serialize(make_response(request, 100)), now, out)
        elif is_ack:
            if not txn.handle(Input.ACK, now, out, (request, dest)):
                out.append(AckReceived(request, dest, txn))
        elif not txn.handle(Input.REQUEST, now, out):
            out.append(Absorbed(txn))
        self._after(txn, out)
        return out

    def send_response(
        self, txn: ServerTransaction, response: Response | bytes, now: float
    ) -> list[Event]:
        """Send a response from the TU through ``txn`` (serialised once when a model).

        Raises ``LocalProtocolError`` when the transaction's state takes no such response
        (anything after a non-2xx final, a 1xx after a 2xx, any after TERMINATED)."""
        if isinstance(response, Response):
            status, data = response.status, serialize(response)
        else:
            status, data = _status_of(response), response
        out: list[Event] = []
        if txn.state is _TERMINATED or not txn.respond(status, data, now, out):
            raise LocalProtocolError(
                f"cannot send {status} in {txn.state.name} for {txn.method.decode()}"
            )
        if txn.ack_key is not None and status >= 300:
            txn.to_tag = to_tag_of(response)
        self._after(txn, out)
        return out

    # -- both -------------------------------------------------------------------------------

    def transport_error(self, txn: AnyTransaction, now: float, reason: str = "") -> list[Event]:
        """The transport failed to send for ``txn`` (§17.1.4; §17.2.4 after the caller
        tried the §18.2.2 alternatives): ``TransportFailed`` (carrying ``reason``) and
        ``Terminated``. Nothing for a transaction that has ended or left the layer."""
        out: list[Event] = []
        if txn.state is _TERMINATED or not self._owns(txn):
            return out
        if txn.handle(Input.TRANSPORT_ERROR, now, out, reason):
            self._after(txn, out)
        return out

    def _owns(self, txn: AnyTransaction) -> bool:
        if isinstance(txn, ClientTransaction):
            return self._client.get(txn.key) is txn
        return self._server.get(txn.key) is txn

    def get_timer(self) -> float | None:
        """The earliest deadline of any transaction, or ``None``."""
        heap = self._heap
        while heap:
            when, seq, txn = heap[0]
            if txn._hseq == seq:
                return when
            heapq.heappop(heap)
        return None

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at ``now``."""
        out: list[Event] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, seq, txn = heapq.heappop(heap)
            if txn._hseq != seq:
                continue
            txn._hseq = 0
            txn._wake = None
            self._live -= 1
            txn.advance(now, out)
            self._after(txn, out)
        return out

    # -- internals --------------------------------------------------------------------------

    def _after(self, txn: AnyTransaction, out: list[Event]) -> None:
        if txn.state is _TERMINATED:
            self._finish(txn, out)
        else:
            self._schedule(txn)

    def _schedule(self, txn: AnyTransaction) -> None:
        when = txn.deadline
        if when == txn._wake:
            return
        if txn._hseq:
            self._live -= 1
            txn._hseq = 0
        txn._wake = when
        if when is None:
            return
        self._seq += 1
        txn._hseq = self._seq
        self._live += 1
        heap = self._heap
        heapq.heappush(heap, (when, self._seq, txn))
        if len(heap) > 2 * self._live + _COMPACT_SLACK:
            self._heap = [e for e in heap if e[2]._hseq == e[1]]
            heapq.heapify(self._heap)

    def _finish(self, txn: AnyTransaction, out: list[Event]) -> None:
        if txn._hseq:
            self._live -= 1
            txn._hseq = 0
        txn._wake = None
        if isinstance(txn, ClientTransaction):
            if self._client.get(txn.key) is txn:
                del self._client[txn.key]
        else:
            if self._server.get(txn.key) is txn:
                del self._server[txn.key]
                branch = txn.key[0]
                if isinstance(branch, bytes) and len(txn.key) == 4:
                    left = self._branches.get(branch, 0) - 1
                    if left > 0:
                        self._branches[branch] = left
                    else:
                        self._branches.pop(branch, None)
            ack_key = txn.ack_key
            if ack_key is not None and self._ack2543.get(ack_key) is txn:
                del self._ack2543[ack_key]
        out.append(Terminated(txn))


def _status_of(data: bytes) -> int:
    """The status code of a serialised response."""
    code = data[8:11]
    if data[:8].upper() != b"SIP/2.0 " or len(code) != 3 or not code.isdigit():
        raise LocalProtocolError("response bytes do not start with a Status-Line")
    return int(code)


__all__ = [
    "Absorbed",
    "AckReceived",
    "AnyTransaction",
    "ClientTimeout",
    "ClientTransaction",
    "Event",
    "NewRequest",
    "ResponseReceived",
    "Send",
    "ServerTimeout",
    "ServerTransaction",
    "State",
    "StrayResponse",
    "Terminated",
    "Timer",
    "TimerConfig",
    "TransactionLayer",
    "TransportFailed",
    "make_ack",
    "make_cancel",
]
