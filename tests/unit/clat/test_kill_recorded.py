"""``rtc64 clat cleanup`` kills translators a crashed daemon recorded, and nothing else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from rtc64.io.clat_engine import kill_recorded


def test_a_reused_pid_is_never_killed(tmp_path: Path) -> None:
    """The pid file names a process that is not this instance's tayga (the pid was
    reused): it is left alone, and the stale pid file goes."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "tayga0.pid").write_text(f"{other.pid}\n")
        (tmp_path / "tayga1.pid").write_text("not a pid\n")
        assert kill_recorded(tmp_path) == []
        assert other.poll() is None
        assert not list(tmp_path.glob("*.pid"))
    finally:
        other.kill()
        other.wait()


def test_no_state_directory_is_nothing_to_do(tmp_path: Path) -> None:
    assert kill_recorded(tmp_path / "absent") == []
