"""``rtc64 relay``: the media relay alone behind its ng socket (what Kamailio's rtpengine
module drives); flags, global options anywhere, one-line errors, a real run."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtc64.cli import RELAY_FLAGS, build_parser, main

READY = re.compile(r"ng server ready on udp:127\.0\.0\.1:(\d+): relay on 127\.0\.0\.1")


def test_flags_map_to_configuration_keys() -> None:
    args = build_parser().parse_args(
        [
            "relay",
            "--ng-listen",
            "udp:127.0.0.1:2223",
            "--interface",
            "internal=ipv4",
            "--interface",
            "external=ipv6",
            "--media-address",
            "10.0.0.5",
            "--media-advertise",
            "203.0.113.5",
            "--media-ports",
            "42000-42100",
            "--media-workers",
            "2",
            "--media-timeout",
            "30",
            "--strict-source",
            "true",
            "--trusted-network",
            "10.0.0.0/8",
        ]
    )
    assert args.command == "relay"
    assert getattr(args, "ng.listen") == "udp:127.0.0.1:2223"
    assert getattr(args, "ng.interfaces") == ["internal=ipv4", "external=ipv6"]
    assert getattr(args, "media.addresses") == ["10.0.0.5"]
    assert getattr(args, "media.advertise") == ["203.0.113.5"]
    assert getattr(args, "media.ports") == "42000-42100"
    assert getattr(args, "media.workers") == "2"
    assert getattr(args, "media.timeout") == "30"
    assert getattr(args, "media.strict_source") == "true"
    assert getattr(args, "sip.trusted_networks") == ["10.0.0.0/8"]
    assert {key for _, key, _ in RELAY_FLAGS} <= set(vars(args))


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "debug", "--config", "c.toml", "relay"],
        ["relay", "--log-level", "debug", "--config", "c.toml"],
        ["--config", "c.toml", "relay", "--log-level", "debug"],
    ],
)
def test_global_options_before_or_after(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.log_level == "debug" and args.config == Path("c.toml")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--ng-listen", "tcp:127.0.0.1:2223"], "ng.listen = 'tcp:127.0.0.1:2223'"),
        (["--interface", "lan=ipx"], "ng.interfaces"),
        (["--media-address", "127.0.0.1"], "ng.listen = '': expected udp:HOST:PORT"),
        (["--ng-listen", "udp:127.0.0.1:0"], "media.addresses = []"),
        (
            ["--ng-listen", "udp:127.0.0.1:0", "--media-address", "198.51.100.77"],
            "media.addresses = '198.51.100.77': expected an address of this host",
        ),
        (["--media-ports", "5000"], "media.ports"),
    ],
)
def test_bad_settings_exit_2_with_one_line(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["relay", "--log-level", "error", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("rtc64: config: ") and fragment in err, err


def test_runs_answers_ng_and_stops_on_sigterm(tmp_path: Path) -> None:
    """Global options after the subcommand, a value from the file overridden by a flag,
    an ng ping answered, exit 0 on SIGTERM."""
    conf = tmp_path / "relay.toml"
    conf.write_text('[media]\naddresses = ["127.0.0.1"]\nports = "43000-43100"\n')
    argv = [sys.executable, "-m", "rtc64", "relay", "--ng-listen", "udp:127.0.0.1:0"]
    argv += ["--config", str(conf), "--media-ports", "43100-43200", "--log-level", "debug"]
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 20
        found = None
        while found is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            found = READY.search(line)
        assert found is not None, "".join(lines)
        assert "ports 43100-43200" in lines[-1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            sock.sendto(b"c1 d7:command4:pinge", ("127.0.0.1", int(found.group(1))))
            assert sock.recv(1000) == b"c1 d6:result4:ponge"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0, "".join(lines) + rest
    assert "Traceback" not in rest
