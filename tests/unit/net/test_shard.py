"""The shard rule: CRC-32 of the key modulo the count, the same in every process."""

from __future__ import annotations

import subprocess
import sys

from hypothesis import given
from hypothesis import strategies as st

from rtc64.net.shard import shard_of


def test_known_values() -> None:
    # CRC-32("sip:alice@example.net") is 0x1a8f6858 (zlib)
    assert shard_of(b"sip:alice@example.net", 4) == 0
    assert shard_of(b"", 3) == 0
    assert shard_of(b"anything", 1) == 0


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_in_range(key: bytes, count: int) -> None:
    assert 0 <= shard_of(key, count) < count


def test_stable_across_processes() -> None:
    """No per-process seed: another interpreter (another worker) agrees."""
    code = "from rtc64.net.shard import shard_of; print(shard_of(b'c123@host', 7))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == shard_of(b"c123@host", 7)
