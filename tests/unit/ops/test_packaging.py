"""Packaging: the sample configuration loads, the systemd unit verifies, LICENSE matches
pyproject, ``python -m rtc64`` runs."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from rtc64 import config

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "packaging" / "rtc64.service"


def test_sample_configuration_loads_and_has_every_section() -> None:
    path = ROOT / "packaging" / "rtc64.toml"
    cfg = config.load(path)
    assert cfg.source == path
    document = tomllib.loads(path.read_text())
    assert set(document) == set(config.SECTIONS)
    assert cfg.general.log_format == "json"
    assert cfg.general.drain_seconds == 30


def _unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


def test_systemd_unit_grants_only_net_bind_and_is_hardened() -> None:
    service = _unit()["Service"]
    assert service["User"] == "rtc64"
    assert service["AmbientCapabilities"].split() == ["CAP_NET_BIND_SERVICE"]
    assert service["CapabilityBoundingSet"].split() == ["CAP_NET_BIND_SERVICE"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["StateDirectory"] == "rtc64"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert " serve" in service["ExecStart"]


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    rtc64 = Path(sys.executable).with_name("rtc64")
    if analyze is None or not rtc64.exists():
        # No systemd here: the unit still parses as an INI file with the usual sections.
        assert {"Unit", "Service", "Install"} <= set(_unit().sections())
        return
    unit = tmp_path / "rtc64.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/rtc64", str(rtc64)))
    proc = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    mentions = [line for line in proc.stderr.splitlines() if "rtc64.service" in line]
    assert proc.returncode == 0 and not mentions, proc.stderr


def test_license_file_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_python_dash_m_rtc64_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rtc64", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("rtc64 ")
