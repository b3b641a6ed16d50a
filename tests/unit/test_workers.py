"""``sip.workers``: how many, the media port slices, the configuration errors, and the
supervisor's signals (SIGHUP passed on, SIGTERM drains)."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtc64 import config
from rtc64.errors import ConfigError
from rtc64.settings import media_slices
from rtc64.workers import worker_count


def test_default_is_one_worker_per_core_and_1_is_one_process() -> None:
    cfg = config.load(None, {})
    assert cfg.sip.workers == 0
    assert worker_count(cfg) == len(os.sched_getaffinity(0))
    assert worker_count(config.load(None, {"sip.workers": 0})) == len(os.sched_getaffinity(0))
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


def test_supervisor_passes_sighup_on_and_drains_on_sigterm(tmp_path: Path) -> None:
    """`rtc64 serve --sip-workers 2`: SIGHUP reloads in both workers (the supervisor does
    not die of it), SIGTERM drains both, then everything exits 0."""
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtc64.cli", "serve", "--sip-workers", "2", "--only", "sip",
             "--sip-listen", "udp:127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
             "--web-listen", "127.0.0.1:0"],  # not the default port others' runs may hold
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            assert _wait_for(log, "gateway ready: 2 SIP workers"), log.read_text()
            proc.send_signal(signal.SIGHUP)
            assert _wait_for(log, "w0: configuration reloaded"), log.read_text()
            assert _wait_for(log, "w1: configuration reloaded"), log.read_text()
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = log.read_text()
    assert "w0: drained" in text and "w1: drained" in text and "rtc64 stopping" in text
    assert "exited with" not in text


def _wait_for(path: Path, text: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False


def test_supervisor_restarts_workers_with_the_last_media_range_it_could_cut(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from rtc64.workers import _Media  # noqa: PLC0415

    start = config.load(None, {"media.ports": "30000-30999"})
    media = _Media(start.media.ports, 3, logging.getLogger("t"))
    assert media.applied(start) is start
    caplog.set_level(logging.INFO)
    media.reload(config.load(None, {"media.ports": "31000-31005"}))  # 3 processes: too small
    assert "media.ports not changed" in caplog.text and "31000-31005" in caplog.text
    assert media.applied(start).media.ports == (30000, 30999)
    media.reload(config.load(None, {"media.ports": "32000-32999"}))
    restarted = media.applied(start)
    assert restarted.media.ports == (32000, 32999)
    assert restarted.sip == start.sip  # nothing else changes
    assert "0: 32000-32331, 1: 32332-32663, 2: 32664-32995" in caplog.text
