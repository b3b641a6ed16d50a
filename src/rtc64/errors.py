"""Error hierarchy shared by every layer.

``Rtc64Error`` is the root. ``ProtocolError`` carries what to answer: a SIP status and
reason phrase, or a STUN error code. ``RemoteProtocolError`` means the peer sent
something bad (answer it, count it, carry on); ``LocalProtocolError`` means our own
code misused an API. ``ConfigError`` names the offending key, value and expected form.
"""

from __future__ import annotations


class Rtc64Error(Exception):
    """Root of every error rtc64 raises on purpose."""


class ProtocolError(Rtc64Error):
    """A protocol rule was broken; ``status``/``reason`` say what to answer."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


class RemoteProtocolError(ProtocolError):
    """The peer sent something malformed or not allowed."""


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow."""

    def __init__(self, reason: str, status: int = 500) -> None:
        super().__init__(reason, status)


class ConfigError(Rtc64Error):
    """A configuration value is wrong: names the key, the value and the expected form."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        super().__init__(f"config: {key} = {value!r}: expected {expected}")
        self.key = key
        self.value = value
        self.expected = expected
