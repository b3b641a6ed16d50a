"""A small TURN client over UDP or TCP built on ``rtc64.stun`` (for the io/service tests)."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Literal

from rtc64.net.endpoint import Transport
from rtc64.stun import channeldata
from rtc64.stun import message as stun
from rtc64.stun.attributes import NONCE, REALM, USERNAME, Field
from rtc64.stun.integrity import long_term_key
from rtc64.turn.events import ClientFlow
from rtc64.turn.protocols import PENDING, Pending

from .turn_helpers import Address, Endpoint, endpoint, wait_for

PASSWORDS = {"alice": "wonderland"}
REALM_NAME = "lab.example"


class StubCredentials:
    """Users from PASSWORDS (``slow`` users answer PENDING until ``fetched``); nonces
    ``n-<issued>`` fresh for 600 s."""

    def __init__(self, slow: tuple[str, ...] = ()) -> None:
        self.slow = set(slow)
        self.fetched: list[str] = []

    def key(self, username: str, realm: str, algorithm: int) -> bytes | Pending | None:
        if username in self.slow and username not in self.fetched:
            return PENDING
        password = PASSWORDS.get(username)
        return None if password is None else long_term_key(username, realm, password)

    async def fetch(self, username: str) -> None:
        await asyncio.sleep(0)
        self.fetched.append(username)

    def nonce(self, client: ClientFlow, now: float) -> str:
        return f"n-{now:.0f}"

    def nonce_ok(self, nonce: str, client: ClientFlow, now: float) -> bool | Literal["stale"]:
        try:
            issued = float(nonce.removeprefix("n-"))
        except ValueError:
            return False
        return True if now - issued < 600 else "stale"


class Client:
    """A TURN client: requests by transaction id, everything else kept in ``other``."""

    def __init__(self, transport: Transport, server: Address) -> None:
        self.kind = transport
        self.server = server
        self.udp: Endpoint | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.key: bytes | None = None
        self.user: str | None = None
        self.nonce: str | None = None
        self.responses: dict[bytes, stun.Message] = {}
        self.other: list[bytes] = []
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> Client:
        if self.kind is Transport.UDP:
            self.udp = await endpoint(str(self.server[0]))
            self.udp.datagram_received = self._udp  # type: ignore[method-assign]
        else:
            self.reader, self.writer = await asyncio.open_connection(
                str(self.server[0]), self.server[1]
            )
            self._task = asyncio.get_running_loop().create_task(self._read())
        return self

    def _udp(self, data: bytes, addr: tuple[object, ...]) -> None:
        self._got(data)

    def _got(self, data: bytes) -> None:
        if data[0] < 0x40:
            msg = stun.decode(data)
            if msg.cls in (stun.Class.SUCCESS, stun.Class.ERROR):
                self.responses[msg.transaction_id] = msg
                return
        self.other.append(data)

    async def _read(self) -> None:
        assert self.reader is not None
        buf = b""
        while True:
            chunk = await self.reader.read(65536)
            if not chunk:
                return
            buf += chunk
            while (size := channeldata.frame_length(buf)) is not None and len(buf) >= size:
                self._got(buf[:size])
                buf = buf[size:]

    def raw(self, data: bytes) -> None:
        if self.udp is not None:
            self.udp.send(data, (str(self.server[0]), self.server[1]))
        else:
            assert self.writer is not None
            self.writer.write(data)

    def tid(self) -> bytes:
        return os.getpid().to_bytes(4, "big") + next(self._ids).to_bytes(8, "big")

    async def request(self, method: int, *fields: Field, retry: bool = True) -> stun.Message:
        """Send a request (signed once credentials are known, retried once after a 401)."""
        for _ in range(2 if retry else 1):
            tid = self.tid()
            extra: list[Field] = []
            if self.key is not None:
                assert self.user is not None and self.nonce is not None
                extra = [USERNAME(self.user), REALM(REALM_NAME), NONCE(self.nonce)]
            msg = stun.build(method, stun.Class.REQUEST, tid, *fields, *extra)
            self.raw(stun.encode(msg, key=self.key))
            await wait_for(lambda tid=tid: tid in self.responses)
            answer = self.responses.pop(tid)
            error = answer.error()
            if error is not None and error[0] in (401, 438) and self.user is not None:
                self.nonce = answer.get(NONCE)
                self.key = long_term_key(self.user, REALM_NAME, PASSWORDS[self.user])
                continue
            return answer
        return answer

    def close(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.writer is not None:
            self.writer.close()
        if self._task is not None:
            self._task.cancel()
