"""TLS: the generated certificate, its fingerprint, inbound and outbound connections."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rtc64.io import tls
from rtc64.net.endpoint import Transport

from .helpers import V6, Gateway, cseq, ok, options, port_of, wait_for


def test_self_signed_certificate_is_generated_once_and_reused(tmp_path: Path) -> None:
    first = tls.server_identity(tmp_path)
    second = tls.server_identity(tmp_path)
    assert first.generated and second.generated
    assert first.fingerprint == second.fingerprint
    assert len(first.fingerprint.split(":")) == 32
    assert (tmp_path / tls.KEY_FILE).stat().st_mode & 0o077 == 0
    configured = tls.server_identity(
        tmp_path / "unused", tmp_path / tls.CERT_FILE, tmp_path / tls.KEY_FILE
    )
    assert not configured.generated
    assert configured.fingerprint == first.fingerprint


def test_inbound_tls_client_pins_the_fingerprint(tmp_path: Path) -> None:
    identity = tls.server_identity(tmp_path)

    async def main() -> None:
        gw = Gateway()
        layer = gw.layer(["tls:127.0.0.1:0"], server_tls=identity.context)
        await layer.start()
        try:
            client = tls.client_context(verify=False)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port_of(layer, Transport.TLS, 4), ssl=client
            )
            peer = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
            assert tls.fingerprint(peer) == identity.fingerprint
            writer.write(options(5))
            await writer.drain()
            await wait_for(lambda: len(gw.messages) == 1)
            msg, flow = gw.messages[0]
            assert cseq(msg) == 5 and flow.transport is Transport.TLS
            assert layer.send(ok(5), Transport.TLS, *flow.remote, flow=flow)
            assert await asyncio.wait_for(reader.readexactly(len(ok(5))), 5) == ok(5)
            writer.close()
        finally:
            await layer.stop()

    asyncio.run(main())


def test_outbound_tls_verifies_the_peer(tmp_path: Path) -> None:
    id_a = tls.server_identity(tmp_path / "a")
    id_b = tls.server_identity(tmp_path / "b")

    async def main() -> None:
        a, b = Gateway(), Gateway()
        trusting = tls.client_context(id_b.cert_path)
        layer_a = a.layer(["tls:[::1]:0"], server_tls=id_a.context, client_tls=trusting)
        layer_b = b.layer(["tls:[::1]:0"], server_tls=id_b.context)
        wrong = tls.client_context(id_a.cert_path)  # trusts A only: B must be refused
        layer_c = Gateway()
        layer_c_layer = layer_c.layer(["tls:[::1]:0"], server_tls=id_a.context, client_tls=wrong)
        for layer in (layer_a, layer_b, layer_c_layer):
            await layer.start()
        try:
            port_b = port_of(layer_b, Transport.TLS, 6)
            assert layer_a.send(options(1), Transport.TLS, V6, port_b)
            await wait_for(lambda: len(b.messages) == 1)
            assert b.messages[0][1].transport is Transport.TLS
            assert layer_c_layer.send(options(2), Transport.TLS, V6, port_b)
            await wait_for(lambda: len(layer_c.send_errors) == 1)
            assert "certificate verify failed" in layer_c.send_errors[0].reason
        finally:
            for layer in (layer_a, layer_b, layer_c_layer):
                await layer.stop()

    asyncio.run(main())
