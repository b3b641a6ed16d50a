"""keepalive.* configuration keys and the serve flags: defaults, overrides, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rtc64 import config
from rtc64.cli import _overrides, build_parser
from rtc64.errors import ConfigError
from rtc64.settings import keepalive_settings


def test_keepalives_are_on_by_default_with_the_issue_s_intervals() -> None:
    ka = keepalive_settings(config.load().keepalive)
    assert ka.enabled and ka.interval == 25.0 and ka.options_interval == 120.0
    assert ka.max_failures == 3 and ka.payload == b"\r\n\r\n"


def test_flags_override_the_keys() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--keepalive-interval",
            "2.5",
            "--keepalive-options-interval",
            "0",
            "--keepalive",
            "false",
        ]
    )
    cfg = config.load(None, _overrides(args))
    assert cfg.keepalive.interval == 2.5 and cfg.keepalive.options_interval == 0.0
    assert cfg.keepalive.enabled is False


def test_a_hex_payload() -> None:
    cfg = config.load(None, {"keepalive.payload": "hex:00000000"})
    assert cfg.keepalive.payload == b"\0\0\0\0"
    assert ("keepalive.payload", "hex:00000000") in cfg.describe()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("keepalive.interval", "0"),
        ("keepalive.interval", "soon"),
        ("keepalive.options_interval", "-5"),
        ("keepalive.max_failures", "0"),
        ("keepalive.payload", "hex:zz"),
        ("keepalive.payload", "hex:"),
        ("keepalive.payload", "ping"),
        ("keepalive.enabled", "maybe"),
    ],
)
def test_bad_values_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(None, {key: value})
    assert info.value.key == key


def test_a_bad_flag_is_one_line_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rtc64", "serve", "--keepalive-interval", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "keepalive.interval" in proc.stderr and "Traceback" not in proc.stderr
    assert "0.05..3600" in proc.stderr
