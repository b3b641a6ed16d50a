"""The command line: subcommands, verdicts of `sip check`, RFC 6052 tools, config errors."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rtc64.cli import build_parser, main

CORPUS = Path(__file__).resolve().parent.parent / "conformance" / "corpus"


def _manifest() -> list[dict[str, str]]:
    with (CORPUS / "manifest.tsv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("serve", "relay", "probe", "nat64", "sip", "user"):
        assert command in out
    assert build_parser().prog == "rtc64"


def test_sip_check_verdicts_match_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _manifest()
    assert len(rows) == 61
    status = main(["sip", "check", *(str(CORPUS / r["file"]) for r in rows)])
    assert status == 1, "some corpus messages are invalid"
    lines = capsys.readouterr().out.splitlines()
    verdicts = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in lines}
    for row in rows:
        verdict = verdicts[str(CORPUS / row["file"])]
        if row["expected"] == "valid":
            assert verdict == "valid", (row["name"], verdict)
        else:
            assert verdict.startswith("invalid: "), (row["name"], verdict)
            code, reason = verdict.removeprefix("invalid: ").split(" ", 1)
            assert 400 <= int(code) < 600 and reason, (row["name"], verdict)


def test_sip_check_one_valid_file_with_summary(capsys: pytest.CaptureFixture[str]) -> None:
    path = CORPUS / "rfc5118" / "ipv6-port-unambiguous.dat"
    if not path.exists():
        path = next(CORPUS.glob("rfc5118/*port-unambiguous*"))
    assert main(["sip", "check", "--show", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid\n")
    assert "[2001:db8::10]" in out and "5070" in out


def test_sip_check_unreadable_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sip", "check", str(tmp_path / "missing.sip")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_nat64_synth_and_extract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nat64", "synth", "192.0.2.33", "--prefix", "2001:db8:122::/48"]) == 0
    assert capsys.readouterr().out.strip() == "2001:db8:122:c000:2:2100::"
    assert main(["nat64", "extract", "64:ff9b::c000:221"]) == 0
    assert capsys.readouterr().out.strip() == "192.0.2.33"
    assert main(["nat64", "synth", "10.1.2.3"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "64:ff9b::a01:203"
    assert "not a global address" in captured.err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["nat64", "synth", "300.1.1.1"], "IPV4 = '300.1.1.1'"),
        (["nat64", "synth", "192.0.2.1", "--prefix", "2001:db8::/33"], "--prefix"),
        (["nat64", "extract", "2001:db8::1"], "an address inside 64:ff9b::/96"),
        (["serve", "--media-ports", "5-6"], "media.ports = '5-6'"),
        (["serve", "--sip-listen", "udp:[::1]5060"], "sip.listen"),
    ],
)
def test_bad_values_exit_2_with_one_line(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert err.count("\n") == 1


def test_probe_refuses_a_bad_flag_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--timeout", "0", "example.net"]) == 2
    err = capsys.readouterr().err
    assert "--timeout" in err
    assert "Traceback" not in err


def test_serve_starts_logs_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`rtc64 serve` on loopback ports chosen by the kernel; JSON logs; clean SIGTERM."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rtc64.cli",
            "--log-format",
            "json",
            "serve",
            "--sip-listen",
            "udp:127.0.0.1:0",
            "--sip-listen",
            "tcp:[::1]:0",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "gateway ready" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=20)
    assert proc.returncode == 0, "".join(lines) + rest
    assert any('"msg": "gateway ready' in line for line in lines), lines
    assert all(line.startswith("{") for line in lines if line.strip())
    assert "rtc64 stopping" in rest


def _lf_only(name: str) -> bytes:
    data = (CORPUS / name).read_bytes()
    assert b"\r\n" in data
    return data.replace(b"\r\n", b"\n")


def test_sip_check_reads_lf_only_files_as_crlf(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A message saved by an editor (LF only, Content-Length of the CRLF form) is checked
    as the CRLF message it stands for, and the tool says so."""
    for name in ("rfc5118/port-unambiguous.dat", "rfc4475/sdp01.dat"):
        path = tmp_path / Path(name).name
        path.write_bytes(_lf_only(name))
        assert main(["sip", "check", "--show", str(path)]) == 0, name
        captured = capsys.readouterr()
        assert captured.out.startswith("valid\n  line endings: LF only, checked as CRLF\n")
        assert f"{path}: note: no CR in it" in captured.err
    # An invalid message stays invalid for its own reason, not for its line endings.
    bad = tmp_path / "badvers.sip"
    bad.write_bytes(_lf_only("rfc4475/badvers.dat"))
    assert main(["sip", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("invalid: ") and "empty line" not in out


def test_sip_check_names_the_bare_lf_of_mixed_line_endings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = (CORPUS / "rfc5118/port-unambiguous.dat").read_bytes()
    first, rest = data.split(b"\r\n", 1)
    second, rest = rest.split(b"\r\n", 1)
    path = tmp_path / "mixed.sip"
    path.write_bytes(first + b"\r\n" + second + b"\n" + rest)
    assert main(["sip", "check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith("invalid: 400 ")
    assert "line 2 ends with LF only" in captured.err


def test_sip_check_reads_stdin(tmp_path: Path) -> None:
    valid = (CORPUS / "rfc5118/port-unambiguous.dat").read_bytes()
    for stdin, code, first in (
        (valid, 0, "valid"),
        (valid.replace(b"\r\n", b"\n"), 0, "valid"),
        (b"garbage\r\n\r\n", 1, "invalid: 400 "),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "rtc64.cli", "sip", "check", "--show", "-"],
            input=stdin,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == code, proc.stderr
        assert proc.stdout.decode().startswith(first)
        assert b"Traceback" not in proc.stderr
    lone = tmp_path / "one.sip"
    lone.write_bytes(valid)
    proc = subprocess.run(
        [sys.executable, "-m", "rtc64.cli", "sip", "check", str(lone), "-"],
        input=valid,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().splitlines() == [f"{lone}: valid", "(stdin): valid"]


def test_sip_check_stdin_named_twice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sip", "check", "-", "-"]) == 2
    assert "named once" in capsys.readouterr().err
