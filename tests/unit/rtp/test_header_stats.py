"""RTP/RTCP header reading and RFC 3550 reception statistics with crafted packets."""

from __future__ import annotations

import random
import struct

from rtc64.rtp.header import (
    RTCP_RR,
    RTCP_SDES,
    RTCP_SR,
    clock_rates,
    is_rtcp,
    read_rtp,
    rtcp_packet_types,
    rtcp_sender_ssrc,
)
from rtc64.rtp.stats import ReceptionStats

SSRC = 0x11223344


def rtp(seq: int, ts: int, pt: int = 0, ssrc: int = SSRC, payload: bytes = b"\xff" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + payload


def rtcp(pt: int, words: int = 1, ssrc: int = SSRC) -> bytes:
    return struct.pack("!BBHI", 0x80, pt, words, ssrc) + b"\0" * 4 * (words - 1)


def test_read_rtp_fields() -> None:
    assert read_rtp(rtp(7, 1234, pt=8)) == (8, 7, 1234, SSRC)
    assert read_rtp(rtp(7, 1234, pt=8 | 0x80)) == (8, 7, 1234, SSRC)  # marker bit


def test_read_rtp_rejects_short_wrong_version_and_rtcp() -> None:
    assert read_rtp(b"") is None
    assert read_rtp(rtp(1, 1)[:11]) is None
    assert read_rtp(b"\x40" + rtp(1, 1)[1:]) is None  # version 1
    assert read_rtp(rtcp(RTCP_SR, 6)) is None


def test_rtcp_mux_demultiplexing_rfc5761() -> None:
    for pt in range(192, 224):
        assert is_rtcp(bytes([0x80, pt, 0, 1]))
    for pt in (0, 8, 9, 63, 96, 101, 111, 127):
        assert not is_rtcp(rtp(1, 1, pt=pt))
        assert not is_rtcp(rtp(1, 1, pt=pt | 0x80))
    assert not is_rtcp(b"\x80")


def test_rtcp_compound_types_and_validation() -> None:
    compound = rtcp(RTCP_SR, 6) + rtcp(RTCP_SDES, 2)
    assert rtcp_packet_types(compound) == [RTCP_SR, RTCP_SDES]
    assert rtcp_sender_ssrc(compound) == SSRC
    assert rtcp_packet_types(compound[:-1]) is None  # lengths do not add up
    assert rtcp_packet_types(b"") is None
    assert rtcp_packet_types(b"\x00" + compound[1:]) is None
    assert rtcp_packet_types(rtcp(RTCP_RR, 1)) == [RTCP_RR]
    assert rtcp_sender_ssrc(b"\x80\xc8") is None


def test_clock_rates_static_and_rtpmap() -> None:
    rates = clock_rates(
        [(111, "opus", 48000), (9, "G722", 16000), (101, "telephone-event", 8000)],
        ["0", "8", "9", "111", "101", "18"],
    )
    assert rates == {0: 8000, 8: 8000, 9: 8000, 18: 8000, 111: 48000, 101: 8000}


def feed(stats: ReceptionStats, seqs: list[int], start_ts: int = 0, step: float = 0.02) -> None:
    for i, seq in enumerate(seqs):
        stats.update(rtp(seq, start_ts + 160 * (seq - seqs[0])), i * step)


def test_in_order_stream_counts_no_loss() -> None:
    s = ReceptionStats({0: 8000})
    feed(s, list(range(100, 150)))
    snap = s.snapshot()
    assert snap.packets == 50
    assert snap.octets == 50 * 172
    # RFC 3550 A.1: the first packet of a new source is probation; base is the second.
    assert snap.expected == 49 and snap.received == 49 and snap.lost == 0
    assert snap.extended_highest_sequence == 149
    assert snap.jitter < 1e-9


def test_loss_is_expected_minus_received() -> None:
    s = ReceptionStats({0: 8000})
    seqs = [1, 2, 3, 4, 7, 8, 9, 10]  # 5 and 6 lost
    feed(s, seqs)
    snap = s.snapshot()
    assert snap.expected == 9  # base 2 .. 10
    assert snap.received == 7
    assert snap.lost == 2
    assert abs(snap.fraction_lost - 2 / 9) < 1e-9


def test_sequence_wrap_extends_highest_sequence() -> None:
    s = ReceptionStats({0: 8000})
    seqs = [(65530 + i) & 0xFFFF for i in range(12)]  # 65530..65535, 0..5
    feed(s, seqs)
    snap = s.snapshot()
    assert snap.extended_highest_sequence == 65536 + 5
    assert snap.lost == 0
    assert snap.expected == snap.received == 11


def test_reordering_counts_late_packet_and_no_loss() -> None:
    s = ReceptionStats({0: 8000})
    seqs = [10, 11, 12, 14, 13, 15, 16]
    for i, seq in enumerate(seqs):
        s.update(rtp(seq, 160 * seq), i * 0.02)
    snap = s.snapshot()
    assert snap.extended_highest_sequence == 16
    assert snap.lost == 0
    assert snap.received == 6


def test_duplicates_make_loss_negative_as_rfc_allows() -> None:
    s = ReceptionStats({0: 8000})
    for i, seq in enumerate([1, 2, 3, 3, 4]):
        s.update(rtp(seq, 160 * seq), i * 0.02)
    assert s.snapshot().lost == -1


def test_large_jump_needs_two_sequential_packets() -> None:
    s = ReceptionStats({0: 8000})
    feed(s, [1, 2, 3])
    s.update(rtp(20000, 0), 1.0)  # one wild packet: ignored
    assert s.snapshot().extended_highest_sequence == 3
    s.update(rtp(20001, 160), 1.02)  # second sequential one: the sender restarted
    snap = s.snapshot()
    assert snap.extended_highest_sequence == 20001


def test_new_ssrc_keeps_totals() -> None:
    s = ReceptionStats({0: 8000})
    feed(s, [1, 2, 3, 5])  # one lost
    for i, seq in enumerate([500, 501, 502]):
        s.update(rtp(seq, 160 * i, ssrc=0x55), 1 + i * 0.02)
    snap = s.snapshot()
    assert snap.ssrc == 0x55 and snap.ssrc_changes == 1
    assert snap.lost == 1
    assert snap.received == 3 + 2


def test_jitter_matches_hand_computed_reference() -> None:
    """RFC 3550 A.8 by hand: transit differences in timestamp units, J += (|D| - J)/16."""
    rate = 8000
    arrivals = [0.000, 0.020, 0.045, 0.060, 0.081, 0.100, 0.127, 0.140]
    s = ReceptionStats({0: rate})
    for i, t in enumerate(arrivals):
        s.update(rtp(i, 160 * i), t)
    # The first packet is on probation (A.1), so jitter starts between packets 1 and 2.
    j = 0.0
    for i in range(2, len(arrivals)):
        d = (arrivals[i] - arrivals[i - 1]) * rate - 160
        j += (abs(d) - j) / 16
    snap = s.snapshot()
    assert abs(snap.jitter - j) < 1e-9
    # Written out: |D| = 40, 40, 8, 8, 56, 56 → J = 2.5, 4.84375, 5.04102, 5.22595, 8.39933,
    # 11.37437 (timestamp units).
    assert abs(snap.jitter - 11.37437) < 1e-4
    assert abs(snap.jitter_seconds - j / rate) < 1e-12


def test_jitter_survives_timestamp_wrap() -> None:
    s = ReceptionStats({0: 8000})
    base = 0xFFFFFFFF - 320
    for i in range(6):
        s.update(rtp(i, base + 160 * i), i * 0.02)
    assert s.snapshot().jitter < 1e-9


def test_jitter_skips_payload_type_switch_and_unknown_rate() -> None:
    s = ReceptionStats({0: 8000})
    for i in range(4):
        s.update(rtp(i, 160 * i), i * 0.02)
    s.update(rtp(4, 99999, pt=101), 0.08)  # telephone-event with odd timestamps
    s.update(rtp(5, 800), 0.10)
    s.update(rtp(6, 960), 0.12)
    assert s.snapshot().jitter < 1e-9


def test_malformed_and_rtcp_are_counted_not_raised() -> None:
    s = ReceptionStats({0: 8000})
    for junk in (b"", b"\x80", b"\x00" * 11, b"\x40" * 20, b"\xff" * 200):
        s.update(junk, 0.0)
    s.update(rtcp(RTCP_SR, 6), 0.0)
    s.update(bytes([0x80, RTCP_RR]), 0.0)  # 2-byte RTCP-looking runt
    snap = s.snapshot()
    assert snap.malformed == 5
    assert snap.rtcp_packets == 2
    assert snap.packets == 0 and snap.expected == 0 and snap.ssrc is None


def test_fast_path_matches_general_path() -> None:
    # update() has a fast path for the in-order packet; it must leave exactly the state
    # the general path (_update_general) leaves, over wraps, loss, reordering, duplicates,
    # SSRC and payload-type changes, RTCP and malformed datagrams.
    rng = random.Random(7)
    fast = ReceptionStats({0: 8000, 8: 8000, 101: 8000})
    slow = ReceptionStats({0: 8000, 8: 8000, 101: 8000})
    seq, ts, ssrc, pt, t = 65500, 4294960000, 1, 0, 0.0
    for _ in range(20000):
        r = rng.random()
        if r < 0.90:
            seq, ts = (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF
        elif r < 0.93:
            seq = (seq + rng.randint(2, 5)) & 0xFFFF  # loss
        elif r < 0.95:
            seq = (seq - rng.randint(1, 3)) & 0xFFFF  # late / duplicate
        elif r < 0.96:
            pt = rng.choice((0, 8, 101, 96))  # 96: no known rate
        elif r < 0.965:
            ssrc += 1
        elif r < 0.97:
            seq = (seq + 5000) & 0xFFFF  # jump
        t += rng.uniform(0.015, 0.025)
        if r > 0.998:
            data = b"\x80\xc8" + b"\x00" * 6  # RTCP SR header (short)
        elif r > 0.997:
            data = b"\x40" + b"\x00" * 20  # wrong version
        else:
            data = struct.pack("!BBHII", 0x80, pt, seq, ts, ssrc) + b"\xd5" * 160
        fast.update(data, t)
        slow._update_general(data, t)
        assert fast.snapshot() == slow.snapshot()
