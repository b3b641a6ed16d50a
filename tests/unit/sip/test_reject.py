"""Error responses for unparseable requests (RFC 3261 §8.2.6, RFC 4475 §3.1.2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtc64.errors import RemoteProtocolError
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Response
from rtc64.sip.reject import reject_bytes

CORPUS = Path(__file__).parents[2] / "conformance" / "corpus"


def _invalid() -> dict[str, bytes]:
    rows = (CORPUS / "manifest.tsv").read_text(encoding="utf-8").splitlines()[1:]
    out: dict[str, bytes] = {}
    for row in rows:
        _rfc, name, file, expected, _section, _note = row.split("\t")
        if expected == "invalid":
            out[name] = (CORPUS / file).read_bytes()
    return out


INVALID = _invalid()

# Malformed requests that still carry Via, From, To, Call-ID and CSeq: answered.
ANSWERED = (
    "badinv01", "clerr", "ncl", "scalar02", "quotbal", "ltgtruri", "lwsruri", "lwsstart",
    "trws", "escruri", "badaspec", "baddn", "badvers", "mismatch01", "mismatch02",
    "multi01", "mcl01", "ipv6-bad",
)  # fmt: skip
# Responses (scalarlg, bigcode) are never answered; insuf lacks Call-ID, From and To.
DROPPED = ("scalarlg", "bigcode", "insuf")
# Malformed only in headers the parser reads lazily: they parse, nothing to reject here.
LAZY = ("baddate", "regbadct")


def _error(data: bytes) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        parse_datagram(data)
    return info.value


def test_every_invalid_message_is_classified() -> None:
    assert sorted(INVALID) == sorted((*ANSWERED, *DROPPED, *LAZY))


def _header_lines(data: bytes) -> list[tuple[bytes, bytes]]:
    """(lower-case name, value) of each header line, folding undone."""
    head = data.split(b"\r\n\r\n")[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    out = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        out.append((name.strip().lower(), value.strip()))
    return out


@pytest.mark.parametrize("name", ANSWERED)
def test_answered_with_headers_copied(name: str) -> None:
    """The reply copies the lines as written (even the malformed ones: the client wrote
    them and matches on them), so it is checked line by line rather than parsed."""
    data = INVALID[name]
    err = _error(data)
    reply = reject_bytes(data, err.status, err.reason)
    assert reply is not None
    assert reply.startswith(b"SIP/2.0 %d " % err.status)
    assert reply.endswith(b"\r\nContent-Length: 0\r\n\r\n")
    got = _header_lines(reply)
    sent = _header_lines(data)
    vias = [v for n, v in sent if n in (b"via", b"v")]
    assert [v for n, v in got if n in (b"via", b"v")] == vias
    for names in ((b"from", b"f"), (b"call-id", b"i"), (b"cseq",)):
        first = next(v for n, v in sent if n in names)
        assert [v for n, v in got if n in names] == [first]
    (to,) = [v for n, v in got if n in (b"to", b"t")]
    assert b";tag=" in to.replace(b" ", b"")


def test_answer_parses_when_the_copied_lines_are_fine() -> None:
    data = INVALID["clerr"]
    reply = reject_bytes(data, 400, "Content-Length larger than body")
    assert reply is not None
    resp = parse_datagram(reply)
    assert isinstance(resp, Response)
    assert resp.status == 400
    assert resp.to.tag is not None
    assert resp.body == b""


def test_statuses_follow_the_parse_error() -> None:
    for name, status in (("badvers", 505), ("mismatch02", 501), ("clerr", 400)):
        data = INVALID[name]
        err = _error(data)
        reply = reject_bytes(data, err.status, err.reason)
        assert reply is not None
        assert reply.startswith(b"SIP/2.0 %d " % status)


@pytest.mark.parametrize("name", DROPPED)
def test_dropped(name: str) -> None:
    data = INVALID[name]
    err = _error(data)
    assert reject_bytes(data, err.status, err.reason) is None


@pytest.mark.parametrize("name", LAZY)
def test_lazy_ones_parse(name: str) -> None:
    parse_datagram(INVALID[name])


def test_single_value_headers_copied_once() -> None:
    """multi01 repeats Call-ID, CSeq, From and To: the reply carries the first of each."""
    reply = reject_bytes(INVALID["multi01"], 400, "multiple From headers")
    assert reply is not None
    resp = parse_datagram(reply)
    assert resp.call_id == b"multi01.98asdh@192.0.2.1"
    assert resp.cseq.seq == 5
    assert resp.from_.tag == b"3413415"


def test_existing_to_tag_kept() -> None:
    data = (
        b"BYE sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"v: SIP/2.0/UDP [2001:db8::9];branch=z9hG4bK0\r\n"
        b"f: <sip:b@example.com>;tag=1\r\nt: <sip:a@example.com>;tag=2\r\ni: x@y\r\n"
        b"CSeq: 2 BYE\r\nContent-Length: 99\r\n\r\n"
    )
    reply = reject_bytes(data, 400, "Content-Length larger than body")
    assert reply is not None
    resp = parse_datagram(reply)
    assert resp.to.tag == b"2"
    assert [v.branch for v in resp.vias] == [b"z9hG4bK1", b"z9hG4bK0"]


def test_reason_is_sanitised_and_bounded() -> None:
    data = INVALID["clerr"]
    reply = reject_bytes(data, 400, "bad \x01 thing é" + "x" * 500)
    assert reply is not None
    line = reply.split(b"\r\n", 1)[0]
    assert line.startswith(b"SIP/2.0 400 bad ? thing ?")
    assert len(line) <= len(b"SIP/2.0 400 ") + 200


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"garbage\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCall-ID: c\r\nCSeq: 1 X\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h\r\nFrom: a\r\nTo: b\r\n\r\n",
    ],
)
def test_not_answerable(data: bytes) -> None:
    assert reject_bytes(data, 400, "bad") is None
