"""Happy-eyeballs connects (RFC 8305 §5) on loopback.

A target that never answers is a listening socket whose accept queue is full: Linux drops
further SYNs, so a connect to it hangs like one to a black-holed address, without leaving
loopback and without root.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from rtc64.io import tls
from rtc64.io.eyeballs_tcp import ConnectRaceError, connect_race, tcp_connector
from rtc64.net.address import Family, IPAddress
from rtc64.net.endpoint import Transport
from rtc64.net.eyeballs import HealthCache, State

from .helpers import V4, V6, Gateway, port_of, wait_for


@dataclass(frozen=True, slots=True)
class Target:
    address: IPAddress
    port: int


@contextmanager
def black_hole(address: IPAddress) -> Iterator[int]:
    """A port on ``address`` whose SYNs go unanswered (full accept queue)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind((str(address), 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket(family, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.setblocking(False)
            with suppress(BlockingIOError):
                filler.connect((str(address), port))
        time.sleep(0.05)
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.settimeout(0.2)
        try:
            with pytest.raises(TimeoutError):
                probe.connect((str(address), port))
        finally:
            probe.close()
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@contextmanager
def closed_port(address: IPAddress) -> Iterator[int]:
    """A port on ``address`` nobody listens on (connects are refused at once)."""
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((str(address), 0))
    port = sock.getsockname()[1]
    try:
        yield port  # bound, not listening: RST
    finally:
        sock.close()


async def serve(address: IPAddress, context: ssl.SSLContext | None = None) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await reader.read(100)
            writer.write(data)
            await writer.drain()
        except (OSError, ssl.SSLError):
            pass
        finally:
            writer.close()

    return await asyncio.start_server(handle, str(address), 0, ssl=context)


def port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


class Recorder:
    """A ``connect`` that keeps every socket it made, to check losers get closed."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.sockets: list[socket.socket] = []
        self.inner = tcp_connector(timeout=timeout)

    async def __call__(self, target: Target) -> socket.socket:
        sock = await self.inner(target)
        self.sockets.append(sock)
        return sock


def test_silent_ipv6_loses_to_ipv4_after_the_attempt_delay() -> None:
    async def main() -> None:
        server = await serve(V4)
        try:
            with black_hole(V6) as silent:
                targets = [Target(V6, silent), Target(V4, port(server))]
                start = time.monotonic()
                won = await connect_race(targets, attempt_delay=0.1)
                elapsed = time.monotonic() - start
                try:
                    assert won.target == targets[1]
                    assert won.sock.getpeername()[:2] == ("127.0.0.1", port(server))
                    assert won.race.states == [State.STOPPED, State.WON]
                    started = won.race.started_at
                    assert started[1] is not None and started[0] is not None
                    assert started[1] - started[0] >= 0.1, "IPv4 waited the attempt delay"
                    assert elapsed < 5.0, "not the kernel's SYN timeout"
                    cache = HealthCache()
                    cache.learn("example.net", won.race, 1.0)
                    assert cache.penalised("example.net", 1.0) == {Family.INET6: 1.0}
                finally:
                    won.sock.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_refused_ipv6_starts_ipv4_at_once() -> None:
    async def main() -> None:
        server = await serve(V4)
        try:
            with closed_port(V6) as refused:
                targets = [Target(V6, refused), Target(V4, port(server))]
                won = await asyncio.wait_for(connect_race(targets, attempt_delay=30.0), 10.0)
                won.sock.close()
                assert won.target == targets[1]
                assert won.race.states == [State.FAILED, State.WON]
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_first_target_wins_when_it_answers() -> None:
    async def main() -> None:
        v6, v4 = await serve(V6), await serve(V4)
        try:
            targets = [Target(V6, port(v6)), Target(V4, port(v4))]
            won = await connect_race(targets, attempt_delay=1.0)
            won.sock.close()
            assert won.target == targets[0]
            assert won.race.states == [State.WON, State.SKIPPED]
        finally:
            for server in (v6, v4):
                server.close()
                await server.wait_closed()

    asyncio.run(main())


def test_both_failing_names_both_targets() -> None:
    async def main() -> None:
        with closed_port(V6) as refused, black_hole(V4) as silent:
            targets = [Target(V6, refused), Target(V4, silent)]
            with pytest.raises(ConnectRaceError) as info:
                await connect_race(targets, attempt_delay=0.05, connect=tcp_connector(timeout=0.3))
        message = str(info.value)
        assert f"[::1]:{refused} (Connection refused)" in message
        assert f"127.0.0.1:{silent} (timed out)" in message
        assert [t for t, _ in info.value.failures] == targets
        assert isinstance(info.value, OSError)

    asyncio.run(main())


def test_losers_are_closed() -> None:
    async def main() -> None:
        v6, v4 = await serve(V6), await serve(V4)
        recorder = Recorder()
        try:
            # Delay 0: both connect nearly at once; whichever completes second is closed.
            targets = [Target(V6, port(v6)), Target(V4, port(v4))]
            won = await connect_race(targets, attempt_delay=0.0, connect=recorder)
            for _ in range(5):
                await asyncio.sleep(0.01)
            open_ = [s for s in recorder.sockets if s.fileno() != -1]
            assert open_ == [won.sock]
            won.sock.close()
        finally:
            for server in (v6, v4):
                server.close()
                await server.wait_closed()

    asyncio.run(main())


def test_cancelling_the_caller_leaks_nothing() -> None:
    made: list[socket.socket] = []
    inner = tcp_connector(timeout=30.0)

    async def connect(target: Target) -> socket.socket:
        sock = await inner(target)
        made.append(sock)
        return sock

    async def main() -> None:
        with black_hole(V6) as a, black_hole(V4) as b:
            targets = [Target(V6, a), Target(V4, b)]
            task = asyncio.create_task(connect_race(targets, attempt_delay=0.05, connect=connect))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0.05)
            assert made == [], "no connect completed"
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert tasks == [], "no attempt left running"

    asyncio.run(main())


def test_tls_runs_on_the_winner(tmp_path: Path) -> None:
    identity = tls.server_identity(tmp_path)

    async def main() -> None:
        server = await serve(V4, identity.context)
        try:
            with black_hole(V6) as silent:
                targets = [Target(V6, silent), Target(V4, port(server))]
                trusting = tls.client_context(identity.cert_path)
                won = await connect_race(
                    targets,
                    attempt_delay=0.05,
                    ssl=trusting,
                    server_hostname="127.0.0.1",
                )
                assert won.target == targets[1]
                assert won.transport is not None
                assert won.transport.get_extra_info("ssl_object") is not None
                won.transport.close()

                wrong = tls.client_context(tls.server_identity(tmp_path / "other").cert_path)
                with pytest.raises(ssl.SSLError):
                    await connect_race(targets, attempt_delay=0.05, ssl=wrong)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_plain_protocol_factory_gets_a_transport() -> None:
    received: list[bytes] = []

    class Echo(asyncio.Protocol):
        def data_received(self, data: bytes) -> None:
            received.append(data)

    async def main() -> None:
        server = await serve(V6)
        try:
            won = await connect_race([Target(V6, port(server))], protocol_factory=Echo)
            assert isinstance(won.protocol, Echo)
            assert isinstance(won.transport, asyncio.WriteTransport)
            won.transport.write(b"hello")
            for _ in range(100):
                if received:
                    break
                await asyncio.sleep(0.01)
            assert received == [b"hello"]
            won.transport.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_a_connect_completing_with_the_winner_is_closed() -> None:
    made: list[socket.socket] = []
    peers: list[socket.socket] = []

    async def main() -> None:
        both_started = asyncio.Event()

        async def connect(target: Target) -> socket.socket:
            mine, peer = socket.socketpair()
            made.append(mine)
            peers.append(peer)
            if len(made) == 2:
                both_started.set()
            await both_started.wait()
            return mine

        targets = [Target(V6, 1), Target(V4, 2)]
        won = await connect_race(targets, attempt_delay=0.01, connect=connect)
        assert won.target == targets[0], "same instant: the earlier attempt wins"
        assert won.race.states == [State.WON, State.ENDED]
        assert made[1].fileno() == -1, "the other connected socket was closed"
        assert won.sock is made[0] and made[0].fileno() != -1

    try:
        asyncio.run(main())
    finally:
        for sock in made + peers:
            sock.close()


def test_transport_layer_races_connections_and_reuses_the_winner() -> None:
    """SipTransportLayer.connect_race: a silent IPv6 target loses to a listening IPv4 one
    within the attempt delay; the winning connection is what send() then uses."""

    async def main() -> None:
        rec = Gateway()
        server = rec.layer(["tcp:127.0.0.1:0"])
        client = rec.layer(["tcp:[::1]:0", "tcp:127.0.0.1:0"])
        await server.start()
        await client.start()
        try:
            with black_hole(V6) as silent:
                ok = Target(V4, port_of(server, Transport.TCP, 4))
                winner, race = await client.connect_race(
                    Transport.TCP, [Target(V6, silent), ok], attempt_delay=0.05
                )
                assert winner == ok
                assert race is not None and race.winner == 1, "the race goes to the cache"
                assert client.connection_count == 1
                invite = b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n" + (
                    b"Via: SIP/2.0/TCP 127.0.0.1;branch=z9hG4bKr\r\nFrom: <sip:a@b>;tag=1\r\n"
                    b"To: <sip:x@127.0.0.1>\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\n"
                    b"Content-Length: 0\r\n\r\n"
                )
                assert client.send(invite, Transport.TCP, ok.address, ok.port)
                await wait_for(lambda: len(rec.messages) == 1)
                assert client.connection_count == 1, "no second connection was opened"
                again, no_race = await client.connect_race(
                    Transport.TCP, [Target(V6, silent), ok], attempt_delay=0.05
                )
                assert again == ok and no_race is None, "an open connection is reused"
        finally:
            await client.stop()
            await server.stop()

    asyncio.run(main())
