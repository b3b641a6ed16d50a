"""rtc64: make real-time communication work across IPv4 and IPv6."""

__version__ = "0.1.0"
