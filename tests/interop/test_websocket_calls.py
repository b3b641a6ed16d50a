"""Calls to a WebSocket client (RFC 7118) complete: ACK and BYE reach it over its connection.

The gateway runs on the host's loopback (UDP on 127.0.0.1, WebSocket on [::1]); a SIPp
UAC calls over UDP. The callee is a small SIP user agent over WebSocket written here
(asyncio + wsproto): it registers ``sip:bob@example.net`` with an unresolvable
``.invalid`` Contact, as browsers do, answers INVITE with 200 and BYE with 200. The
Record-Route entry facing it carries a flow token naming its connection; without it the
ACK and BYE could not find the client. When the client's connection is gone a call fails
at once with 430 (RFC 5626 §5.3), not after 32 s with 408.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request, TextMessage

from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request as SipRequest
from rtc64.sip.message import Response as SipResponse
from tests.interop.peers import Gateway, Sipp

pytestmark = pytest.mark.interop

CONTACT = b"sip:k3x9@df7jal23ls0d.invalid;transport=ws"


class LocalHost:
    """The host itself as a ``peers`` host: processes on loopback, no namespace."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def popen(
        self,
        args: Sequence[str],
        *,
        log: Path | None = None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with proc
        proc = subprocess.Popen(
            list(args), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def free_port(kind: int, host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def local() -> Iterator[LocalHost]:
    if shutil.which("sipp") is None:
        if os.geteuid() == 0:
            pytest.fail("sipp is not installed (run make test)")
        pytest.skip("sipp is not installed")
    host = LocalHost()
    yield host
    host.stop_all()


def start_gateway(local: LocalHost, work: Path) -> tuple[Gateway, int, int]:
    udp, ws = free_port(socket.SOCK_DGRAM, "127.0.0.1"), free_port(socket.SOCK_STREAM, "::1")
    args = [
        "--sip-listen", f"udp:127.0.0.1:{udp}", "--sip-listen", f"ws:[::1]:{ws}",
        "--domain", "example.net",
        "--trusted-network", "127.0.0.0/8", "--trusted-network", "::1/128",
    ]  # fmt: skip
    return Gateway(local, work, args), udp, ws  # type: ignore[arg-type]


# -- a SIP user agent over WebSocket ---------------------------------------------------------


def _answer(req: SipRequest, status: int, reason: bytes, *, tag: bytes, body: bytes = b"") -> bytes:
    lines = [b"SIP/2.0 %d %s" % (status, reason)]
    for h in req.headers:
        if h.key in (b"via", b"record-route", b"from", b"call-id", b"cseq"):
            lines.append(h.name + b": " + h.value)
        elif h.key == b"to":
            lines.append(h.name + b": " + h.value + (b"" if req.to.tag else b";tag=" + tag))
    lines.append(b"Contact: <%s>" % CONTACT)
    if body:
        lines.append(b"Content-Type: application/sdp")
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


ANSWER_SDP = (
    b"v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class WsUserAgent:
    """Registers over ws and auto-answers: 200 to INVITE and BYE; records what it got."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.requests: list[bytes] = []
        self.responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    async def connect(cls, port: int) -> WsUserAgent:
        reader, writer = await asyncio.open_connection("::1", port)
        ua = cls(reader, writer)
        writer.write(ua.ws.send(Request(host="[::1]", target="/", subprotocols=["sip"])))
        data = await asyncio.wait_for(reader.read(65536), 5)
        ua.ws.receive_data(data)
        events = list(ua.ws.events())
        assert events and isinstance(events[0], AcceptConnection), events
        ua.task = asyncio.create_task(ua._run())
        return ua

    def send(self, data: bytes) -> None:
        self.writer.write(self.ws.send(TextMessage(data=data.decode())))

    async def _run(self) -> None:
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, TextMessage | BytesMessage):
                    raw = event.data.encode() if isinstance(event, TextMessage) else event.data
                    self._sip(parse_datagram(bytes(raw)))
                elif isinstance(event, CloseConnection):
                    return

    def _sip(self, msg: SipRequest | SipResponse) -> None:
        if isinstance(msg, SipResponse):
            self.responses.put_nowait(msg)
            return
        self.requests.append(msg.method)
        if msg.method == b"INVITE":
            self.send(_answer(msg, 200, b"OK", tag=b"ws1", body=ANSWER_SDP))
        elif msg.method in (b"BYE", b"OPTIONS", b"INFO"):
            self.send(_answer(msg, 200, b"OK", tag=b"ws1"))

    async def register(self) -> int:
        self.send(
            b"REGISTER sip:example.net SIP/2.0\r\n"
            b"Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKwsreg1\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:bob@example.net>;tag=r1\r\n"
            b"To: <sip:bob@example.net>\r\nCall-ID: wsreg1@test\r\nCSeq: 1 REGISTER\r\n"
            b"Contact: <" + CONTACT + b">;expires=600\r\nContent-Length: 0\r\n\r\n"
        )
        resp = await asyncio.wait_for(self.responses.get(), 5)
        return resp.status

    async def close(self) -> None:
        self.writer.write(self.ws.send(CloseConnection(code=1000)))
        self.writer.close()
        if self.task is not None:
            await asyncio.wait([self.task], timeout=5)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return proc.returncode
        await asyncio.sleep(0.1)
    return None


# -- tests ----------------------------------------------------------------------------------


def test_sipp_call_to_a_websocket_client_gets_ack_and_bye(local: LocalHost, tmp_path: Path) -> None:
    gw, udp, ws = start_gateway(local, tmp_path)

    async def main() -> None:
        ua = await WsUserAgent.connect(ws)
        assert await ua.register() == 200
        sipp_port = free_port(socket.SOCK_DGRAM, "127.0.0.1")
        media = free_port(socket.SOCK_DGRAM, "127.0.0.1")
        uac = Sipp(
            local, tmp_path, "uac", "uac.xml", local="127.0.0.1", port=sipp_port,  # type: ignore[arg-type]
            remote=f"127.0.0.1:{udp}", keys={"target": "example.net"},
            extra=["-s", "bob", "-mp", str(media)],
        )  # fmt: skip
        code = await wait_exit(uac.proc, 40)
        report = f"{gw.text()[-6000:]}\n{uac.messages()}"
        assert code == 0, report
        assert ua.requests == [b"INVITE", b"ACK", b"BYE"], report
        await ua.close()

    asyncio.run(main())
    assert "ACK not forwarded" not in gw.text()


def test_call_to_a_websocket_client_whose_connection_closed_fails_at_once(
    local: LocalHost, tmp_path: Path
) -> None:
    gw, udp, ws = start_gateway(local, tmp_path)

    async def main() -> None:
        ua = await WsUserAgent.connect(ws)
        assert await ua.register() == 200
        await ua.close()
        await asyncio.sleep(0.3)
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        port = sock.getsockname()[1]
        invite = (
            b"INVITE sip:bob@example.net SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKdead1;rport\r\n"
            b"Max-Forwards: 70\r\nFrom: <sip:carol@example.net>;tag=c1\r\n"
            b"To: <sip:bob@example.net>\r\nCall-ID: dead1@test\r\nCSeq: 1 INVITE\r\n"
            b"Contact: <sip:carol@127.0.0.1:%d>\r\nContent-Length: 0\r\n\r\n" % (port, port)
        )
        start = time.monotonic()
        await loop.sock_sendto(sock, invite, ("127.0.0.1", udp))
        status = 0
        try:
            while status < 200 and time.monotonic() - start < 6:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 6)
                resp = parse_datagram(data)
                assert isinstance(resp, SipResponse)
                status = resp.status
        except TimeoutError:
            pass
        finally:
            sock.close()
        assert status in (430, 480), f"got {status or 'nothing'} within 6 s\n{gw.text()[-4000:]}"
        assert time.monotonic() - start < 5

    asyncio.run(main())
