"""Large requests over a congestion-controlled transport (RFC 3261 §18.1.1).

Rules:

- A request bigger than the path MTU minus 200 bytes, 1300 bytes when the MTU is
  unknown (always here: we keep no path-MTU table), that would leave over UDP goes over
  TCP to the same address and port instead, with our Via saying TCP, when the target
  allows it: the next hop's URI names no transport (a ``transport=udp`` URI, e.g. a
  phone's registered UDP flow behind NAT or a firewall, has no TCP to reach: it stays on
  UDP, whose IPv6 sockets fragment at 1280 bytes, ``io.sockets``) and we have a TCP
  listener of the destination's family. A ``transport=tcp`` target is TCP anyway.
- If that TCP attempt fails before the request is sent (refused, reset, unreachable,
  timed out), the request goes over UDP after all (§18.1.1: "SHOULD retry the request,
  using UDP"); a failure after it was sent (no answer) is the branch's, as usual.
- Responses are never moved (§18.2.2): they follow the request's flow or Via.
"""

from __future__ import annotations

from rtc64.gateway.proxy.hops import Hop
from rtc64.net.endpoint import Transport

UNKNOWN_MTU_LIMIT = 1300  # §18.1.1: the path MTU is unknown
MTU_MARGIN = 200  # §18.1.1: "within 200 bytes of the path MTU"


def size_limit(path_mtu: int | None = None) -> int:
    """The largest request sent over UDP toward a path of ``path_mtu`` bytes."""
    return UNKNOWN_MTU_LIMIT if path_mtu is None else path_mtu - MTU_MARGIN


def tcp_instead(hop: Hop, size: int, *, tcp_ok: bool, tcp_listener: bool) -> Hop | None:
    """The TCP hop a request of ``size`` bytes for UDP ``hop`` goes to instead, or None
    to send it as planned (``tcp_ok``: the target URI left the transport open;
    ``tcp_listener``: we can connect from the destination's family)."""
    if hop.transport is not Transport.UDP or size <= size_limit():
        return None
    if not tcp_ok or not tcp_listener:
        return None
    return Hop(Transport.TCP, hop.ip, hop.port, None, hop.server_name)
