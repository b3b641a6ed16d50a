"""rtc64: make real-time communication work across IPv4 and IPv6."""

from rtc64 import _compiled

__version__ = "0.1.0"

_compiled.install()
