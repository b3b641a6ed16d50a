"""``rtc64 tunnel`` flag validation: bad flags name the flag and the form, exit 2."""

from __future__ import annotations

import pytest

from rtc64 import cli


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["tunnel", "serve", "--prefix", "fd00::/48"], "--prefix"),
        (["tunnel", "serve", "--prefix", "nonsense"], "--prefix"),
        (["tunnel", "serve", "--prefix", "fd00:64::/64", "--listen", "tcp:1.2.3.4:1"], "--listen"),
        (["tunnel", "serve", "--prefix", "fd00:64::/64", "--listen", "udp:x:99999"], "--listen"),
        (["tunnel", "serve", "--prefix", "fd00:64::/64", "--keepalive", "0"], "--keepalive"),
        (["tunnel", "serve", "--prefix", "fd00:64::/64", "--rate", "-1"], "--rate"),
        (["tunnel", "serve", "--prefix", "fd00:64::/64", "--server-ipv4", "::1"], "--server-ipv4"),
        (["tunnel", "serve", "--prefix", "fd00:64::/64", "--tun", "a/b"], "--tun"),
        (["tunnel", "connect", "server.example"], "SERVER"),
        (["tunnel", "connect", "192.0.2.1:0"], "SERVER"),
        (["tunnel", "connect", "192.0.2.1", "--route", "10.0.0.0/8"], "--route"),
        (["tunnel", "connect", "192.0.2.1", "--log-level", "loud"], "--log-level"),
    ],
)
def test_bad_flags(argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert flag in err and "expected" in err and "Traceback" not in err
