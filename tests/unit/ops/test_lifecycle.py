"""Lifecycle decisions with a fake gateway: drain, second SIGTERM, reload rejected or
applied, status line; no signals are sent (the handlers are called directly)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from ipaddress import ip_address
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rtc64 import config, lifecycle
from rtc64.errors import ConfigError
from rtc64.settings import turn_service_settings


class FakeProxy:
    def __init__(self, cfg: config.Config) -> None:
        self.dialogs: list[object] = []
        self.in_flight = 0
        self.draining = False
        self.secret = b"s" * 32
        self.settings = SimpleNamespace(nat64=None)
        self.reconfigured: list[Any] = []
        self.auth = SimpleNamespace(reconfigure=lambda users, trusted: self.reconfigured.append(
            ("auth", users, trusted)))  # fmt: skip

    def reconfigure(self, settings: Any) -> None:
        self.reconfigured.append(("proxy", settings.upstream, settings.registrar.max_expires))


def _gateway(cfg: config.Config) -> Any:
    gw = SimpleNamespace(
        cfg=cfg,
        transports=None,
        proxy=FakeProxy(cfg),
        media=None,
        identity=None,
        observers=None,
        turn=None,
        role=None,
        relay=None,
        nat64=None,
        reloaded=lambda: None,
        media_ports=lambda new: new.media.ports,
    )

    async def relisten(specs: object) -> Any:  # serve.Gateway.relisten, one process
        return await gw.transports.relisten(specs)

    gw.relisten = relisten
    return gw


def test_sigterm_drains_until_the_last_call_then_stops(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.load(None, {"general.drain_seconds": 30})
    gw = _gateway(cfg)
    gw.proxy.dialogs = ["a call"]

    async def run() -> bool:
        stop = asyncio.Event()
        life = lifecycle.Lifecycle(gw, stop, reload_config=None, log=logging.getLogger("t"))
        life.terminate()
        assert gw.proxy.draining and not stop.is_set()
        await asyncio.sleep(3 * lifecycle.DRAIN_POLL)
        assert not stop.is_set()  # the call is still up
        gw.proxy.dialogs.clear()
        await asyncio.wait_for(stop.wait(), 5)
        return stop.is_set()

    caplog.set_level(logging.INFO)
    assert asyncio.run(run())
    assert "drained: no call left" in caplog.text


def test_a_second_sigterm_or_no_grace_stops_at_once() -> None:
    async def run(grace: float, signals: int) -> bool:
        gw = _gateway(config.load(None, {"general.drain_seconds": grace}))
        gw.proxy.dialogs = ["a call"]
        stop = asyncio.Event()
        life = lifecycle.Lifecycle(gw, stop, reload_config=None, log=logging.getLogger("t"))
        for _ in range(signals):
            life.terminate()
        await asyncio.sleep(0)
        life.uninstall()
        return stop.is_set()

    assert asyncio.run(run(30, 2))
    assert asyncio.run(run(0, 1))
    assert not asyncio.run(run(30, 1))


def test_reload_rejected_keeps_the_old_configuration(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "rtc64.toml"
    path.write_text("[registrar]\nmax_expires = 5400\n")
    cfg = config.load(path)
    gw = _gateway(cfg)

    async def reload() -> None:
        life = lifecycle.Lifecycle(
            gw, asyncio.Event(), reload_config=lambda: config.load(path),
            log=logging.getLogger("t"),
        )  # fmt: skip
        life.reload()
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not life._reloading:
                break

    caplog.set_level(logging.INFO)
    path.write_text('[registrar]\nmax_expires = "long"\n')
    asyncio.run(reload())
    assert gw.cfg is cfg and gw.proxy.reconfigured == []
    assert "reload rejected" in caplog.text and "registrar.max_expires" in caplog.text

    path.write_text(
        '[registrar]\nmax_expires = 4000\n[sip]\nupstream = "sip:192.0.2.1"\n'
        'trusted_networks = ["192.0.2.0/24"]\n[store]\nurl = "sqlite:///elsewhere.db"\n'
    )
    asyncio.run(reload())
    assert gw.cfg.registrar.max_expires == 4000
    assert gw.cfg.store.url == cfg.store.url  # needs a restart: the old value is kept
    kinds = [r[0] for r in gw.proxy.reconfigured]
    assert kinds == ["auth", "proxy"]
    assert gw.proxy.reconfigured[1][2] == 4000
    assert "need a restart, not applied: store.url" in caplog.text


def test_listener_changes_go_through_the_gateway_and_a_refusal_rejects_the_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload that changes sip.listen asks the gateway (a SIP worker takes the
    supervisor's sockets there: ``serve.Gateway.relisten``); when it cannot, the whole
    reload is rejected and nothing changes, as when one process cannot bind."""
    path = tmp_path / "rtc64.toml"
    path.write_text('[sip]\nlisten = ["udp:127.0.0.1:5060"]\n')
    cfg = config.load(path)
    gw = _gateway(cfg)
    asked: list[object] = []
    refuse = [False]

    async def relisten(specs: object) -> Any:
        asked.append(specs)
        if refuse[0]:
            raise config.ConfigError("sip.listen", "tcp:127.0.0.1:5060", "sockets (test)")
        return [], []

    gw.relisten = relisten
    gw.transports = SimpleNamespace()
    caplog.set_level(logging.INFO)

    async def reload(text: str) -> None:
        path.write_text(text)
        life = lifecycle.Lifecycle(
            gw, asyncio.Event(), reload_config=lambda: config.load(path),
            log=logging.getLogger("t"),
        )  # fmt: skip
        life.reload()
        for _ in range(50):
            await asyncio.sleep(0.01)
            if not life._reloading:
                break

    two = '[sip]\nlisten = ["udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"]\n'
    refuse[0] = True
    asyncio.run(reload(two + "[registrar]\nmax_expires = 4000\n"))
    assert len(asked) == 1 and gw.cfg.sip.listen == cfg.sip.listen
    assert gw.cfg.registrar.max_expires != 4000  # nothing applied
    assert "reload rejected, configuration unchanged" in caplog.text
    refuse[0] = False
    asyncio.run(reload(two + "[registrar]\nmax_expires = 4000\n"))
    assert len(asked) == 2 and len(gw.cfg.sip.listen) == 2
    assert gw.cfg.registrar.max_expires == 4000


def test_bad_tls_files_reject_the_reload_before_anything_changes(tmp_path: Path) -> None:
    cfg = config.load(None)
    gw = _gateway(cfg)
    bad = tmp_path / "cert.pem"
    bad.write_text("not a certificate")
    new = config.load(None, {"sip.tls_cert": str(bad), "sip.tls_key": str(bad)})
    life = lifecycle.Lifecycle(gw, asyncio.Event(), reload_config=None, log=logging.getLogger("t"))
    with pytest.raises(ConfigError) as err:
        asyncio.run(life.apply(new))
    assert "sip.tls_cert" in str(err.value)
    assert gw.cfg is cfg and gw.proxy.reconfigured == []


def test_status_line_has_the_counters(caplog: pytest.LogCaptureFixture) -> None:
    gw = _gateway(config.load(None))
    gw.proxy.dialogs = [1, 2]
    gw.proxy.in_flight = 3
    caplog.set_level(logging.INFO)
    life = lifecycle.Lifecycle(gw, asyncio.Event(), reload_config=None, log=logging.getLogger("t"))
    life.status()
    assert "calls=2 " in caplog.text and "transactions=3" in caplog.text


def test_a_sip_listener_that_fails_undoes_the_turn_listener_change(tmp_path: Path) -> None:
    """TURN listeners change first; when a new SIP listener then cannot be bound, TURN gets
    its old listeners, limits and policy back and nothing else changes."""
    cfg = config.load(None, {"turn.listen": ["udp:127.0.0.1:3478"], "turn.open": "true"})
    gw = _gateway(cfg)
    relays = (ip_address("127.0.0.1"),)
    settings = turn_service_settings(cfg.turn, realm="r", relays=relays, ports=(30000, 30100))
    calls: list[tuple[object, ...]] = []

    class Turn:
        def __init__(self) -> None:
            self.settings = settings
            self.policy = "old policy"

        own_pool = None

        async def reconfigure(self, listen: Any, core: Any, policy: Any, ports: Any) -> Any:
            calls.append((tuple(str(s) for s in listen), core.user_quota, policy, ports))
            self.settings = dataclasses.replace(
                self.settings, listen=listen, core=core, ports=ports
            )
            self.policy = policy
            return list(listen), []

        def check_ports(self, ports: Any) -> None:
            pass

    async def refuse(specs: object) -> Any:
        raise ConfigError("sip.listen", "udp:192.0.2.99:5060", "an address to bind")

    gw.turn = Turn()
    gw.transports = SimpleNamespace(relisten=refuse)
    new = config.load(
        None,
        {
            "turn.listen": ["udp:127.0.0.1:3478", "tcp:127.0.0.1:3478"],
            "turn.open": "true",
            "turn.user_quota": "3",
            "sip.listen": ["udp:192.0.2.99:5060"],
            "media.ports": "31000-31100",
        },
    )
    life = lifecycle.Lifecycle(gw, asyncio.Event(), reload_config=None, log=logging.getLogger("t"))
    with pytest.raises(ConfigError):
        asyncio.run(life.apply(new))
    (forward, back) = calls
    assert forward[0] == ("udp:127.0.0.1:3478", "tcp:127.0.0.1:3478") and forward[1] == 3
    assert forward[3] == (31000, 31100)
    assert back == (("udp:127.0.0.1:3478",), settings.core.user_quota, "old policy", (30000, 30100))
    assert gw.cfg is cfg and gw.proxy.reconfigured == []
