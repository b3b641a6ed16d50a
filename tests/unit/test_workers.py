"""``sip.workers``: how many, the media port slices, and the configuration errors."""

from __future__ import annotations

import dataclasses
import itertools
import os

import pytest

from rtc64 import config
from rtc64.errors import ConfigError
from rtc64.workers import media_slices, worker_count


def test_default_is_one_worker_per_core() -> None:
    cfg = config.load(None, {})
    assert cfg.sip.workers == 0
    assert worker_count(cfg) == len(os.sched_getaffinity(0))
    assert worker_count(config.load(None, {"sip.workers": "3"})) == 3
    assert worker_count(config.load(None, {"sip.workers": 1})) == 1


def test_without_sip_one_process() -> None:
    cfg = config.load(None, {"sip.workers": 4, "general.services": ["turn"]})
    assert worker_count(cfg) == 1


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("sip.workers", "-1", "0..256"),
        ("sip.workers", "many", "0..256"),
        ("sip.workers", 257, "0..256"),
        ("sip.worker_ports", 80, "1024..65535"),
        ("sip.worker_ports", 70000, "1024..65535"),
    ],
)
def test_bad_values_name_key_and_form(key: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(None, {key: value})
    assert info.value.key == key
    assert expected in str(info.value)


def test_media_slices_are_disjoint_even_and_inside_the_range() -> None:
    slices = media_slices((30001, 40000), 3)
    assert len(slices) == 3
    for low, high in slices:
        assert low % 2 == 0 and high % 2 == 1 and 30001 <= low < high <= 40000
    for (_, high), (low, _) in itertools.pairwise(slices):
        assert high < low


def test_media_range_too_small_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        media_slices((30000, 30010), 4)
    assert info.value.key == "media.ports"
    assert "16 ports" in str(info.value)


def test_config_is_picklable_for_the_spawned_workers() -> None:
    import pickle  # noqa: PLC0415

    cfg = config.load(None, {"sip.workers": 2})
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and again.sip.workers == 2
    values = {**cfg.values, "general.services": ("turn",)}
    assert dataclasses.replace(cfg, values=values).general.services == ("turn",)
