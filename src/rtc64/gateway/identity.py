"""Who the gateway is: its listeners, addresses and domains, and how it names itself.

Rules (RFC 3261 §16.4, §16.6 steps 4 and 8, §18.2.1; RFC 5658 double Record-Route):

- A URI is ours when its host is one of our addresses (listener addresses, every
  interface address when a listener is a wildcard, advertised addresses) or host names,
  and its port (default by transport) is one a listener uses. A domain is local when it
  is configured, or is one of our addresses or host names.
- One local domain (the location service's view): every address and host name of the
  gateway is an alias of it, whatever the port (RFC 3261 §10.3 step 5 drops the port),
  so a phone registered as ``sip:bob@10.64.4.1`` is found for ``sip:bob@[fd00:64:6::1]``.
  Its key host is the first configured domain (Kamailio's ``alias=``), else the host
  name, else the lowest of our addresses. Other configured domains key as themselves.
- For each message we send, the listener is chosen by the next hop's transport and
  family; the address we write (Via sent-by, Record-Route, Path) is the listener's
  advertised address, else its own address, else (wildcard) the source address the kernel
  uses toward the next hop. IPv6 is always written as a reference ``[v6]``.
- A Via with ``;alias`` (RFC 5923, TLS) names a ``shared`` listener of that family when
  there is one (SIP workers: the SO_REUSEPORT port peers dial, not a worker's own port),
  so the peer's alias matches the address and port it sends its requests to.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.location.bindings import aor_key
from rtc64.net.address import (
    Family,
    Host,
    IPAddress,
    address_key,
    family_of,
    format_host,
    format_hostport,
    unmap,
)
from rtc64.net.endpoint import BoundListener, ListenSpec, Transport
from rtc64.sip.uri import SipUri, Uri

SourceFor = Callable[[IPAddress], IPAddress | None]

DEFAULT_PORTS = frozenset({5060, 5061})  # RFC 3261 §19.1.2: sip, sips
_UNSPECIFIED = frozenset((address_key(IPv4Address(0)), address_key(IPv6Address(0))))


Listener = BoundListener
"""A bound listening socket: its spec and actual port (port 0 binds pick one)."""


class Identity:
    """The gateway's listeners, addresses, names and domains."""

    def __init__(
        self,
        listeners: Sequence[Listener],
        *,
        domains: Iterable[str] = (),
        host_addresses: Iterable[IPAddress] = (),
        hostnames: Iterable[str] = (),
        source_for: SourceFor,
        tls_alias: bool = False,
        shared: Collection[ListenSpec] = (),
    ) -> None:
        self.listeners = tuple(listeners)
        self.tls_alias = tls_alias
        """Our Via on TLS carries ``;alias`` (RFC 5923: servers may reuse our connections)."""
        self.shared = frozenset(shared)
        """SIP workers: the listen specs every worker serves (SO_REUSEPORT groups)."""
        self._given = (tuple(domains), tuple(host_addresses), tuple(hostnames))
        ordered_domains = [d.lower().rstrip(".") for d in self._given[0]]
        ordered_names = [h.lower().rstrip(".") for h in self._given[2]]
        self.domains = frozenset(ordered_domains)
        self.hostnames = frozenset(ordered_names)
        self._source_for = source_for
        addresses: set[IPAddress] = set()
        for lst in self.listeners:
            if lst.wildcard:
                addresses.update(a for a in self._given[1] if family_of(a) == lst.family)
            else:
                addresses.add(lst.spec.address)
            adv = lst.spec.advertise
            if adv is not None:
                if isinstance(adv.host, IPv4Address | IPv6Address):
                    addresses.add(adv.host)
                else:
                    self.hostnames = self.hostnames | {adv.host}
        self.addresses = frozenset(addresses)
        self._address_keys = frozenset(address_key(a) for a in addresses)
        """``addresses`` as ``address_key`` ints: asked several times per message."""
        self.ports = frozenset(lst.port for lst in self.listeners) | frozenset(
            lst.spec.advertise.port
            for lst in self.listeners
            if lst.spec.advertise is not None and lst.spec.advertise.port is not None
        )
        first = ordered_domains or [n for n in ordered_names if n]
        self.local_domain = (
            first[0]
            if first
            else format_host(min(self.addresses, key=lambda a: (a.version, int(a))))
            if self.addresses
            else "localhost"
        )
        """The host of every location-service key for an alias of this gateway."""
        self._by_kind: dict[tuple[Transport, Family], Listener] = {}
        for lst in self.listeners:
            self._by_kind.setdefault((lst.transport, lst.family), lst)
        self._fixed: dict[int, str] = {
            id(lst): format_hostport(*self.address_of(lst, None))
            for lst in self.listeners
            if lst.spec.advertise is not None or not lst.wildcard
        }
        """Our host:port on each listener whose address does not depend on the hop (an
        advertised or a specific address), by the identity of the listener object: these
        objects live as long as ``listeners`` holds them (several per message to write)."""

    def replace_listeners(
        self,
        listeners: Sequence[Listener],
        domains: Iterable[str] | None = None,
        shared: Collection[ListenSpec] | None = None,
    ) -> None:
        """Listeners opened or closed, or ``sip.domains`` changed, on reload: everything
        derived from them anew (the object is shared by the proxy's parts, so it changes
        in place). Bindings stored under an old local domain keep their keys."""
        given, host_addresses, hostnames = self._given
        fresh = Identity(
            listeners,
            domains=given if domains is None else domains,
            host_addresses=host_addresses,
            hostnames=hostnames,
            source_for=self._source_for,
            tls_alias=self.tls_alias,
            shared=self.shared if shared is None else shared,
        )
        # Field by field (the class may be compiled: no instance __dict__).
        self.listeners = fresh.listeners
        self.tls_alias = fresh.tls_alias
        self.shared = fresh.shared
        self._given = fresh._given
        self.domains = fresh.domains
        self.hostnames = fresh.hostnames
        self._source_for = fresh._source_for
        self.addresses = fresh.addresses
        self._address_keys = fresh._address_keys
        self.ports = fresh.ports
        self.local_domain = fresh.local_domain
        self._by_kind = fresh._by_kind
        self._fixed = fresh._fixed

    # -- is it us? -------------------------------------------------------------------------

    def is_our_host(self, host: Host) -> bool:
        if isinstance(host, str):
            return host.rstrip(".") in self.hostnames
        plain = unmap(host)
        keys = self._address_keys
        return address_key(plain) in keys or (plain is not host and address_key(host) in keys)

    def is_our_sent_by(self, host: Host, port: int | None) -> bool:
        """A Via sent-by of ours: one of our hosts with one of our ports (no port: the
        default SIP ports)."""
        if not self.is_our_host(host):
            return False
        if port is None:
            return not self.ports.isdisjoint(DEFAULT_PORTS)
        return port in self.ports

    def is_own_socket(self, transport: Transport, ip: IPAddress, port: int) -> bool:
        """Whether sending to ``ip``:``port`` over ``transport`` reaches one of our own
        listeners (a message to ourselves: the response loop guard). A wildcard listener
        is reached on every host address of its family, loopback and unspecified too."""
        ip = unmap(ip)
        family = family_of(ip)
        key = address_key(ip)
        for lst in self.listeners:
            if lst.transport is not transport or lst.port != port or lst.family != family:
                continue
            if key in _UNSPECIFIED or ip == lst.spec.address:
                return True
            if lst.wildcard and (key in self._address_keys or ip.is_loopback):
                return True
        return False

    def is_local_domain(self, host: Host) -> bool:
        """Requests for this host (domain name or address) may be ours to serve."""
        return self.is_our_host(host) or (isinstance(host, str) and host in self.domains)

    def is_local_uri(self, uri: SipUri) -> bool:
        """Requests for this URI go to the location service: a served domain, or one of
        our own addresses and ports (another port on our address is another element)."""
        if isinstance(uri.host, str):
            return uri.host in self.domains or self.is_us(uri)
        return self.is_us(uri)

    def is_us(self, uri: SipUri) -> bool:
        """The URI names this gateway itself (a Route or Request-URI we put there)."""
        if not self.is_our_host(uri.host):
            return False
        if uri.port is None:
            return uri_transport(uri).default_port in self.ports
        return uri.port in self.ports

    def aor_keys(self, uri: Uri) -> tuple[str, str]:
        """(location-service key, key as written) for an AOR or Request-URI: an alias of
        the gateway keys as ``local_domain``; the second is what older versions stored
        (read as a fallback, moved on re-registration). 400 for a URI that is not SIP."""
        if not isinstance(uri, SipUri):
            raise RemoteProtocolError("Bad Request: address-of-record is not a SIP URI")
        written = aor_key(uri)
        if self.is_our_host(uri.host):
            return aor_key(uri, host=self.local_domain), written
        return written, written

    # -- how do we name ourselves toward a hop? ------------------------------------------

    def listener_for(self, transport: Transport, destination: IPAddress) -> Listener | None:
        """The listener to send from toward ``destination`` over ``transport``."""
        family = family_of(destination)
        found = self._by_kind.get((transport, family))
        if found is None and transport in (Transport.WS, Transport.WSS):
            found = self._by_kind.get((Transport.WSS, family)) or self._by_kind.get(
                (Transport.WS, family)
            )
        return found

    def alias_listener(self, out: Listener) -> Listener:
        """The listener a Via with ``;alias`` names for a message sent from ``out``: a
        shared one of the same transport and family when ``out`` is a worker's own."""
        if not self.shared or out.spec in self.shared:
            return out
        kind = (out.transport, out.family)
        for lst in self.listeners:
            if lst.spec in self.shared and (lst.transport, lst.family) == kind:
                return lst
        return out

    def address_of(self, listener: Listener, toward: IPAddress | None) -> tuple[Host, int]:
        """What to write as our host and port on ``listener`` for a hop at ``toward``."""
        adv = listener.spec.advertise
        if adv is not None:
            return adv.host, adv.port if adv.port is not None else listener.port
        if not listener.wildcard:
            return listener.spec.address, listener.port
        source = self._source_for(toward) if toward is not None else None
        if source is None or family_of(source) != listener.family:
            source = next(
                (a for a in sorted(self.addresses, key=str) if family_of(a) == listener.family),
                listener.spec.address,
            )
        return source, listener.port

    def hostport_of(self, listener: Listener, toward: IPAddress | None) -> str:
        fixed = self._fixed.get(id(listener))
        if fixed is not None:
            return fixed
        host, port = self.address_of(listener, toward)
        return format_hostport(host, port)


def uri_transport(uri: SipUri) -> Transport:
    """The transport a SIP URI asks for (``transport=``, ``sips`` → TLS, else UDP)."""
    param = uri.param(b"transport")
    if param is not None:
        found = _BY_TOKEN.get(param.lower())
        if found is not None:
            return found
    return Transport.TLS if uri.scheme == b"sips" else Transport.UDP


_BY_TOKEN = {t.value.encode(): t for t in Transport}
