"""Moved: ``Flow`` and ``SockAddr`` are plain data in ``rtc64.net.endpoint``.

This alias module goes away once every import names ``rtc64.net.endpoint``.
"""

from rtc64.net.endpoint import Flow, SockAddr

__all__ = ["Flow", "SockAddr"]
