"""UDP socket options for large messages, read back from the kernel with getsockopt."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, IPv6Address

import pytest

from rtc64.io import sockets

V6 = IPv6Address("::1")
V4 = IPv4Address("127.0.0.1")


def v6opt(sock: socket.socket, name: int) -> int:
    return sock.getsockopt(socket.IPPROTO_IPV6, name)


def test_ipv6_udp_fragments_at_the_minimum_mtu_by_default() -> None:
    with sockets.udp_socket(V6, 0, 0) as sock:
        if sockets.IPV6_USE_MIN_MTU is not None:  # pragma: no cover - BSD/macOS
            assert v6opt(sock, sockets.IPV6_USE_MIN_MTU) == 1
            return
        assert v6opt(sock, sockets.IPV6_MTU_DISCOVER) == sockets.IPV6_PMTUDISC_DONT
        assert v6opt(sock, sockets.IPV6_DONTFRAG) == 0
        # Linux reads IPV6_MTU back only on a connected socket, as the route's MTU (lo:
        # 65536), not the per-socket cap; the cap's effect is checked on the wire in
        # tests/interop/test_outbound_mtu.py.
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1


def test_ipv6_min_mtu_can_be_turned_off() -> None:
    with sockets.udp_socket(V6, 0, 0, ipv6_min_mtu=False) as sock:
        # The kernel default for IPv6 UDP: path-MTU discovery wanted (IPV6_PMTUDISC_WANT).
        assert v6opt(sock, sockets.IPV6_MTU_DISCOVER) != sockets.IPV6_PMTUDISC_DONT


@pytest.mark.parametrize(("no_df", "expect_dont"), [(False, False), (True, True)])
def test_ipv4_without_df_only_when_asked(no_df: bool, expect_dont: bool) -> None:
    with sockets.udp_socket(V4, 0, 0, ipv4_no_df=no_df) as sock:
        mode = sock.getsockopt(socket.IPPROTO_IP, sockets.IP_MTU_DISCOVER)
        assert (mode == sockets.IP_PMTUDISC_DONT) is expect_dont


def test_ipv6_options_never_touch_ipv4_sockets_and_back() -> None:
    with sockets.udp_socket(V4, 0, 0, ipv6_min_mtu=True) as sock:
        assert sock.getsockopt(socket.IPPROTO_IP, sockets.IP_MTU_DISCOVER) != 0
    with sockets.udp_socket(V6, 0, 0, ipv4_no_df=True, ipv6_min_mtu=False) as sock:
        assert v6opt(sock, sockets.IPV6_MTU_DISCOVER) != sockets.IPV6_PMTUDISC_DONT


def test_ipv6_mtu_cap_below_the_minimum_is_refused_by_the_kernel() -> None:
    # The constant we rely on is the kernel's IPV6_MTU: it validates the value.
    with sockets.udp_socket(V6, 0, 0) as sock, pytest.raises(OSError):
        sock.setsockopt(socket.IPPROTO_IPV6, sockets.IPV6_MTU, 1279)
