"""Binding and user records: validation, the shared serialised form, canonical AORs, HA1."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import RemoteProtocolError
from rtc64.gateway.location.bindings import (
    Binding,
    bindings_from_json,
    bindings_to_json,
    canonical_aor,
)
from rtc64.gateway.location.users import UserRecord
from rtc64.sip.digest import Algorithm

LONGEST_LISTENER = "tls:[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535"


def full_binding(**changes: object) -> Binding:
    values: dict[str, object] = {
        "aor": "sip:alice@example.net",
        "contact": b"sip:alice@[2001:db8::10]:40000;transport=tls;ob",
        "expires_at": 1_700_000_123.456789,
        "call_id": b"a84b4c76e66710@pc33.example.org",
        "cseq": 314159,
        "transport": "tls",
        "listener": LONGEST_LISTENER,
        "q": 0.7,
        "received_ip": ip_address("2001:db8:85a3:8d3:1319:8a2e:370:7348"),
        "received_port": 65535,
        "path": (b"<sip:edge1.example.net;lr;ob>", b"<sip:[2001:db8::1];lr>"),
        "instance": b'"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"',
        "reg_id": 2,
        "user_agent": b"Ph\xc3\xb6ne/2.0 \xff\x00raw",
        "registered_at": 1_700_000_000.123456789,
    }
    values.update(changes)
    return Binding(**values)  # type: ignore[arg-type]


MINIMAL = Binding(
    aor="sip:bob@example.net",
    contact=b"sip:bob@192.0.2.1",
    expires_at=10.0,
    call_id=b"c",
    cseq=0,
    transport="udp",
    listener="udp:0.0.0.0:5060",
)


@pytest.mark.parametrize(
    "binding",
    [
        full_binding(),
        full_binding(received_ip=ip_address("::ffff:192.0.2.1")),
        full_binding(received_ip=ip_address("fe80::1%eth0")),
        full_binding(received_ip=ip_address("fe80::1%7"), q=0.0),
        full_binding(received_ip=IPv4Address("255.255.255.255"), q=1.0),
        full_binding(contact="sip:jos\u00e9@example.net".encode()),
        MINIMAL,
    ],
    ids=["full", "v4-mapped", "scope-name", "scope-index", "ipv4", "utf8-user", "minimal"],
)
def test_dict_and_json_round_trip_exactly(binding: Binding) -> None:
    assert Binding.from_dict(binding.to_dict()) == binding
    text = binding.to_json()
    assert text.isascii()
    back = Binding.from_json(text)
    assert back == binding
    assert type(back.received_ip) is type(binding.received_ip)
    if isinstance(binding.received_ip, IPv6Address):
        assert isinstance(back.received_ip, IPv6Address)
        assert back.received_ip.scope_id == binding.received_ip.scope_id
        assert back.received_ip.ipv4_mapped == binding.received_ip.ipv4_mapped


_WIRE = st.binary(min_size=1, max_size=40)
_TEXT = st.text(min_size=1, max_size=30)


@st.composite
def bindings(draw: st.DrawFn) -> Binding:
    """Any valid binding: every optional field present or not, any byte in wire values,
    any character in text fields, floats and ints where numbers go."""
    number = st.one_of(
        st.floats(min_value=-1e12, max_value=1e12, allow_nan=False), st.integers(0, 2**40)
    )
    ip = st.one_of(
        st.none(),
        st.builds(IPv4Address, st.integers(0, 2**32 - 1)),
        st.builds(IPv6Address, st.integers(0, 2**128 - 1)),
        st.just(ip_address("fe80::1%eth0")),
    )
    return Binding(
        aor=draw(_TEXT),
        contact=draw(_WIRE),
        expires_at=draw(number),
        call_id=draw(st.binary(max_size=40)),
        cseq=draw(st.integers(0, 2**31 - 1)),
        transport=draw(st.sampled_from(["udp", "tcp", "tls", "ws", "wss"])),
        listener=draw(_TEXT),
        q=draw(st.one_of(st.none(), st.floats(0.0, 1.0), st.sampled_from([0, 1]))),
        received_ip=draw(ip),
        received_port=draw(st.one_of(st.none(), st.integers(1, 65535))),
        path=tuple(draw(st.lists(_WIRE, max_size=3))),
        instance=draw(st.one_of(st.none(), st.binary(max_size=60))),
        reg_id=draw(st.one_of(st.none(), st.integers(1, 2**31 - 1))),
        user_agent=draw(st.binary(max_size=40)),
        registered_at=draw(st.one_of(st.none(), number)),
    )


@given(bindings())
def test_json_text_is_exactly_json_dumps_of_the_dict(binding: Binding) -> None:
    """The field-by-field encoder writes what every earlier version (and the Redis
    backend's array form) writes: ``json.dumps`` of ``to_dict``, compact."""
    text = binding.to_json()
    assert text == json.dumps(binding.to_dict(), separators=(",", ":"))
    assert Binding.from_json(text) == binding


def test_json_text_is_made_once_and_not_carried_by_a_changed_copy() -> None:
    binding = full_binding()
    assert binding.to_json() is binding.to_json()
    moved = dataclasses.replace(binding, aor="sip:alice@other.example.net")
    assert json.loads(moved.to_json())["aor"] == "sip:alice@other.example.net"


def test_a_binding_read_from_text_gives_that_text_back() -> None:
    """Bindings read from a store compare by their stored text (another version's
    spelling included) without being encoded again."""
    spelled = json.dumps(full_binding().to_dict(), separators=(", ", ": "))
    back = Binding.from_json(spelled)
    assert back == full_binding()
    assert back.to_json() == spelled


def test_dict_form_is_compact() -> None:
    assert set(MINIMAL.to_dict()) == {
        "aor",
        "contact",
        "expires_at",
        "call_id",
        "cseq",
        "transport",
        "listener",
    }


def test_list_round_trip() -> None:
    items = [full_binding(), MINIMAL]
    assert bindings_from_json(bindings_to_json(items)) == items
    assert bindings_from_json(bindings_to_json([])) == []


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        "{}",
        '{"aor": "x"}',
        json.dumps({**MINIMAL.to_dict(), "cseq": "1"}),
        json.dumps({**MINIMAL.to_dict(), "cseq": True}),
        json.dumps({**MINIMAL.to_dict(), "transport": "sctp"}),
        json.dumps({**MINIMAL.to_dict(), "ip": "not-an-ip"}),
        json.dumps({**MINIMAL.to_dict(), "path": "x"}),
        json.dumps({**MINIMAL.to_dict(), "at": "yesterday"}),
        json.dumps({**MINIMAL.to_dict(), "contact": "\u20ac"}),  # not latin-1
        "not json",
    ],
)
def test_malformed_serialised_binding_is_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        Binding.from_json(text)


@pytest.mark.parametrize("text", ["{}", "[1]", "[{}]"])
def test_malformed_binding_list_is_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        bindings_from_json(text)


@pytest.mark.parametrize(
    "changes",
    [
        {"q": 1.01},
        {"q": -0.5},
        {"transport": "UDP"},
        {"cseq": -1},
        {"cseq": 2**31},
        {"received_port": 0},
        {"received_port": 65536},
        {"reg_id": 0},
        {"expires_at": float("inf")},
        {"registered_at": float("nan")},
        {"contact": b""},
        {"path": [b"x"]},
    ],
)
def test_binding_is_validated(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="binding"):
        full_binding(**changes)


def test_liveness_and_remaining() -> None:
    b = full_binding(expires_at=1000.0)
    assert b.is_live(999.9)
    assert not b.is_live(1000.0)
    assert b.remaining(400.0) == 600
    assert b.remaining(399.6) == 600
    assert b.remaining(2000.0) == 0
    assert full_binding(q=None).effective_q == 1.0


@pytest.mark.parametrize(
    ("uri", "aor"),
    [
        (b"sip:alice@example.net", "sip:alice@example.net"),
        (b"sip:alice@EXAMPLE.Net:5060;transport=tcp?x=y", "sip:alice@example.net"),
        (b"SIPS:alice@example.net", "sip:alice@example.net"),
        (b"sip:Alice@example.net", "sip:Alice@example.net"),
        (b"sip:al%69ce@example.net", "sip:alice@example.net"),
        (b"sip:alice:secret@example.net", "sip:alice@example.net"),
        (
            b"sip:+1-212-555-0100;phone-context=x@example.net",
            "sip:+1-212-555-0100;phone-context=x@example.net",
        ),
        (b"sip:alice@[2001:DB8:0::1]:5070", "sip:alice@[2001:db8::1]"),
        (b"sip:alice@192.0.2.1", "sip:alice@192.0.2.1"),
        (b"sip:example.net", "sip:example.net"),
        ("sip:jos%C3%A9@example.net", "sip:jos\u00e9@example.net"),
        (b"sip:alice@Example.NET.", "sip:alice@example.net"),
    ],
)
def test_canonical_aor(uri: bytes | str, aor: str) -> None:
    assert canonical_aor(uri) == aor


@pytest.mark.parametrize(
    "uri",
    [
        b"tel:+12125550100",
        b"sip:alice@",
        b"sip:alice@2001:db8::1",
        b"sip:a@b@c",
        b"\xff",
        "sip:jos\u00e9@example.net",  # RFC 3261 §25: a user part is escaped UTF-8
        b"sip:%FF@example.net",
    ],
)
def test_canonical_aor_rejects(uri: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        canonical_aor(uri)
    assert info.value.status == 400


# -- users --


def test_ha1_rfc_2617_example() -> None:
    # RFC 2617 §3.5: Mufasa / testrealm@host.com / "Circle Of Life".
    user = UserRecord.from_password("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert user.ha1_md5 == "939e7578ed9e3c518a452acee763bce9"
    expected = hashlib.sha256(b"Mufasa:testrealm@host.com:Circle Of Life").hexdigest()
    assert user.ha1_sha256 == expected
    assert user.ha1(Algorithm.MD5) == user.ha1(Algorithm.MD5_SESS) == user.ha1_md5
    assert user.ha1(Algorithm.SHA_256) == user.ha1(Algorithm.SHA_256_SESS) == user.ha1_sha256


def test_user_record_keeps_no_password_and_hides_ha1() -> None:
    user = UserRecord.from_password("alice", "example.net", "s3cret-Pa55")
    assert "s3cret" not in repr(user)
    assert user.ha1_md5 not in repr(user)
    assert not any("s3cret" in str(v) for v in user.to_dict().values())
    assert UserRecord.from_dict(user.to_dict()) == user


def test_user_record_utf8_name() -> None:
    user = UserRecord.from_password("jos\u00e9", "example.net", "pw")
    assert user.ha1_md5 == hashlib.md5("jos\u00e9:example.net:pw".encode()).hexdigest()


@pytest.mark.parametrize(
    "values",
    [
        {"name": "", "realm": "r", "ha1_md5": "0" * 32, "ha1_sha256": "0" * 64},
        {"name": "a", "realm": "r", "ha1_md5": "0" * 31, "ha1_sha256": "0" * 64},
        {"name": "a", "realm": "r", "ha1_md5": "A" * 32, "ha1_sha256": "0" * 64},
        {"name": "a", "realm": "r", "ha1_md5": "0" * 32, "ha1_sha256": "0" * 32},
        {"name": "a", "realm": "r", "ha1_md5": "0" * 32},
        {"name": "a", "realm": 1, "ha1_md5": "0" * 32, "ha1_sha256": "0" * 64},
    ],
)
def test_user_record_is_validated(values: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        UserRecord.from_dict(values)
