"""Outbound TLS configuration keys: verification on by default, exemptions named exactly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rtc64 import config
from rtc64.errors import ConfigError
from rtc64.settings import tls_client_policy


def test_verification_is_on_by_default() -> None:
    cfg = config.load()
    assert cfg.sip.tls_verify is True
    assert cfg.sip.tls_ca_file is None
    assert cfg.sip.tls_no_verify_domains == ()
    policy = tls_client_policy(cfg.sip, logging.getLogger("test"))
    assert policy.verifies("example.net") and policy.verifies("192.0.2.1")


def test_exemptions_are_normalised_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.load(
        overrides={"sip.tls_no_verify_domains": ["Lab.Example.", "[2001:DB8::7]", "192.0.2.7"]}
    )
    assert cfg.sip.tls_no_verify_domains == ("lab.example", "2001:db8::7", "192.0.2.7")
    with caplog.at_level(logging.WARNING):
        policy = tls_client_policy(cfg.sip, logging.getLogger("test"))
    assert not policy.verifies("lab.example") and not policy.verifies("2001:db8::7")
    assert policy.verifies("sub.lab.example"), "exact names only"
    assert "lab.example" in caplog.text


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sip.tls_verify", "maybe"),
        ("sip.tls_no_verify_domains", ["bad name"]),
        ("sip.tls_no_verify_domains", ["user@host"]),
    ],
)
def test_bad_values_name_the_key(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as info:
        config.load(overrides={key: value})
    assert key in str(info.value)


def test_missing_ca_file_names_the_key(tmp_path: Path) -> None:
    cfg = config.load(overrides={"sip.tls_ca_file": str(tmp_path / "missing.pem")})
    with pytest.raises(ConfigError) as info:
        tls_client_policy(cfg.sip, logging.getLogger("test"))
    assert "sip.tls_ca_file" in str(info.value) and "missing.pem" in str(info.value)


def test_connection_reuse_keys_default_off_and_need_a_client_ca() -> None:
    cfg = config.load()
    assert (cfg.sip.tls_verify_clients, cfg.sip.tls_client_ca, cfg.sip.tls_alias) == (
        False,
        None,
        False,
    )
    with pytest.raises(ConfigError) as err:
        config.load(overrides={"sip.tls_verify_clients": True})
    assert "sip.tls_client_ca" in str(err.value)
    with pytest.raises(ConfigError) as err:
        config.load(overrides={"sip.tls_alias": "sometimes"})
    assert "sip.tls_alias" in str(err.value) and "sometimes" in str(err.value)


def test_alias_presents_the_certificate(tmp_path: Path) -> None:
    from rtc64.io import tls  # noqa: PLC0415

    cert, key = tls.ensure_self_signed(tmp_path)
    cfg = config.load(overrides={"sip.tls_alias": True})
    policy = tls_client_policy(cfg.sip, logging.getLogger("test"), (cert, key))
    assert policy.certificate == (cert, key)
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError) as err:
        tls_client_policy(cfg.sip, logging.getLogger("test"), (missing, missing))
    assert "sip.tls_cert" in str(err.value) and str(missing) in str(err.value)
