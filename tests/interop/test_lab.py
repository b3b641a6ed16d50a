"""The lab itself: the hosts are really single-family and only the gateway spans both."""

from __future__ import annotations

import pytest

from tests.interop.lab import V4_GW, V4_HOST, V6_GW, V6_HOST, lab, require_lab

pytestmark = pytest.mark.interop


def test_topology_is_single_family_per_host() -> None:
    require_lab("ping")
    with lab() as net:
        assert net.v6.run("ping", "-c1", "-W1", str(V6_GW), check=False).returncode == 0
        assert net.v4.run("ping", "-c1", "-W1", str(V4_GW), check=False).returncode == 0
        # No path across without a process in the gateway: forwarding is off.
        assert net.v4.run("ping", "-c1", "-W1", str(V6_HOST), check=False).returncode != 0
        assert net.v6.run("ping", "-c1", "-W1", str(V4_HOST), check=False).returncode != 0
        v6_addrs = net.v6.run("ip", "-4", "addr", "show").stdout
        assert "inet " not in v6_addrs, "the IPv6-only host has no IPv4 address"
        assert net.v4.run("ip", "-6", "addr", "show").stdout.strip() == ""
        names = (net.gw.ns, net.v6.ns, net.v4.ns)
    remaining = (
        __import__("subprocess")
        .run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
        .stdout
    )
    assert not any(name in remaining for name in names), "namespaces are removed"
