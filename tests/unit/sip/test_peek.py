"""The raw look at a request before parsing (``sip.peek``): never wrong where it answers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import RemoteProtocolError
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request
from rtc64.sip.peek import new_work_branch, register_aor

CORPUS = Path(__file__).parents[2] / "conformance" / "corpus"
INVITE = (
    b"INVITE sip:bob@example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bK-77\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:bob@example.net>\r\n"
    b"Call-ID: c1@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)


def test_a_new_request_gives_its_top_via_branch() -> None:
    assert new_work_branch(INVITE) == b"z9hG4bK-77"
    register = INVITE.replace(b"INVITE sip:bob@", b"REGISTER sip:")
    register = register.replace(b"1 INVITE", b"1 REGISTER")
    assert new_work_branch(register) == b"z9hG4bK-77"
    compact = INVITE.replace(b"\nVia:", b"\nv :").replace(b"\nTo:", b"\nt:")
    assert new_work_branch(compact) == b"z9hG4bK-77"
    second = b";branch=z9hG4bK-77, SIP/2.0/UDP h;branch=z9hG4bKx"
    two = INVITE.replace(b";branch=z9hG4bK-77", second)
    assert new_work_branch(two) == b"z9hG4bK-77"
    uri_tag = INVITE.replace(b"To: <sip:bob@example.net>", b"To: <sip:bob@example.net;tag=u>")
    assert new_work_branch(uri_tag) == b"z9hG4bK-77", "a tag inside the URI is the URI's"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"To: <sip:bob@example.net>", b"To: <sip:bob@example.net>;tag=9"),  # in dialog
        (b"To: <sip:bob@example.net>", b"To: sip:bob@example.net ; TAG = 9"),
        (b"INVITE sip:bob", b"ACK sip:bob"),
        (b"INVITE sip:bob", b"CANCEL sip:bob"),
        (b";branch=z9hG4bK-77", b";branch=1234"),  # RFC 2543: the key is not the branch
        (b";rport;branch=z9hG4bK-77", b";rport"),  # none
        (b"Via: SIP/2.0/UDP", b"Via:\r\n SIP/2.0/UDP"),  # folded: let the parser decide
        (b"To: <sip", b"To:\r\n\t<sip"),
        (b"\r\nTo: <sip:bob@example.net>", b""),  # no To
        (b"INVITE sip:bob@example.net SIP/2.0", b"SIP/2.0 200 OK"),  # a response
        (b"INVITE sip:bob@example.net SIP/2.0", b"INVITE sip:bob@example.net SIP/3.0"),
    ],
)
def test_anything_it_cannot_tell_is_left_to_the_parser(old: bytes, new: bytes) -> None:
    assert old in INVITE
    assert new_work_branch(INVITE.replace(old, new)) is None


def _corpus() -> list[bytes]:
    rows = (CORPUS / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [(CORPUS / row.split("\t")[2]).read_bytes() for row in rows]


@pytest.mark.parametrize("data", _corpus())
def test_where_it_answers_the_parser_agrees(data: bytes) -> None:
    """RFC 4475/5118 torture messages: a branch from the raw look is the parsed message's
    top Via branch, of a request without To tag that is neither ACK nor CANCEL."""
    branch = new_work_branch(data)
    if branch is None:
        return
    try:
        msg = parse_datagram(data)
    except RemoteProtocolError:
        return  # refused either way: a 503 or a 400
    assert isinstance(msg, Request)
    assert msg.method not in (b"ACK", b"CANCEL") and msg.to.tag is None
    assert msg.vias[0].branch == branch


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    found = new_work_branch(data)
    assert found is None or found.startswith(b"z9hG4bK")


@given(st.binary(max_size=200))
def test_noise_after_a_valid_request_start_never_raises(tail: bytes) -> None:
    new_work_branch(INVITE[:120] + tail)


@pytest.mark.parametrize(
    ("to", "aor"),
    [
        (b"<sip:alice@Example.NET>", b"sip:alice@example.net"),
        (
            b'"Alice" <sips:alice:secret@example.net:5061;transport=tls>;tag=x',
            b"sip:alice@example.net",
        ),
        (b"sip:alice@example.net.;user=phone", b"sip:alice@example.net"),
        (b"  <SIP:bob@[2001:db8::1]:5060>", b"sip:bob@[2001:db8::1]"),
        (b"<sip:example.net>", b"sip:example.net"),
        (b"<tel:+15551234>", None),
        (b"<sip:>", None),
        (b"garbage", None),
    ],
)
def test_register_aor_guesses_the_location_key(to: bytes, aor: bytes | None) -> None:
    assert register_aor(to) == aor


@given(
    user=st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True),
    host=st.from_regex(r"[a-z]([a-z0-9-]{0,9}[a-z0-9])?(\.[a-z]{2,5}){1,2}", fullmatch=True),
    upper=st.booleans(),
    port=st.none() | st.integers(1, 65535),
    params=st.sampled_from([b"", b";transport=udp", b";user=phone"]),
)
def test_register_aor_agrees_with_the_registrars_key(
    user: str, host: str, upper: bool, port: int | None, params: bytes
) -> None:
    """Where the guess is made, it is the registrar's own key (so the worker a REGISTER
    is handed to is the one keeping the AOR alive)."""
    from rtc64.gateway.location.bindings import canonical_aor  # noqa: PLC0415

    shown = host.upper() if upper else host
    uri = f"sip:{user}@{shown}".encode() + (b":%d" % port if port else b"") + params
    assert register_aor(b"<" + uri + b">;tag=1") == canonical_aor(uri).encode()
