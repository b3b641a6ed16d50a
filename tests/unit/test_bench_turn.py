"""Smoke test of the TURN benchmark: it imports, parses its arguments, and its own STUN
client codec reproduces RFC 5769 (no server started, nothing timed)."""

from __future__ import annotations

import pytest
from bench import turn, turn_report, turn_stun
from bench.__main__ import BENCHMARKS


def _unhex(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


# RFC 5769 §2.4: request with long-term authentication (no FINGERPRINT).
LONG_TERM_REQUEST = _unhex(
    """
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79
    36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66
    """
)
# RFC 5769 §2.3: IPv6 response, XOR-MAPPED-ADDRESS 2001:db8:1234:5678:11:2233:4455:6677 32853.
IPV6_RESPONSE = _unhex(
    """
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c
    """
)


def test_registered_and_defaults() -> None:
    assert BENCHMARKS["turn"] == "bench.turn"
    args = turn.parse_args([])
    assert args.servers == ["coturn", "rtc64"]
    assert args.parts == ["alloc", "relay"]
    assert (args.clients, args.channels, args.runs) == (32, 500, 1)


def test_arguments() -> None:
    args = turn.parse_args(
        ["--servers", "rtc64", "--parts", "relay", "--relay-ports", "40000-41000", "--runs", "2"]
    )
    assert args.servers == ["rtc64"]
    assert args.relay_ports == (40000, 41000)
    assert args.runs == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["--servers", "kamailio"],
        ["--parts", "media"],
        ["--relay-ports", "5000"],
        ["--relay-ports", "9-20"],
        ["--channels", "0"],
    ],
)
def test_bad_arguments(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        turn.parse_args(argv)


def test_encoder_reproduces_rfc5769_long_term_request() -> None:
    username = "\u30de\u30c8\u30ea\u30c3\u30af\u30b9"
    key = turn_stun.Credentials(username, "TheMatrIX").key(b"example.org")
    auth = turn_stun.Auth(username.encode(), b"example.org", b"f//499k954d6OL34oL9FSTvy64sA", key)
    tid = _unhex("78 ad 34 33 c6 ad 72 c0 29 da 41 2e")
    got = turn_stun.encode(turn_stun.BINDING, turn_stun.REQUEST, tid, [], auth, fingerprint=False)
    assert got == LONG_TERM_REQUEST


def test_decoder_reads_rfc5769_ipv6_response() -> None:
    r = turn_stun.decode(IPV6_RESPONSE)
    assert r is not None
    assert (r.method, r.cls) == (turn_stun.BINDING, turn_stun.SUCCESS)
    assert r.address(turn_stun.XOR_MAPPED_ADDRESS) == (
        "2001:db8:1234:5678:11:2233:4455:6677",
        32853,
    )
    assert turn_stun.decode(IPV6_RESPONSE[:-1]) is None  # truncated attribute


def test_channel_bind_round_trip() -> None:
    tid = turn_stun.transaction_id()
    auth = turn_stun.Auth(b"u", b"r", b"n", b"k" * 16)
    r = turn_stun.decode(turn_stun.channel_bind(tid, auth, 0x4000, ("127.0.0.1", 35996)))
    assert r is not None
    assert (r.method, r.cls, r.tid) == (turn_stun.CHANNEL_BIND, turn_stun.REQUEST, tid)
    assert r.address(turn_stun.XOR_PEER_ADDRESS) == ("127.0.0.1", 35996)
    assert r.attrs[turn_stun.CHANNEL_NUMBER] == b"\x40\x00\x00\x00"
    err = turn_stun.encode(
        turn_stun.ALLOCATE, turn_stun.ERROR, tid, [(turn_stun.ERROR_CODE, b"\0\0\x04\x01")]
    )
    assert turn_stun.decode(err).error == 401  # type: ignore[union-attr]


def _summary(scale: float) -> dict[str, object]:
    alloc = turn.AllocStep("x", "lt", 10.0, int(10000 * scale), 0, {}, 0.5, 0.2, 0.1)
    calls = turn.RelayStep(
        "x", 25000, 125000, 125000, 5.0, 0.3 * scale, 0.4, [50, 90, 990, 2000], {}, 0.1, 0.5, 0.1
    )
    return {"alloc_lt": alloc, "alloc_rest": alloc, "calls": calls, "max": calls}


def test_report_table_and_agreement() -> None:
    args = turn.parse_args([])
    run = {"coturn": _summary(1.0), "rtc64": _summary(0.5)}
    table = turn_report.table(args, run)
    assert (
        "| allocations/s, long-term credentials (higher is better) | 1,000 | 500 | 0.50 |" in table
    )
    assert (
        "| relay CPU per packet at 25,000 pps, µs (lower is better) | 12.00 | 6.00 | 0.50 |"
        in table
    )
    agree = turn_report.agreement([run, {"coturn": _summary(1.1), "rtc64": _summary(0.5)}])
    assert "| allocations/s, long-term credentials | coturn | 1,000 | 1,100 | 10% |" in agree
