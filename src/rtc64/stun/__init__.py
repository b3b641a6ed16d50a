"""STUN codec (RFC 8489) with the TURN (RFC 8656, RFC 6156, RFC 6062) attributes: a pure core.

``message`` (model, decode/encode, integrity, fingerprint, Data indication fast path),
``attributes`` (the typed attribute table), ``integrity`` (keys, HMACs, CRC),
``channeldata`` (ChannelData and stream framing), ``reader`` (bounded reader, ``StunError``).
"""

from rtc64.stun.reader import StunError

__all__ = ["StunError"]
