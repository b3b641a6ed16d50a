"""The helper scripts: valid shell, and they never kill processes by name (a user's own
kamailio, redis or unbound must survive ``make test``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "scripts").glob("*.sh"))
KILL_BY_NAME = re.compile(r"^\s*[^#\n]*\b(pkill|killall|pgrep\b.*\|\s*xargs\s+kill)\b", re.M)


def test_there_are_scripts() -> None:
    assert any(p.name == "install-system-deps.sh" for p in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_is_valid_bash(script: Path) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    proc = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_never_kills_by_process_name(script: Path) -> None:
    found = KILL_BY_NAME.findall(script.read_text(encoding="utf-8"))
    assert not found, f"{script.name} kills processes by name: {found}"
