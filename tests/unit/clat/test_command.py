"""``rtc64 clat`` flag errors name the flag, the value and the form; status without daemon."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtc64 import cli


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--mtu", "576"], "--mtu"),
        (["--prefix", "fd64::/80"], "--prefix"),
        (["--prefix", "nonsense"], "--prefix"),
        (["--interface", "x" * 16], "--interface"),
        (["--netns-prefix", "a/b"], "--netns-prefix"),
    ],
)
def test_run_flag_errors(args: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["clat", "run", *args]) == 2
    err = capsys.readouterr().err
    assert flag in err and "expected" in err and "Traceback" not in err


def test_status_without_a_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["clat", "status", "--state-dir", str(tmp_path)]) == 1
    assert "no CLAT daemon running" in capsys.readouterr().out
    assert cli.main(["clat", "status", "--json", "--state-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out.strip() == '{"running": false, "links": []}'


def test_a_missing_tool_is_an_engine_error_not_a_crash() -> None:
    from rtc64.io import clat_engine  # noqa: PLC0415

    with pytest.raises(clat_engine.EngineError, match="r64-no-such-tool"):
        clat_engine.run("/nonexistent/r64-no-such-tool")


def test_run_without_tayga_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtc64.clat import command  # noqa: PLC0415

    monkeypatch.setattr(command.os, "geteuid", lambda: 0)
    monkeypatch.setattr(command.shutil, "which", lambda tool: None if tool == "tayga" else tool)
    assert cli.main(["clat", "run"]) == 1
    assert "apt install tayga" in capsys.readouterr().err


def test_run_as_a_user_needs_root(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtc64.clat import command  # noqa: PLC0415

    monkeypatch.setattr(command.os, "geteuid", lambda: 1000)
    assert cli.main(["clat", "run"]) == 1
    assert "needs root" in capsys.readouterr().err


def test_status_text_of_a_live_daemon(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415

    links = [
        {"interface": "eth0", "state": "running", "ipv4": "192.0.0.1", "prefix": "64:ff9b::/96",
         "clat_ipv6": "2001:db8::7", "prefix_source": "pref64", "engine": "tayga",
         "policy": "dedicated",
         "namespace": "rtc64-clat0", "mtu": 1260, "host_link": "r64-no-such-link",
         "counters": {"to_clat_packets": 5, "from_clat_packets": 4}},
        {"interface": "wlan0", "state": "off", "reason": "IPv4 present on the link",
         "detail": "IPv4 address 10.0.0.2/24",
         "dhcpv4": "IPv4 10.0.0.2 offered by 10.0.0.1 without option 108 (not taken)"},
    ]  # fmt: skip
    (tmp_path / "status.json").write_text(json.dumps({"pid": os.getpid(), "links": links}))
    assert cli.main(["clat", "status", "--state-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        "eth0: running: IPv4 192.0.0.1 -> 2001:db8::7 (dedicated) via 64:ff9b::/96"
    )
    assert "packets out 5 in 4" in out[0]
    assert out[1] == (
        "wlan0: off: IPv4 present on the link (IPv4 address 10.0.0.2/24); DHCPv4: IPv4 "
        "10.0.0.2 offered by 10.0.0.1 without option 108 (not taken)"
    )
