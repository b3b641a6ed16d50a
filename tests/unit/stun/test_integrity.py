"""Keys: long-term MD5 is the SIP digest HA1, SHA-256 form, USERHASH, algorithm numbers."""

from __future__ import annotations

import hashlib

import pytest

from rtc64.errors import LocalProtocolError
from rtc64.stun.integrity import (
    PasswordAlgorithm,
    fingerprint,
    hmac_sha256,
    long_term_key,
    short_term_key,
    userhash,
)


def test_long_term_md5_is_the_sip_ha1() -> None:
    ha1 = hashlib.md5(b"alice:example.org:secret").hexdigest()
    assert long_term_key("alice", "example.org", "secret").hex() == ha1
    assert long_term_key(b"alice", b"example.org", b"secret", 1) == bytes.fromhex(ha1)


def test_long_term_sha256_and_numbers_from_the_wire() -> None:
    expected = hashlib.sha256(b"alice:example.org:secret").digest()
    assert long_term_key("alice", "example.org", "secret", PasswordAlgorithm.SHA256) == expected
    assert long_term_key("alice", "example.org", "secret", 2) == expected
    with pytest.raises(LocalProtocolError):
        long_term_key("alice", "example.org", "secret", 3)


def test_no_saslprep_bytes_compared() -> None:
    # "\u2168" (ROMAN NUMERAL NINE) would become "IX" under SASLprep; here it stays as sent.
    assert long_term_key("u", "r", "\u2168") != long_term_key("u", "r", "IX")
    assert short_term_key("p\u00e9") == "p\u00e9".encode()


def test_userhash_and_fingerprint() -> None:
    assert userhash("alice", "example.org") == hashlib.sha256(b"alice:example.org").digest()
    assert fingerprint(b"") == 0x5354554E  # CRC-32 of nothing is 0
    with pytest.raises(LocalProtocolError):
        hmac_sha256(b"k", b"data", 15)
