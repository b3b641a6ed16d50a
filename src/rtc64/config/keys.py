"""The schema rows of ``[general]``, ``[sip]``, ``[registrar]``, ``[auth]``, ``[store]``,
``[media]``, ``[ng]``, ``[dns]``, ``[nat64]`` and ``[hep]`` (the other tables have their
own modules)."""

from __future__ import annotations

from rtc64.config.convert import (
    SERVICES,
    Key,
    as_address,
    as_bool,
    as_domain,
    as_listen,
    as_network,
    as_services,
    as_str,
    as_users,
    choice,
    dns_server,
    float_range,
    hep_collector,
    int_range,
    interface_map,
    list_of,
    nat64_prefix,
    ng_listen,
    optional_str,
    port_range,
    tls_name,
    trace_entry,
    worker_ports,
)
from rtc64.net.endpoint import EXPECTED_FORM as LISTEN_FORM

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")
MEDIA_POLICIES = ("auto", "always", "never", "nat64")
DEFAULT_LISTEN = ["udp:0.0.0.0:5060", "udp:[::]:5060", "tcp:0.0.0.0:5060", "tcp:[::]:5060"]

BASE_KEYS: tuple[Key, ...] = (
    Key(
        "general.log_level",
        "info",
        choice(*LOG_LEVELS),
        "one of " + ", ".join(LOG_LEVELS),
        "log verbosity",
    ),
    Key(
        "general.log_format",
        "text",
        choice(*LOG_FORMATS),
        "text or json",
        "human-readable text or one JSON object per line",
    ),
    Key(
        "general.data_dir",
        "",
        as_str,
        "a directory path (empty: ~/.local/state/rtc64)",
        "where the SQLite store, generated certificates and state live",
    ),
    Key(
        "general.drain_seconds",
        30.0,
        float_range(0.0, 86_400.0),
        "seconds from 0 to 86400",
        "on SIGTERM, how long calls in progress may continue (new calls get 503) before "
        "the gateway stops",
    ),
    Key(
        "general.services",
        list(SERVICES),
        as_services,
        "a non-empty list of " + ", ".join(SERVICES) + ' (or one string "sip,turn")',
        "what rtc64 serve runs (--only turn: the TURN server alone, no SIP listeners)",
    ),
    Key(
        "sip.listen",
        DEFAULT_LISTEN,
        list_of(as_listen),
        f"a list of {LISTEN_FORM}",
        "SIP listening sockets, one family each",
    ),
    Key(
        "sip.domains",
        [],
        list_of(as_domain),
        "a list of domain names (e.g. example.net)",
        "domains served by the registrar (own addresses and host name are always local)",
    ),
    Key(
        "sip.trusted_networks",
        [],
        list_of(as_network),
        "a list of networks in CIDR form (e.g. 2001:db8::/64, 10.0.0.0/8)",
        "sources that may relay, call and register any AOR of a served domain without "
        "authentication, and are not rate-limited (list SBCs, PBXs and the upstream core, "
        "not phone networks)",
    ),
    Key(
        "sip.upstream",
        "",
        optional_str,
        "a SIP URI (e.g. sip:core.example.net;transport=udp)",
        "send everything not for a local registration to this core",
    ),
    Key(
        "sip.tls_cert",
        "",
        as_str,
        "a PEM certificate file path (empty: self-signed, generated on first start)",
        "TLS/WSS certificate chain",
    ),
    Key(
        "sip.tls_key",
        "",
        as_str,
        "a PEM private key file path (empty: with the generated certificate)",
        "TLS/WSS private key",
    ),
    Key(
        "sip.tls_verify",
        True,
        as_bool,
        "true or false",
        "check outbound TLS servers' certificates (RFC 5922); false only in labs",
    ),
    Key(
        "sip.tls_ca_file",
        "",
        optional_str,
        "a PEM file of CA certificates (empty: the system's CAs)",
        "CAs trusted for outbound TLS (replaces the system's when set)",
    ),
    Key(
        "sip.tls_no_verify_domains",
        [],
        list_of(tls_name),
        "a list of domain names or IP addresses (e.g. lab.example.net, 192.0.2.7)",
        "outbound TLS to these exact names accepts any certificate (labs)",
    ),
    Key(
        "sip.tls_verify_clients",
        False,
        as_bool,
        "true or false",
        "TLS listeners ask each client for a certificate (not required) verified against "
        "sip.tls_client_ca; a server that proves its Via host may have its connection "
        "reused for requests to it (RFC 5923 ;alias)",
    ),
    Key(
        "sip.tls_client_ca",
        "",
        optional_str,
        "a PEM file of CA certificates (required when sip.tls_verify_clients is true)",
        "CAs client certificates must chain to",
    ),
    Key(
        "sip.tls_alias",
        False,
        as_bool,
        "true or false",
        "outbound TLS presents the gateway's certificate and our Via carries ;alias, so "
        "servers may reuse our connections for requests to us (RFC 5923)",
    ),
    Key(
        "sip.max_transactions",
        20000,
        int_range(1, 10_000_000),
        "an integer 1..10000000",
        "proxied requests awaiting their final response before new ones get 503",
    ),
    Key(
        "sip.overload_lag",
        0.1,
        float_range(0.0, 10.0),
        "seconds, 0..10 (0 turns it off)",
        "queueing delay (receive backlog or event-loop lag) above which a growing share of "
        "new calls and registrations get 503 Retry-After while calls in progress go on",
    ),
    Key(
        "sip.request_rate",
        200,
        int_range(0, 1_000_000),
        "requests/s per source, 0 for off",
        "new dialogs and registrations per second per source (/64 for IPv6); in-dialog "
        "requests, trusted networks and the upstream core are not limited",
    ),
    Key(
        "sip.workers",
        0,
        int_range(0, 256),
        "an integer 0..256 (0: one per CPU core)",
        "SIP worker processes sharing the listeners (SO_REUSEPORT); 0 (the default) one "
        "per CPU core this process may run on, 1 everything in one process",
    ),
    Key(
        "sip.spread",
        "busy",
        choice("busy", "always"),
        "busy or always",
        "a trusted source's new calls reach one worker (the kernel hashes a source to one): "
        "busy (the default) keeps them there and hands them to the other workers by "
        "Call-ID only while this worker is busier than they are; always hands them over "
        "by Call-ID whatever the load (every call crosses between workers with "
        "probability 1 - 1/workers); read at start",
    ),
    Key(
        "sip.worker_ports",
        0,
        worker_ports,
        "0 (ephemeral) or a port 1024..65535 (worker k uses PORT+k)",
        "first of the per-worker SIP ports written in Via and Record-Route so responses and "
        "in-dialog requests reach the worker that sent them",
    ),
    Key(
        "sip.udp_ipv6_min_mtu",
        True,
        as_bool,
        "true or false",
        "IPv6 UDP sockets fragment large messages at 1280 bytes themselves instead of "
        "relying on path-MTU discovery (anycast front ends never see the ICMPv6 Packet Too "
        "Big)",
    ),
    Key(
        "sip.udp_ipv4_no_df",
        False,
        as_bool,
        "true or false",
        "IPv4 UDP sockets send without the DF bit, so routers fragment large messages",
    ),
    Key(
        "sip.udp_receive_buffer",
        512 * 1024,
        int_range(64 * 1024, 64 * 1024 * 1024),
        "bytes, 65536..67108864",
        "SO_RCVBUF of each SIP UDP socket (the kernel doubles it, up to net.core.rmem_max); "
        "it bounds how long a request can wait unread: a queue longer than T1 (0.5 s) "
        "makes every client retransmit what waits in it, the start of an overload collapse",
    ),
    Key(
        "sip.trace",
        [],
        list_of(trace_entry),
        "a list of networks in CIDR form or SIP AORs (e.g. 2001:db8::/64, sip:alice@example.net)",
        "log every SIP message (whole) from or to these sources, or naming these AORs in "
        "From or To (logger rtc64.trace)",
    ),
    Key(
        "registrar.min_expires",
        60,
        int_range(0, 2**31 - 1),
        "seconds, 0..2147483647",
        "shortest registration accepted (shorter gets 423)",
    ),
    Key(
        "registrar.max_expires",
        7200,
        int_range(1, 2**31 - 1),
        "seconds, 1..2147483647",
        "longest registration granted",
    ),
    Key(
        "registrar.default_expires",
        3600,
        int_range(1, 2**31 - 1),
        "seconds, 1..2147483647",
        "expiry when the REGISTER names none",
    ),
    Key(
        "registrar.max_contacts",
        10,
        int_range(1, 10_000),
        "an integer 1..10000",
        "contacts one AOR may have registered; a REGISTER adding more gets 503 with "
        "Retry-After (until its oldest contact expires), so one account cannot fill the store",
    ),
    Key(
        "registrar.flow_timer",
        120,
        int_range(0, 86_400),
        "seconds, 0..86400 (0: not sent)",
        "RFC 5626 Flow-Timer given to outbound clients on a connection (UDP flows get at "
        "most 29 s): how often they must send keep-alives",
    ),
    Key(
        "auth.realm",
        "",
        as_str,
        "a realm string (empty: the first domain or the host name)",
        "digest realm; users are stored per realm, so 'rtc64 user add' must see the same "
        "auth.realm/sip.domains as 'rtc64 serve' (same --config, or --domain/--realm)",
    ),
    Key(
        "auth.users",
        [],
        as_users,
        'an array of tables {name = "...", password = "..."}',
        "users defined in the file (more live in the store: rtc64 user add)",
    ),
    Key(
        "auth.algorithms",
        ["SHA-256", "MD5"],
        list_of(choice("sha-256", "md5")),
        "a non-empty list of SHA-256 and MD5, most preferred first",
        "digest algorithms offered in challenges, in order; MD5 first helps phones that "
        "read only the first challenge (SIPp), MD5 alone those that reject a request on any "
        "challenge they cannot answer (baresip 1.0 / libre 1.1)",
    ),
    Key(
        "auth.nonce_lifetime",
        300,
        int_range(10, 86400),
        "seconds, 10..86400",
        "how long a nonce is valid before stale=true",
    ),
    Key(
        "auth.max_failures",
        5,
        int_range(1, 1000),
        "an integer 1..1000",
        "failed authentications per source, or per user from one source, before blocking",
    ),
    Key(
        "auth.block_seconds",
        300,
        int_range(1, 86400),
        "seconds, 1..86400",
        "how long a source (/64 for IPv6, /32 for IPv4), or one user from one source, "
        "stays blocked after too many failures; a user is never blocked from every source",
    ),
    Key(
        "store.url",
        "sqlite",
        as_str,
        "sqlite, sqlite:///PATH or redis://HOST:PORT/DB",
        "location store backend",
    ),
    Key(
        "media.addresses",
        [],
        list_of(as_address),
        "a list of IP addresses of this host (one per family)",
        "relay addresses (default: the SIP listen addresses)",
    ),
    Key(
        "media.advertise",
        [],
        list_of(as_address),
        "a list of IP addresses, at most one per family (e.g. 203.0.113.5, 2001:db8::5)",
        "relay behind a 1:1 NAT: the public address SDP carries for each family, while "
        "the relay binds its local address of that family (rtpengine's internal!public)",
    ),
    Key(
        "media.ports",
        "30000-40000",
        port_range,
        "LOW-HIGH with 1024 <= LOW < HIGH <= 65535",
        "relay port range",
    ),
    Key(
        "media.policy",
        "auto",
        choice(*MEDIA_POLICIES),
        "one of " + ", ".join(MEDIA_POLICIES),
        "when to relay media: auto (families differ or SDP addresses unreachable as "
        "written), always, never, or nat64 (peers behind the NAT64 get their IPv4 SDP "
        "addresses synthesised into the NAT64 prefix, no relay; other calls as auto)",
    ),
    Key("media.workers", 1, int_range(1, 64), "an integer 1..64", "relay worker processes"),
    Key(
        "media.strict_source",
        False,
        as_bool,
        "true or false",
        "drop media from any source but the latched one",
    ),
    Key(
        "media.timeout",
        60,
        int_range(1, 86400),
        "seconds, 1..86400",
        "no media for this long ends the call",
    ),
    Key(
        "media.hold_timeout",
        3600,
        int_range(1, 604800),
        "seconds, 1..604800",
        "timeout for held/inactive streams",
    ),
    Key(
        "ng.listen",
        "",
        ng_listen,
        "empty (off) or udp:HOST:PORT ([v6] for IPv6)",
        "rtpengine-compatible ng control socket",
    ),
    Key(
        "ng.interfaces",
        {},
        interface_map,
        'a table {NAME = "ipv4"|"ipv6"} or a list of "NAME=ipv4|ipv6"',
        "ng 'direction' interface names and their families (ipv4/ipv6 are built in)",
    ),
    Key(
        "dns.servers",
        [],
        list_of(dns_server),
        "a list of HOST[:PORT] ([v6]:port for IPv6)",
        "DNS servers (default: the system resolver)",
    ),
    Key(
        "dns.attempt_delay",
        0.25,
        float_range(0.01, 10.0),
        "seconds, 0.01..10",
        "happy-eyeballs delay before trying the next address",
    ),
    Key(
        "dns.family_penalty",
        600.0,
        float_range(0.0, 86400.0),
        "seconds, 0..86400",
        "how long an address family that just failed is tried second for a destination",
    ),
    Key(
        "dns.happy_eyeballs",
        True,
        as_bool,
        "true or false",
        "race IPv6 and IPv4 destinations (RFC 8305); false tries them one after the other",
    ),
    Key(
        "nat64.prefix",
        "",
        nat64_prefix,
        "empty (discover) or an RFC 6052 NAT64 prefix",
        "NAT64 prefix",
    ),
    Key(
        "nat64.clat_state_dir",
        "/run/rtc64/clat",
        as_str,
        "a directory path",
        "where `rtc64 clat run` keeps its status: the gateway learns the CLAT addresses there",
    ),
)
HEP_KEYS: tuple[Key, ...] = (
    Key(
        "hep.collector",
        "",
        hep_collector,
        "udp:ADDRESS:PORT, e.g. udp:[2001:db8::9]:9060 (empty: no capture)",
        "HEPv3 (Homer) collector every SIP message received and sent is copied to",
    ),
    Key(
        "hep.capture_id",
        2001,
        int_range(0, 2**32 - 1),
        "an integer from 0 to 4294967295",
        "capture agent id carried in each HEP packet",
    ),
)
