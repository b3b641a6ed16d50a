# Reception statistics of one RTP stream as a relay sees it (RFC 3550 §A.1 sequence
# validation, §A.3 expected and lost packets, §A.8 interarrival jitter, §6.4.1 fields).
#
# Rules:
# - ``update(data, arrival)`` is called once per datagram with the arrival time in seconds
#   (any monotonic timebase); it reads the header with ``struct.unpack_from`` and keeps
#   only integers and floats: no object per packet.
# - Sequence numbers follow §A.1 verbatim: a new source is on probation for
#   ``MIN_SEQUENTIAL`` packets; jumps larger than ``MAX_DROPOUT`` need two sequential
#   packets to be believed (a restart); late packets within ``MAX_MISORDER`` count as
#   received without moving the highest sequence.
# - expected = extended highest sequence - base + 1, lost = expected - received (§A.3;
#   negative with duplicates, as the RFC allows).
# - Jitter (§A.8) is kept in timestamp units; the clock rate comes from the payload type
#   (``clock_rates``, built from the SDP). Jitter is updated only between consecutive
#   packets of the same payload type with a known rate (a switch to telephone-event or a
#   new codec would otherwise read as a jump). Timestamp differences wrap at 2**32.
# - A new SSRC starts a new source; what the old one expected and received is kept so the
#   leg's totals stay monotonic.
# - RTCP on an rtcp-mux port (RFC 5761 §4) and malformed packets are counted, not parsed
#   further.
"""Per-stream RTP reception statistics (RFC 3550 appendix A)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rtc64.rtp.header import RTCP_MUX_HIGH, RTCP_MUX_LOW, RTP_HEADER, RTP_HEADER_LENGTH

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
_TS_MOD = 1 << 32
_TS_HALF = 1 << 31
_unpack_header = RTP_HEADER.unpack_from


@dataclass(frozen=True, slots=True)
class ReceptionSnapshot:
    """Read-only view of a stream's reception statistics."""

    packets: int
    """RTP packets seen (valid header), including duplicates and probation."""
    octets: int
    expected: int
    received: int
    lost: int
    jitter: float
    """Interarrival jitter in timestamp units (§A.8)."""
    jitter_seconds: float
    ssrc: int | None
    extended_highest_sequence: int | None
    rtcp_packets: int
    rtcp_octets: int
    malformed: int
    ssrc_changes: int

    @property
    def fraction_lost(self) -> float:
        """Cumulative loss ratio 0..1 (0 when nothing was expected)."""
        return max(self.lost, 0) / self.expected if self.expected > 0 else 0.0


class ReceptionStats:
    """Mutable per-source state updated on every packet; read through ``snapshot``."""

    __slots__ = (
        "_rate",
        "bad_seq",
        "base_seq",
        "clock_rates",
        "cycles",
        "expected_before",
        "jitter",
        "last_arrival",
        "last_pt",
        "last_ts",
        "malformed",
        "max_seq",
        "octets",
        "packets",
        "probation",
        "received",
        "received_before",
        "rtcp_octets",
        "rtcp_packets",
        "ssrc",
        "ssrc_changes",
    )

    def __init__(self, clock_rates: Mapping[int, int]) -> None:
        self.clock_rates = dict(clock_rates)
        self.ssrc: int | None = None
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.probation = 0
        self.received = 0
        self.expected_before = 0
        self.received_before = 0
        self.jitter = 0.0
        self.last_pt = -1
        self.last_ts = 0
        self.last_arrival = 0.0
        self._rate = 0
        self.packets = 0
        self.octets = 0
        self.rtcp_packets = 0
        self.rtcp_octets = 0
        self.malformed = 0
        self.ssrc_changes = 0

    # --- RFC 3550 §A.1 ------------------------------------------------------------------

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0

    def _new_source(self, ssrc: int, seq: int) -> None:
        if self.ssrc is not None:
            self.ssrc_changes += 1
            self.expected_before += self._expected()
            self.received_before += self.received
        self.ssrc = ssrc
        self._init_seq(seq)
        self.max_seq = (seq - 1) & 0xFFFF
        self.probation = MIN_SEQUENTIAL
        self.last_pt = -1

    def _update_seq(self, seq: int) -> bool:
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet
        self.received += 1
        return True

    def _expected(self) -> int:
        if self.ssrc is None or (self.probation and self.received == 0):
            return 0
        return self.cycles + self.max_seq - self.base_seq + 1

    # --- per packet ---------------------------------------------------------------------

    def update(self, data: bytes, arrival: float) -> None:
        """Account one datagram received at ``arrival`` seconds."""
        size = len(data)
        if size >= RTP_HEADER_LENGTH:
            # Fast path, the packet after the previous one of a validated source with the
            # same payload type and a known clock rate: exactly what the general path below
            # does for it (§A.1 in-order step, §A.8 jitter), without its branches and calls.
            first, second, seq, ts, ssrc = _unpack_header(data)
            max_seq = self.max_seq
            rate = self._rate
            if (
                seq == (max_seq + 1) & 0xFFFF
                and ssrc == self.ssrc
                and (second & 0x7F) == self.last_pt
                and rate
                and not self.probation
                and first & 0xC0 == 0x80
            ):
                self.packets += 1
                self.octets += size
                if seq < max_seq:
                    self.cycles += RTP_SEQ_MOD
                self.max_seq = seq
                self.received += 1
                dts = (ts - self.last_ts) % _TS_MOD
                if dts >= _TS_HALF:
                    dts -= _TS_MOD
                d = (arrival - self.last_arrival) * rate - dts
                if d < 0:
                    d = -d
                self.jitter += (d - self.jitter) / 16.0
                self.last_ts = ts
                self.last_arrival = arrival
                return
        self._update_general(data, arrival)

    def _update_general(self, data: bytes, arrival: float) -> None:
        if len(data) < RTP_HEADER_LENGTH:
            if len(data) >= 2 and RTCP_MUX_LOW <= (data[1] & 0x7F) <= RTCP_MUX_HIGH:
                self.rtcp_packets += 1
                self.rtcp_octets += len(data)
            else:
                self.malformed += 1
            return
        first, second, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        pt = second & 0x7F
        if first >> 6 != 2:
            self.malformed += 1
            return
        if RTCP_MUX_LOW <= pt <= RTCP_MUX_HIGH:
            self.rtcp_packets += 1
            self.rtcp_octets += len(data)
            return
        self.packets += 1
        self.octets += len(data)
        if ssrc != self.ssrc:
            self._new_source(ssrc, seq)
        if not self._update_seq(seq):
            return
        # RFC 3550 §A.8, on timestamp and arrival differences (wrap-safe).
        if pt == self.last_pt and self._rate:
            dts = (ts - self.last_ts) % _TS_MOD
            if dts >= _TS_HALF:
                dts -= _TS_MOD
            d = (arrival - self.last_arrival) * self._rate - dts
            if d < 0:
                d = -d
            self.jitter += (d - self.jitter) / 16.0
        elif pt != self.last_pt:
            self.last_pt = pt
            self._rate = self.clock_rates.get(pt, 0)
        self.last_ts = ts
        self.last_arrival = arrival

    def snapshot(self) -> ReceptionSnapshot:
        expected = self.expected_before + self._expected()
        received = self.received_before + self.received
        rate = self._rate
        return ReceptionSnapshot(
            packets=self.packets,
            octets=self.octets,
            expected=expected,
            received=received,
            lost=expected - received,
            jitter=self.jitter,
            jitter_seconds=self.jitter / rate if rate else 0.0,
            ssrc=self.ssrc,
            extended_highest_sequence=None
            if self.ssrc is None or (self.probation and self.received == 0)
            else self.cycles + self.max_seq,
            rtcp_packets=self.rtcp_packets,
            rtcp_octets=self.rtcp_octets,
            malformed=self.malformed,
            ssrc_changes=self.ssrc_changes,
        )
