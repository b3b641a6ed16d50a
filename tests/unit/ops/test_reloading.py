"""What a reload plans for the relay and TURN, checked before anything changes."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from types import SimpleNamespace
from typing import Any

import pytest

from rtc64 import config, reloading
from rtc64.errors import ConfigError
from rtc64.relay.engine import MediaRelay
from rtc64.relay.options import RelaySettings
from tests.unit.relay.helpers import Clock, FakeForwarder

LOOP4, LOOP6 = ip_address("127.0.0.1"), ip_address("::1")


def _relay() -> MediaRelay:
    settings = RelaySettings(addresses=(LOOP4, LOOP6), ports=(30000, 30100))
    return MediaRelay(settings, FakeForwarder(), clock=Clock())


def _plan(values: dict[str, Any], turn: Any = None) -> reloading.Plan:
    old = config.load(None, {"media.addresses": ["127.0.0.1", "::1"]})
    new = config.load(None, {"media.addresses": ["127.0.0.1", "::1"], **values})
    changed = [k for k in new.values if new.values[k] != old.values.get(k)]
    return asyncio.run(
        reloading.plan(
            new, old, changed, relay=_relay(), identity=None, turn=turn, nat64=None,
            workers=False,
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
