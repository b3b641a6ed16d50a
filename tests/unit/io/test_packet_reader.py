"""The packet reader the TUN device and the routed backend's tap share (``io.tun``)."""

from __future__ import annotations

import os

from rtc64.io.tun import BURST, read_packets


def test_a_burst_delivers_at_most_burst_packets_and_stops_at_would_block() -> None:
    queued = [bytes([n]) for n in range(BURST + 5)]
    got: list[bytes] = []

    def read() -> bytes:
        if not queued:
            raise BlockingIOError
        return queued.pop(0)

    read_packets(read, got.append)
    assert len(got) == BURST and got[0] == b"\x00"  # the rest waits for the next callback
    read_packets(read, got.append)
    assert len(got) == BURST + 5 and not queued


def test_a_read_error_ends_the_burst_without_raising() -> None:
    r, w = os.pipe()
    os.set_blocking(r, False)
    got: list[bytes] = []
    try:
        os.write(w, b"one")
        read_packets(lambda: os.read(r, 100), got.append)  # then EAGAIN
        assert got == [b"one"]
        os.close(r)
        read_packets(lambda: os.read(r, 100), got.append)  # EBADF
        assert got == [b"one"]
    finally:
        os.close(w)
