"""SIP parser micro-benchmark: messages/s for parse and parse+serialise.

Inputs: every ``valid`` message of the RFC 4475/5118 corpus (the torture mix), and a
typical INVITE with SDP as a phone sends it (the common case the proxy sees). Each figure
is the best of several rounds of a fixed number of iterations (``time.perf_counter``),
on one core, in this process.
"""

from __future__ import annotations

import csv
import platform
import time
from collections.abc import Callable
from pathlib import Path

from rtc64.sip.framing import parse_datagram
from rtc64.sip.serializer import serialize

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "conformance" / "corpus"

TYPICAL_INVITE = (
    b"INVITE sip:bob@example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP [2001:db8::10]:5060;rport;branch=z9hG4bK-524287-1---a3f1e2d4c5b6a798\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:alice@[2001:db8::10]:5060;transport=udp>\r\n"
    b"To: <sip:bob@example.net>\r\n"
    b'From: "Alice" <sip:alice@example.net>;tag=9fxced76sl\r\n'
    b"Call-ID: 3848276298220188511@2001:db8::10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Supported: replaces, outbound, gruu\r\n"
    b"User-Agent: baresip v1.0.0 (x86_64/linux)\r\n"
    b"Content-Length: 236\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=- 3928374 3928374 IN IP6 2001:db8::10\r\n"
    b"s=-\r\n"
    b"c=IN IP6 2001:db8::10\r\n"
    b"t=0 0\r\n"
    b"m=audio 10000 RTP/AVP 0 8 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
    b"a=rtcp-mux\r\n"
)


def valid_corpus() -> list[bytes]:
    with (CORPUS / "manifest.tsv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return [(CORPUS / r["file"]).read_bytes() for r in rows if r["expected"] == "valid"]


def rate(messages: list[bytes], work: Callable[[bytes], object], rounds: int, n: int) -> float:
    """Best messages/s over ``rounds`` rounds of ``n`` passes over ``messages``."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            for m in messages:
                work(m)
        best = min(best, time.perf_counter() - start)
    return len(messages) * n / best


def main(quick: bool = False) -> int:
    rounds, n_corpus, n_invite = (2, 20, 2000) if quick else (5, 200, 20000)
    corpus = valid_corpus()
    rows = [
        ("corpus (valid messages)", "parse", rate(corpus, parse_datagram, rounds, n_corpus)),
        (
            "corpus (valid messages)",
            "parse+serialise",
            rate(corpus, lambda m: serialize(parse_datagram(m)), rounds, n_corpus),
        ),
        (
            "typical INVITE with SDP",
            "parse",
            rate([TYPICAL_INVITE], parse_datagram, rounds, n_invite),
        ),
        (
            "typical INVITE with SDP",
            "parse+serialise",
            rate([TYPICAL_INVITE], lambda m: serialize(parse_datagram(m)), rounds, n_invite),
        ),
    ]
    print(
        f"# SIP parser micro-benchmark ({platform.python_implementation()} "
        f"{platform.python_version()}, one core)"
    )
    print("| input | operation | messages/s | µs/message |")
    print("|---|---|---:|---:|")
    for what, op, per_s in rows:
        print(f"| {what} | {op} | {per_s:,.0f} | {1e6 / per_s:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
