"""The admin account file: scrypt hash, never the password, mode 0600."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from rtc64 import cli
from rtc64.errors import ConfigError
from rtc64.web import auth


def test_round_trip_and_mode(tmp_path: Path) -> None:
    path = auth.save_admin(tmp_path, auth.hash_admin("admin", "s3cret-pass"))
    assert path.stat().st_mode & 0o777 == 0o600
    assert "s3cret-pass" not in path.read_text()
    admin = auth.load_admin(tmp_path)
    assert admin is not None
    assert admin.check("admin", "s3cret-pass")
    assert not admin.check("admin", "s3cret-pasS")
    assert not admin.check("root", "s3cret-pass")
    other = auth.hash_admin("admin", "s3cret-pass")
    assert other.salt != admin.salt  # fresh salt every time


def test_missing_and_broken(tmp_path: Path) -> None:
    assert auth.load_admin(tmp_path) is None
    (tmp_path / auth.ADMIN_FILE).write_text("{not json")
    with pytest.raises(ConfigError) as err:
        auth.load_admin(tmp_path)
    assert auth.ADMIN_FILE in str(err.value)
    (tmp_path / auth.ADMIN_FILE).write_text(
        json.dumps({"user": "a", "scheme": "md5", "salt": "", "hash": ""})
    )
    with pytest.raises(ConfigError):
        auth.load_admin(tmp_path)


@pytest.mark.parametrize(
    ("user", "password"),
    [("", "longenough"), ("a b", "longenough"), ("a:b", "longenough"), ("admin", "short")],
)
def test_bad_input(user: str, password: str) -> None:
    with pytest.raises(ConfigError):
        auth.hash_admin(user, password)


def test_cli_set_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("another-password\n"))
    code = cli.main(["--config", str(_cfg(tmp_path)), "admin", "set-password", "--user", "ops"])
    assert code == 0
    admin = auth.load_admin(tmp_path)
    assert admin is not None and admin.check("ops", "another-password")
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["--config", str(_cfg(tmp_path)), "admin", "set-password"]) == 2
    assert "at least 8" in capsys.readouterr().err


def _cfg(tmp_path: Path) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(f'[general]\ndata_dir = "{tmp_path}"\n')
    return path
