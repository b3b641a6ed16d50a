"""The TURN parts of the command line: serve's --turn-* flags and `rtc64 turn credentials`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from rtc64 import cli, config
from rtc64.cli import build_parser, main
from rtc64.turnserver.credentials import turn_uris


def _serve_config(*argv: str) -> config.Config:
    args = build_parser().parse_args(["serve", *argv])
    return config.load(None, cli._overrides(args))


def test_serve_turn_flags_reach_the_turn_section() -> None:
    cfg = _serve_config(
        "--only",
        "turn",
        "--turn-open",
        "--turn-listen",
        "udp:[::1]:3478",
        "--turn-listen",
        "tcp:127.0.0.1:3478",
        "--turn-relay-address",
        "127.0.0.1",
        "--turn-external-address",
        "198.51.100.7",
        "--turn-secret",
        "new",
        "--turn-secret",
        "old",
        "--turn-allow-peer",
        "127.0.0.0/8",
        "--turn-deny-peer",
        "203.0.113.0/25",
    )
    turn = cfg.turn
    assert cfg.general.services == ("turn",)
    assert turn.open is True
    assert [str(s) for s in turn.listen] == ["udp:[::1]:3478", "tcp:127.0.0.1:3478"]
    assert turn.relay_addresses == (ip_address("127.0.0.1"),)
    assert turn.external_addresses == (ip_address("198.51.100.7"),)
    assert turn.secrets == ("new", "old")
    assert turn.allow_peers == (ip_network("127.0.0.0/8"),)
    assert turn.deny_peers == (ip_network("203.0.113.0/25"),)


def test_serve_without_turn_flags_keeps_the_defaults() -> None:
    cfg = _serve_config()
    assert cfg.turn.open is False
    assert cfg.general.services == ("sip", "media", "turn", "tunnel")
    assert "turn.open" not in cfg.overridden


def test_only_accepts_commas_and_repeats() -> None:
    assert _serve_config("--only", "sip,media").general.services == ("sip", "media")
    assert _serve_config("--only", "sip", "--only", "turn").general.services == ("sip", "turn")


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (["--turn-deny-peer", "203.0.113.5/25"], ["turn.deny_peers", "203.0.113.0/25"]),
        (["--turn-listen", "ws:[::]:80"], ["turn.listen", "udp, tcp or tls"]),
        (["--only", "turn,web"], ["general.services", "unknown service 'web'"]),
        (["--turn-relay-address", "nohost"], ["turn.relay_addresses", "IP addresses"]),
    ],
)
def test_serve_bad_turn_flag_is_one_line_before_any_socket(
    argv: list[str], fragments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *argv]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("rtc64: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]


def _credentials(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["turn", "credentials", *argv]) == cli.EXIT_OK
    body = json.loads(capsys.readouterr().out)
    assert isinstance(body, dict)
    return body


def test_turn_credentials_json(capsys: pytest.CaptureFixture[str]) -> None:
    before = int(time.time())
    body = _credentials(
        capsys,
        "--user",
        "alice",
        "--ttl",
        "600",
        "--secret",
        "s3cret",
        "--turn-listen",
        "udp:[::1]:3478",
        "--turn-listen",
        "tcp:127.0.0.1:3478",
        "--turn-listen",
        "tls:[::1]:5349",
    )
    assert set(body) == {"username", "password", "ttl", "uris"}
    username = body["username"]
    assert isinstance(username, str)
    expiry, _, user = username.partition(":")
    assert user == "alice"
    assert before + 600 <= int(expiry) <= int(time.time()) + 600
    mac = hmac.new(b"s3cret", username.encode(), hashlib.sha1).digest()
    assert body["password"] == base64.b64encode(mac).decode()
    assert body["ttl"] == 600
    assert body["uris"] == [
        "turn:[::1]:3478?transport=udp",
        "turn:127.0.0.1:3478?transport=tcp",
        "turns:[::1]:5349?transport=tcp",
    ]


def test_turn_credentials_secret_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "rtc64.toml"
    path.write_text('[turn]\nsecrets = ["first", "second"]\nlisten = ["udp:[::1]:3478"]\n')
    body = _credentials(capsys, "--config", str(path), "--user", "bob")
    username = str(body["username"])
    mac = hmac.new(b"first", username.encode(), hashlib.sha1).digest()
    assert body["password"] == base64.b64encode(mac).decode()
    assert body["ttl"] == 86400


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--user", "alice"], "--secret"),
        (["--user", "a:b", "--secret", "s"], "--user"),
        (["--user", "alice", "--secret", "s", "--ttl", "0"], "--ttl"),
        (["--user", "alice", "--secret", "s", "--turn-listen", "ws:[::]:1"], "turn.listen"),
    ],
)
def test_turn_credentials_errors(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["turn", "credentials", *argv]) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert fragment in captured.err
    assert "Traceback" not in captured.err


def test_turn_credentials_wildcard_uses_host_addresses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    host = frozenset(
        ip_address(a) for a in ("127.0.0.1", "::1", "fe80::1", "192.0.2.5", "2001:db8::5")
    )
    monkeypatch.setattr(cli.interfaces, "local_addresses", lambda: host)
    body = _credentials(capsys, "--user", "alice", "--secret", "s")
    assert body["uris"] == [
        "turn:192.0.2.5:3478?transport=udp",
        "turn:[2001:db8::5]:3478?transport=udp",
        "turn:192.0.2.5:3478?transport=tcp",
        "turn:[2001:db8::5]:3478?transport=tcp",
    ]


def test_turn_uris() -> None:
    v4, v6 = ip_address("0.0.0.0"), ip_address("::")
    only_loopback = [ip_address("127.0.0.1"), ip_address("::1"), ip_address("fe80::1")]
    assert turn_uris([("udp", v6, 3478)], host=only_loopback) == ["turn:[::1]:3478?transport=udp"]
    assert turn_uris([("udp", v4, 3478)], host=[]) == []
    external = [ip_address("198.51.100.1")]
    assert turn_uris([("udp", v4, 3478), ("tls", v4, 443)], external, only_loopback) == [
        "turn:198.51.100.1:3478?transport=udp",
        "turns:198.51.100.1:443?transport=tcp",
    ]
