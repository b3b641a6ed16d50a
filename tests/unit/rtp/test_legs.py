"""Latching decisions (symmetric RTP and RTP-bleed protection)."""

from __future__ import annotations

from ipaddress import ip_address

from rtc64.rtp.legs import LatchMode, Verdict, admit

SIG = ip_address("203.0.113.5")
OTHER = ip_address("198.51.100.9")


def decide(
    mode: LatchMode,
    source: object,
    *,
    strict: bool = False,
    window: bool = True,
    latched: bool = False,
    port: int = 4000,
) -> Verdict:
    return admit(
        mode,
        strict=strict,
        window_open=window,
        latched=latched,
        signalled_ip=SIG,
        signalled_port=4000,
        source_ip=source,
        source_port=port,
    )  # type: ignore[arg-type]


def test_address_mode_learns_only_from_signalled_address() -> None:
    assert decide(LatchMode.ADDRESS, SIG, port=5555) is Verdict.LATCH
    assert decide(LatchMode.ADDRESS, OTHER) is Verdict.DROP
    assert decide(LatchMode.ADDRESS, OTHER, window=False) is Verdict.DROP
    assert decide(LatchMode.ADDRESS, OTHER, latched=True) is Verdict.DROP


def test_address_mode_relatches_in_window_only() -> None:
    assert decide(LatchMode.ADDRESS, SIG, latched=True, port=6000) is Verdict.LATCH
    assert decide(LatchMode.ADDRESS, SIG, latched=True, window=False, port=6000) is Verdict.FORWARD
    assert (
        decide(LatchMode.ADDRESS, SIG, latched=True, window=False, strict=True, port=6000)
        is Verdict.DROP
    )


def test_first_packet_latches_even_after_window() -> None:
    assert decide(LatchMode.ADDRESS, SIG, window=False) is Verdict.LATCH
    assert decide(LatchMode.ANY, OTHER, window=False) is Verdict.LATCH


def test_any_mode() -> None:
    assert decide(LatchMode.ANY, OTHER) is Verdict.LATCH
    assert decide(LatchMode.ANY, OTHER, latched=True) is Verdict.LATCH
    assert decide(LatchMode.ANY, OTHER, latched=True, window=False) is Verdict.FORWARD
    assert decide(LatchMode.ANY, OTHER, latched=True, window=False, strict=True) is Verdict.DROP


def test_trusted_address_never_learns() -> None:
    assert decide(LatchMode.OFF, OTHER) is Verdict.FORWARD
    assert decide(LatchMode.OFF, OTHER, strict=True) is Verdict.DROP
    assert decide(LatchMode.OFF, SIG, strict=True) is Verdict.FORWARD
    assert decide(LatchMode.OFF, SIG, strict=True, port=1) is Verdict.DROP
