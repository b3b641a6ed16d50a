# Rules: a key (an AOR as the registrar keys it, a Call-ID value) belongs to shard
# CRC-32(key) mod count. The rule must be the same wherever it is applied (the SIP workers'
# receive path hands a REGISTER to the worker that keeps its AOR alive) and stable across
# restarts and processes (no per-process hash seed, unlike Python's ``hash``).
"""Which of ``count`` workers a key belongs to."""

from __future__ import annotations

import zlib


def shard_of(key: bytes, count: int) -> int:
    """The shard (0 .. count-1) of ``key``."""
    return zlib.crc32(key) % count
