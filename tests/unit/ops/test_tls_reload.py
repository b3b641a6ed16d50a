"""SIGHUP with new ``sip.tls_cert``/``sip.tls_key``: new TLS handshakes on the running
listener present the new certificate; a connection made before keeps working."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from rtc64 import config, lifecycle
from rtc64.io import tls
from rtc64.io.sip_transport import SipTransportLayer
from rtc64.net.endpoint import parse_listen


def _fingerprint(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


async def _peer_cert(port: int) -> tuple[bytes, asyncio.StreamWriter]:
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return der, writer


def test_new_handshakes_get_the_reloaded_certificate(tmp_path: Path) -> None:
    old = tls.ensure_self_signed(tmp_path / "a")
    new = tls.ensure_self_signed(tmp_path / "b")
    first = tls.server_identity(tmp_path / "a", old[0], old[1])
    cfg = config.load(None, {"sip.tls_cert": str(old[0]), "sip.tls_key": str(old[1])})

    async def run() -> tuple[str, str, bool]:
        layer = SipTransportLayer(
            [parse_listen("tls:127.0.0.1:0")],
            lambda m, f: None,
            lambda d, e, f: None,
            server_tls=first.context,
        )
        await layer.start()
        port = layer.listeners[0].port
        gw: Any = SimpleNamespace(
            role=None,
            cfg=cfg,
            transports=layer,
            proxy=None,
            media=None,
            identity=None,
            observers=None,
            turn=None,
            relay=None,
            nat64=None,
            reloaded=lambda: None,
        )
        life = lifecycle.Lifecycle(
            gw, asyncio.Event(), reload_config=None, log=logging.getLogger("t")
        )
        try:
            before, early = await _peer_cert(port)
            changed = config.load(None, {"sip.tls_cert": str(new[0]), "sip.tls_key": str(new[1])})
            await life.apply(changed)
            after, late = await _peer_cert(port)
            early.write(b"\r\n\r\n")  # the connection made before still carries data
            await early.drain()
            alive = not early.is_closing()
            for w in (early, late):
                w.close()
            return _fingerprint(before), _fingerprint(after), alive
        finally:
            await layer.stop()

    before, after, alive = asyncio.run(run())
    assert before == tls.pem_fingerprint(old[0]).replace(":", "").lower()
    assert after == tls.pem_fingerprint(new[0]).replace(":", "").lower()
    assert alive


def test_turn_tls_certificate_reloads_into_the_turn_listeners_context(tmp_path: Path) -> None:
    """``turn.tls_cert`` changes: the TURN listeners' context (here served by a stand-in
    TLS listener using the same context object) presents the new certificate."""
    old = tls.ensure_self_signed(tmp_path / "a")
    new = tls.ensure_self_signed(tmp_path / "b")
    context = tls.server_identity(tmp_path / "a", old[0], old[1]).context
    cfg = config.load(None, {"turn.tls_cert": str(old[0]), "turn.tls_key": str(old[1])})

    async def run() -> str:
        stand_in = SipTransportLayer(
            [parse_listen("tls:127.0.0.1:0")], lambda m, f: None, lambda d, e, f: None,
            server_tls=context,
        )  # fmt: skip
        await stand_in.start()
        turn = SimpleNamespace(listeners=SimpleNamespace(server_tls=context))
        gw: Any = SimpleNamespace(
            role=None,
            cfg=cfg, transports=None, proxy=None, media=None, identity=None, observers=None,
            turn=turn, relay=None, nat64=None, reloaded=lambda: None,
        )  # fmt: skip
        life = lifecycle.Lifecycle(
            gw, asyncio.Event(), reload_config=None, log=logging.getLogger("t")
        )
        try:
            await life.apply(
                config.load(None, {"turn.tls_cert": str(new[0]), "turn.tls_key": str(new[1])})
            )
            der, writer = await _peer_cert(stand_in.listeners[0].port)
            writer.close()
            return _fingerprint(der)
        finally:
            await stand_in.stop()

    assert asyncio.run(run()) == tls.pem_fingerprint(new[0]).replace(":", "").lower()
