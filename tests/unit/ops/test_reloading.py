"""What a reload plans for the relay and TURN, checked before anything changes."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from types import SimpleNamespace
from typing import Any

import pytest

from rtc64 import config, reloading, settings
from rtc64.errors import ConfigError
from rtc64.relay.engine import MediaRelay
from rtc64.relay.options import RelaySettings
from rtc64.relay.ports import PortPool
from rtc64.settings import turn_service_settings
from tests.unit.relay.helpers import Clock, FakeForwarder

LOOP4, LOOP6 = ip_address("127.0.0.1"), ip_address("::1")


def _relay() -> MediaRelay:
    settings = RelaySettings(addresses=(LOOP4, LOOP6), ports=(30000, 30100))
    return MediaRelay(settings, FakeForwarder(), clock=Clock())


def _plan(
    values: dict[str, Any], turn: Any = None, *, worker_slice: tuple[int, int] | None = None
) -> reloading.Plan:
    """The plan for ``values`` over the defaults (``worker_slice``: as a SIP worker)."""
    old = config.load(None, {"media.addresses": ["127.0.0.1", "::1"]})
    new = config.load(None, {"media.addresses": ["127.0.0.1", "::1"], **values})
    changed = [k for k in new.values if new.values[k] != old.values.get(k)]
    return asyncio.run(
        reloading.plan(
            new, old, changed, relay=_relay(), identity=None, turn=turn, nat64=None,
            workers=worker_slice is not None, ports=worker_slice,
        )
    )  # fmt: skip


def test_new_ports_and_timeouts_for_the_relay() -> None:
    plan = _plan({"media.ports": "31000-31200", "media.timeout": 20})
    assert plan.relay is not None and plan.turn is None
    assert plan.relay.ports == (31000, 31200) and plan.relay.timeout == 20.0
    assert plan.relay.addresses == (LOOP4, LOOP6)
    assert _plan({"registrar.max_expires": 4000}) == reloading.Plan()  # nothing to do


def test_an_address_not_on_this_host_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        _plan({"media.addresses": ["192.0.2.55"]})
    assert err.value.key == "media.addresses" and "192.0.2.55" in str(err.value)


def test_turns_relay_address_stays_in_the_shared_pool_until_a_restart() -> None:
    turn = SimpleNamespace(settings=SimpleNamespace(relay_addresses=(LOOP4,)))
    with pytest.raises(ConfigError) as err:
        _plan({"media.addresses": ["::1"]}, turn=turn)
    assert err.value.key == "media.addresses" and "127.0.0.1" in str(err.value)
    assert "TURN" in str(err.value)


def test_a_sip_worker_takes_its_slice_of_the_new_range() -> None:
    shares = 3  # two SIP workers and the supervisor's TURN
    slices = settings.media_slices((31000, 31999), shares)
    plan = _plan({"media.ports": "31000-31999"}, worker_slice=slices[1])
    assert plan.relay is not None and plan.relay.ports == slices[1] == (31332, 31663)
    # too small for every process: the error names the key, the value and what it needs
    with pytest.raises(ConfigError) as err:
        settings.media_slices((31000, 31010), shares)
    assert err.value.key == "media.ports" and "31000-31010" in str(err.value)
    assert "12 ports" in str(err.value) and "3 processes" in str(err.value)


class _Turn:
    """What ``reloading`` reads of a running TURN service (its own pool: ports)."""

    def __init__(self) -> None:
        self.settings = SimpleNamespace(relay_addresses=(LOOP4,))
        self.checked: list[tuple[int, int]] = []

    def check_ports(self, ports: tuple[int, int]) -> None:
        self.checked.append(ports)
        PortPool([LOOP4], *ports)


def _turn_plan(values: dict[str, Any], turn: _Turn) -> reloading.Plan:
    base = {"turn.relay_addresses": ["127.0.0.1"], "turn.open": True}
    old = config.load(None, base)
    new = config.load(None, {**base, **values})
    changed = [k for k in new.values if new.values[k] != old.values.get(k)]
    live = SimpleNamespace(
        settings=turn_service_settings(old.turn, realm="r", relays=(LOOP4,), ports=old.media.ports),
        check_ports=turn.check_ports,
    )
    return asyncio.run(
        reloading.plan(
            new, old, changed, relay=None, identity=None, turn=live, nat64=None,
            workers=False,
        )
    )  # fmt: skip


def test_turns_own_pool_follows_media_ports() -> None:
    turn = _Turn()
    plan = _turn_plan({"media.ports": "41000-41099"}, turn)
    assert plan.turn is not None and plan.turn.ports == (41000, 41099)
    assert turn.checked == [(41000, 41099)]
