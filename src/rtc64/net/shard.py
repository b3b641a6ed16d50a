# Rules: a key (an AOR as the registrar keys it, a Call-ID value) belongs to shard
# CRC-32(key) mod count. The rule must be the same wherever it is applied (the SIP workers'
# receive path hands a REGISTER to the worker that keeps its AOR alive) and stable across
# restarts and processes (no per-process hash seed, unlike Python's ``hash``).
# A Record-Route entry that names a shared port (SO_REUSEPORT, any worker may receive what
# is sent there) on behalf of one worker carries that worker's private port in
# ``ROUTE_WORKER_PARAM``, so the dialog's requests are handed to that worker.
"""Which of ``count`` workers a key belongs to, and the Route parameter naming one."""

from __future__ import annotations

import zlib

ROUTE_WORKER_PARAM = b"r64w"
"""Record-Route URI parameter: the private port of the worker that owns the dialog."""


def shard_of(key: bytes, count: int) -> int:
    """The shard (0 .. count-1) of ``key``."""
    return zlib.crc32(key) % count
