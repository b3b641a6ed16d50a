"""``rtc64 ctl`` against the API on a loopback port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtc64 import cli, ctl
from rtc64.gateway.ratelimit import AuthFailureTracker
from rtc64.net.address import parse_ip
from tests.unit.web.fakes import (
    NOW,
    TOKEN,
    V4,
    V6,
    FakeProxy,
    guard,
    serving,
    signalled,
    sources,
)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_ctl_commands(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tracker = AuthFailureTracker(1, 60, 300)
    tracker.record_failure(V6, NOW)
    monkeypatch.setenv("RTC64_TOKEN", TOKEN)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[general]\ndata_dir = "{tmp_path}"\n')
    proxy = FakeProxy(calls=[signalled(b"c1", V6, V4), signalled(b"plain", V4, V4, relayed=False)])
    with serving(sources(blocks=tracker, proxy=proxy), guard()) as port:
        base = ["--config", str(cfg), "ctl"]
        url = ["--url", f"http://127.0.0.1:{port}"]
        code, out, _ = run([*base, "registrations", *url], capsys)
        assert code == 0
        assert "LAST-KEEPALIVE" in out
        assert "sip:alice@example.net" in out and "IPv6" in out and "[2001:db8::10]:5062" in out
        code, out, _ = run(
            [*base, "registrations", "sip:nobody@example.net", "--json", *url], capsys
        )
        assert json.loads(out) == {"aors": []}
        code, out, _ = run([*base, "calls", *url], capsys)
        assert "c1" in out and "IPv6 -> IPv4" in out
        plain = next(line for line in out.splitlines() if line.startswith("plain"))
        assert "IPv4 -> IPv4" in plain and "IPv4 udp 192.0.2.10:5062" in plain and " no " in plain
        code, out, _ = run([*base, "relay", *url], capsys)
        assert "[2001:db8::10]:30000" in out and "192.0.2.10:30000" in out
        code, out, _ = run([*base, "turn", "--json", *url], capsys)
        assert json.loads(out)["allocations"][0]["username"] == "1800000000:alice"
        code, out, _ = run([*base, "unblock", "2001:db8::5", *url], capsys)
        assert code == 0 and "1 block(s) lifted" in out
        code, out, _ = run([*base, "unblock", "2001:db8::5", *url], capsys)
        assert code == 1 and "0 block(s) lifted" in out
        code, out, err = run([*base, "reload", *url], capsys)
        assert code == 1 and "501" in err
        monkeypatch.setenv("RTC64_TOKEN", "wrong-token-0123456789")
        code, _, err = run([*base, "calls", *url], capsys)
        assert code == 1 and "401" in err
    code, _, err = run([*base, "calls", "--url", f"http://127.0.0.1:{port}"], capsys)
    assert code == 1 and "cannot reach" in err
    code, _, err = run([*base, "calls", "--url", "file:///etc/passwd"], capsys)
    assert code == 1 and "expected http" in err


def test_ctl_open_console_sends_csrf(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("RTC64_TOKEN", raising=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[general]\ndata_dir = "{tmp_path}"\n')
    with serving(sources(), guard(admin=False, token="")) as port:
        code, out, _ = run(
            ["--config", str(cfg), "ctl", "unblock", "eve", "--url", f"http://127.0.0.1:{port}"],
            capsys,
        )
        assert code == 1 and "0 block(s) lifted" in out  # reached the handler: CSRF passed


def test_default_url() -> None:
    assert ctl.default_url((parse_ip("::1"), 8064), False) == "http://[::1]:8064"
    assert ctl.default_url((parse_ip("0.0.0.0"), 80), True) == "https://127.0.0.1:80"
    assert ctl.default_url((parse_ip("::"), 80), False) == "http://[::1]:80"


def test_registrations_table_shows_keepalive_state_and_last_answer() -> None:
    contact = {
        "contact": "<sip:alice@[2001:db8::10]:5062>",
        "family": "IPv6",
        "transport": "udp",
        "received": "[2001:db8::10]:5062",
        "expires_in": 300,
        "keepalive": "reachable",
        "last_keepalive": NOW,
        "rtt_ms": 12.3,
    }
    never = {**contact, "keepalive": "unknown", "last_keepalive": None, "rtt_ms": None}
    body = {"aors": [{"aor": "sip:alice@example.net", "contacts": [contact, never]}]}
    first, second = ctl.show_registrations(body).splitlines()[1:]
    assert "reachable" in first and "2027-01-15T08:00:00Z" in first and "12.3 ms" in first
    assert "unknown" in second and second.split()[-2:] == ["-", "-"]


def test_ctl_tunnel(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.unit.web.test_tunnel_web import FakeTunnel, _counters  # noqa: PLC0415

    monkeypatch.setenv("RTC64_TOKEN", TOKEN)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[general]\ndata_dir = "{tmp_path}"\n')
    base = ["--config", str(cfg), "ctl", "tunnel"]
    with serving(sources(tunnel=FakeTunnel(_counters())), guard()) as port:
        code, out, _ = run([*base, "--url", f"http://127.0.0.1:{port}"], capsys)
    assert code == 0 and "0.0.0.0:3653 fd00:64::/64 routed (tsp0)" in out
    upstream = next(line for line in out.splitlines() if line.startswith("upstream"))
    assert upstream.split() == ["upstream", "10", "1000"]
    assert any(line.split()[-2:] == ["4", "-"] for line in out.splitlines() if "egress" in line)
    with serving(sources(), guard()) as port:
        code, out, _ = run([*base, "--url", f"http://127.0.0.1:{port}"], capsys)
    assert code == 0 and "not running" in out
