"""The command line as a user runs it: bad configuration and data-directory problems end in
one line naming the path and the problem (exit 2, no traceback); global options work after
the subcommand; ``python -m rtc64`` runs."""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from rtc64.cli import build_parser


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory that an unprivileged user can enter (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="rtc64-cli-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_capabilities() -> None:
    """In the child before exec: take CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH out of the
    bounding set, so root's new program obeys file modes like any owner does."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _unprivileged() -> dict[str, object]:
    """Root reads and writes everything: run it without the file-permission overrides."""
    if os.geteuid() != 0:
        return {}
    return {"preexec_fn": _drop_file_capabilities}


def rtc64(
    *args: str, cwd: Path, unprivileged: bool = False, stdin: str = "", module: str = "rtc64.cli"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(cwd), "XDG_STATE_HOME": str(cwd / "state")}
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        **(_unprivileged() if unprivileged else {}),  # type: ignore[arg-type]
    )


def assert_one_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit 2, no traceback, exactly one ``rtc64:`` error line that names ``fragments``;
    for ``serve`` the lines before it are log lines."""
    err = proc.stderr
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("rtc64: ")]
    assert len(errors) == 1, err
    assert err.splitlines()[-1] == errors[0]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def test_config_that_is_a_directory(open_dir: Path) -> None:
    proc = rtc64("--config", str(open_dir), "serve", cwd=open_dir)
    assert_one_line(proc, f"--config = '{open_dir}'", "Is a directory")
    assert proc.stderr.count("\n") == 1


def test_config_that_is_unreadable(open_dir: Path) -> None:
    config = open_dir / "rtc64.toml"
    config.write_text('[general]\nlog_level = "info"\n')
    config.chmod(0o000)
    proc = rtc64("serve", "--config", str(config), cwd=open_dir, unprivileged=True)
    assert_one_line(proc, f"--config = '{config}'", "Permission denied")
    assert proc.stderr.count("\n") == 1


def test_config_that_is_not_utf8(open_dir: Path) -> None:
    config = open_dir / "rtc64.toml"
    config.write_bytes(b"\xff\xfe[general]\n")
    assert_one_line(rtc64("--config", str(config), "serve", cwd=open_dir), "UTF-8")


def test_data_dir_that_is_a_file(open_dir: Path) -> None:
    in_the_way = open_dir / "state"
    in_the_way.write_text("not a directory")
    for args in (
        ["user", "list", "--data-dir", str(in_the_way)],
        ["--data-dir", str(in_the_way / "below"), "user", "list"],
        ["serve", "--sip-listen", "udp:127.0.0.1:0", "--data-dir", str(in_the_way)],
    ):
        line = assert_one_line(rtc64(*args, cwd=open_dir), "general.data_dir", str(in_the_way))
        assert "directory" in line


def test_data_dir_that_cannot_be_created(open_dir: Path) -> None:
    locked = open_dir / "locked"
    locked.mkdir(mode=0o555)
    target = locked / "rtc64"
    proc = rtc64("user", "list", "--data-dir", str(target), cwd=open_dir, unprivileged=True)
    assert_one_line(proc, f"general.data_dir = '{target}'", "Permission denied")
    assert not target.exists()


def test_data_dir_that_is_not_writable(open_dir: Path) -> None:
    data = open_dir / "data"
    data.mkdir(mode=0o555)
    proc = rtc64("user", "list", "--data-dir", str(data), cwd=open_dir, unprivileged=True)
    assert_one_line(proc, f"general.data_dir = '{data}'", "permission denied")


@pytest.mark.parametrize("name", ["secret.key", "location.sqlite", "sip-tls-cert.pem"])
def test_directory_in_the_way_of_a_data_file(open_dir: Path, name: str) -> None:
    data = open_dir / "data"
    (data / name).mkdir(parents=True)
    proc = rtc64(
        "serve",
        "--sip-listen",
        "tls:127.0.0.1:0",
        "--data-dir",
        str(data),
        cwd=open_dir,
    )
    assert_one_line(proc, str(data / name))


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--nat64-prefix", "64:ff9b::1/96"], "nat64.prefix = '64:ff9b::1/96'"),
        (["--nat64-prefix", "2001:db8::/33"], "nat64.prefix = '2001:db8::/33'"),
        (["--dns-server", "dns.example.net"], "is a name, not an IP address"),
        (["--dns-server", "[::1"], "dns.servers"),
        (["--dns-server", "192.0.2.1:53", "--dns-server", "[::1]:5353"], "same port"),
    ],
)
def test_nat64_prefix_and_dns_servers_fail_before_any_socket(
    open_dir: Path, args: list[str], fragment: str
) -> None:
    """The bad value is reported before start-up: nothing is logged, nothing is bound."""
    proc = rtc64("serve", "--sip-listen", "udp:127.0.0.1:0", *args, cwd=open_dir)
    assert_one_line(proc, fragment)
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not (open_dir / "state").exists(), "nothing may be created before validation"


def test_nat64_prefix_and_dns_servers_from_a_file(open_dir: Path) -> None:
    config = open_dir / "rtc64.toml"
    config.write_text('[nat64]\nprefix = "64:ff9b::/95"\n')
    assert_one_line(rtc64("--config", str(config), "serve", cwd=open_dir), "nat64.prefix")
    config.write_text('[dns]\nservers = ["resolver.example"]\n')
    assert_one_line(rtc64("--config", str(config), "serve", cwd=open_dir), "dns.servers")


def test_global_options_after_the_subcommand(open_dir: Path) -> None:
    data = open_dir / "after"
    proc = rtc64("user", "add", "alice", "--password", "pw", "--data-dir", str(data), cwd=open_dir)
    assert proc.returncode == 0, proc.stderr
    with sqlite3.connect(data / "location.sqlite") as db:
        names = [row[0] for row in db.execute("SELECT name FROM users")]
    assert names == ["alice"]
    listed = rtc64("user", "list", "--data-dir", str(data), "--log-level", "error", cwd=open_dir)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("alice\t")
    before = rtc64("--data-dir", str(data), "user", "list", cwd=open_dir)
    assert before.stdout == listed.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--data-dir", "D", "user", "list"],
        ["user", "--data-dir", "D", "list"],
        ["user", "list", "--data-dir", "D"],
        ["--data-dir", "X", "user", "list", "--data-dir", "D"],
        ["serve", "--data-dir", "D"],
        ["sip", "check", "f", "--data-dir", "D"],
        ["nat64", "discover", "--data-dir", "D"],
    ],
)
def test_global_option_given_anywhere_is_kept(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert getattr(args, "general.data_dir") == "D"


def test_global_option_before_is_not_overwritten_by_a_subcommand_default() -> None:
    args = build_parser().parse_args(
        ["--log-level", "debug", "--config", "c.toml", "user", "add", "bob"]
    )
    assert args.log_level == "debug" and args.config == Path("c.toml")
    assert args.log_format is None and getattr(args, "general.data_dir") is None


def test_python_dash_m_rtc64(open_dir: Path) -> None:
    proc = rtc64("--version", cwd=open_dir, module="rtc64")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("rtc64 ")
    bad = rtc64("nat64", "synth", "300.1.1.1", cwd=open_dir, module="rtc64")
    assert_one_line(bad, "IPV4")


def test_media_address_not_on_this_host_is_refused_before_binding(open_dir: Path) -> None:
    proc = rtc64(
        "serve",
        "--sip-listen",
        "udp:127.0.0.1:0",
        "--media-address",
        "198.51.100.77",
        "--data-dir",
        str(open_dir / "data"),
        cwd=open_dir,
    )
    assert_one_line(proc, "media.addresses = '198.51.100.77'", "media.advertise")
    assert "SIP listening" not in proc.stderr


def test_media_address_declared_as_advertised_starts(open_dir: Path) -> None:
    """The advertised address is not bound: the relay binds the local address of its
    family (here the SIP listener's) and logs what SDP will carry."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtc64.cli",
            "serve",
            "--sip-listen",
            "udp:127.0.0.1:0",
            "--media-address",
            "198.51.100.77",
            "--media-advertise",
            "198.51.100.77",
            "--data-dir",
            str(open_dir / "data"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "gateway ready" in line or "rtc64: " in line[:7]:
                break
    finally:
        proc.send_signal(signal.SIGTERM)
        rest = proc.communicate(timeout=30)[1]
    text = "".join(lines) + rest
    assert proc.returncode == 0, text
    assert "media relay on 127.0.0.1 (advertised as 198.51.100.77)" in text, text
    assert "Traceback" not in text
