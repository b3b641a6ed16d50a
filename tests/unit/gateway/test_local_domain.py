"""One local domain without configuration (issue 8): every address and host name of the
gateway is an alias of one domain for the location service; keys come from the SIP URI
parser; keys stored by older versions stay readable and move on re-registration."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.identity import Identity
from rtc64.gateway.location.bindings import Binding
from rtc64.sip.uri import SipUri, parse_uri

from .test_identity import listener, no_source
from .test_proxy import (
    CALLER,
    LISTEN4,
    LISTEN6,
    Harness,
    one,
    request,
    run,
    statuses,
)

PHONE = ("198.51.100.20", 5066)  # trusted IPv4 phone


def uri(text: bytes) -> SipUri:
    u = parse_uri(text)
    assert isinstance(u, SipUri)
    return u


def ident(domains: tuple[str, ...] = (), hostnames: tuple[str, ...] = ("GW.lab.",)) -> Identity:
    return Identity(
        [listener("udp:192.0.2.1:5060"), listener("udp:[2001:db8::1]:5060")],
        domains=domains,
        hostnames=hostnames,
        source_for=no_source,
    )


@pytest.mark.parametrize(
    "text",
    [
        b"sip:bob@192.0.2.1",
        b"sip:bob@192.0.2.1:5060;transport=tcp",
        b"sip:bob@[2001:db8::1]",
        b"sip:bob@[2001:DB8:0::1]:5070",  # the port never splits an AOR (§10.3 step 5)
        b"sip:bob@[::ffff:192.0.2.1]",
        b"sips:b%6Fb@gw.lab",
        b"sip:bob@GW.LAB.",
    ],
)
def test_every_alias_keys_as_the_host_name_without_domains(text: bytes) -> None:
    assert ident().aor_keys(uri(text))[0] == "sip:bob@gw.lab"


def test_aliases_map_to_the_first_configured_domain_others_stay() -> None:
    i = ident(domains=("Example.NET.", "other.org"))
    assert i.local_domain == "example.net"
    assert i.aor_keys(uri(b"sip:bob@192.0.2.1")) == ("sip:bob@example.net", "sip:bob@192.0.2.1")
    assert i.aor_keys(uri(b"sip:bob@example.net"))[0] == "sip:bob@example.net"
    assert i.aor_keys(uri(b"sip:bob@other.org")) == ("sip:bob@other.org",) * 2
    assert i.aor_keys(uri(b"sip:bob@example.org")) == ("sip:bob@example.org",) * 2


def test_without_a_name_the_lowest_address_is_the_domain() -> None:
    assert ident(hostnames=()).local_domain == "192.0.2.1"
    only6 = Identity([listener("udp:[2001:db8::1]:5060")], source_for=no_source)
    assert only6.local_domain == "[2001:db8::1]"


def test_wildcard_listeners_make_every_host_address_an_alias() -> None:
    i = Identity(
        [listener("udp:[::]:5060"), listener("udp:0.0.0.0:5060")],
        host_addresses=(IPv4Address("10.64.4.1"), IPv6Address("fd00:64:6::1")),
        hostnames=("gw",),
        source_for=no_source,
    )
    assert i.aor_keys(uri(b"sip:bob@10.64.4.1"))[0] == i.aor_keys(uri(b"sip:bob@[fd00:64:6::1]"))[0]
    assert i.aor_keys(uri(b"sip:bob@10.64.4.9"))[0] == "sip:bob@10.64.4.9"


def test_non_sip_aor_is_400() -> None:
    tel = parse_uri(b"tel:+12125550100")
    with pytest.raises(RemoteProtocolError) as info:
        ident().aor_keys(tel)
    assert info.value.status == 400


# -- through the proxy -----------------------------------------------------------------------


def no_domain(h: Harness) -> None:
    """The harness gateway with no configured domain, named ``gw.lab``."""
    h.rebuild(identity=Identity([LISTEN4, LISTEN6], hostnames=("gw.lab",), source_for=no_source))


def register_as(aor: bytes, *, cseq: int = 1, branch: bytes = b"z9hG4bKr1") -> bytes:
    return request(
        b"REGISTER",
        b"sip:192.0.2.1",
        PHONE,
        branch=branch,
        call_id=b"reg1@phone",
        cseq=cseq,
        to=aor,
        headers=(b"Expires: 600",),
    )


def test_a_phone_registered_on_the_ipv4_address_is_called_on_the_ipv6_one(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        no_domain(h)
        assert statuses(await h.feed(register_as(b"sip:bob@192.0.2.1"), PHONE), PHONE) == [200]
        out = await h.feed(request(b"INVITE", b"sip:bob@[2001:db8::1]", CALLER), CALLER)
        fwd = one(out, PHONE)
        assert fwd.request.method == b"INVITE"
        assert bytes(fwd.request.uri) == b"sip:alice@198.51.100.20:5066"
        # Another element on our address (another port) is not us: not bob's phone.
        other = request(
            b"INVITE", b"sip:bob@192.0.2.1:5999", CALLER, call_id=b"c2", branch=b"z9hG4bKc2"
        )
        out = await h.feed(other, CALLER)
        assert not [s for s in out if s.to(PHONE)]

    run(tmp_path, body)


def test_bindings_stored_under_an_alias_by_older_versions_stay_readable(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        no_domain(h)
        old = Binding(
            aor="sip:bob@192.0.2.1",
            contact=b"sip:bob@198.51.100.20:5066",
            expires_at=h.wall() + 600,
            call_id=b"reg1@phone",
            cseq=1,
            transport="udp",
            listener="udp:192.0.2.1:5060",
        )
        await h.store.replace(old.aor, [old])
        out = await h.feed(request(b"INVITE", b"sip:bob@192.0.2.1", CALLER), CALLER)
        assert one(out, PHONE).request.method == b"INVITE"
        # The phone's next REGISTER moves its binding under the local domain's key.
        reg = register_as(b"sip:bob@192.0.2.1", cseq=2, branch=b"z9hG4bKr2")
        assert statuses(await h.feed(reg, PHONE), PHONE) == [200]
        assert await h.store.lookup("sip:bob@192.0.2.1", h.wall()) == []
        moved = await h.store.lookup("sip:bob@gw.lab", h.wall())
        assert {b.contact for b in moved} == {
            b"sip:bob@198.51.100.20:5066",
            b"sip:alice@198.51.100.20:5066",
        }
        again = request(
            b"INVITE", b"sip:bob@[2001:db8::1]", CALLER, call_id=b"c3", branch=b"z9hG4bKc3"
        )
        out = await h.feed(again, CALLER)
        # Both contacts (the moved one and the new one) are forked to.
        assert [s.request.method for s in out if s.to(PHONE)] == [b"INVITE", b"INVITE"]

    run(tmp_path, body)


def test_a_rejected_register_leaves_old_bindings_where_they_are(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        no_domain(h)
        old = Binding(
            aor="sip:bob@192.0.2.1",
            contact=b"sip:bob@198.51.100.20:5066",
            expires_at=h.wall() + 600,
            call_id=b"reg1@phone",
            cseq=5,
            transport="udp",
            listener="udp:192.0.2.1:5060",
        )
        await h.store.replace(old.aor, [old])
        # Same Call-ID, older CSeq: 500 per §10.3 step 7; nothing moves.
        reg = register_as(b"sip:bob@192.0.2.1", cseq=2, branch=b"z9hG4bKr2").replace(
            b"Contact: <sip:alice@", b"Contact: <sip:bob@"
        )
        assert statuses(await h.feed(reg, PHONE), PHONE) != [200]
        assert await h.store.lookup("sip:bob@192.0.2.1", h.wall()) == [old]

    run(tmp_path, body)
