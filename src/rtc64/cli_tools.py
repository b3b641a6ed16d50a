"""Offline tools of the command line: ``rtc64 nat64 synth | extract`` (RFC 6052) and
``rtc64 sip check`` (is a file one valid SIP message?).

Errors in the arguments are ``ConfigError`` naming the argument and the expected form;
the command line turns them into one line on stderr (exit 2).
"""

from __future__ import annotations

import argparse
import sys
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path

from rtc64.errors import ConfigError
from rtc64.io import nat64 as nat64_io
from rtc64.net import rfc6052
from rtc64.sip import lint

EXIT_OK, EXIT_FAIL = 0, 1


def prefix_flag(text: str) -> IPv6Network:
    try:
        return rfc6052.parse_prefix(text)
    except ValueError as exc:
        raise ConfigError("--prefix", text, f"an RFC 6052 prefix ({exc})") from None


def nat64_synth(args: argparse.Namespace) -> int:
    prefix = prefix_flag(args.prefix)
    try:
        ipv4 = IPv4Address(args.ipv4)
    except ValueError:
        raise ConfigError("IPV4", args.ipv4, "an IPv4 address like 192.0.2.33") from None
    if prefix == rfc6052.WELL_KNOWN_PREFIX and not rfc6052.wkp_allows(ipv4):
        print(
            f"rtc64: warning: {ipv4} is not a global address; RFC 6052 §3.1 forbids it "
            "under the well-known prefix 64:ff9b::/96 (NAT64s such as tayga refuse it)",
            file=sys.stderr,
        )
    print(rfc6052.synthesize(ipv4, prefix))
    return EXIT_OK


def nat64_extract(args: argparse.Namespace) -> int:
    prefix = prefix_flag(args.prefix)
    try:
        ipv6 = IPv6Address(args.ipv6)
    except ValueError:
        raise ConfigError("IPV6", args.ipv6, "an IPv6 address like 64:ff9b::c000:221") from None
    try:
        print(rfc6052.extract(ipv6, prefix))
    except ValueError as exc:
        raise ConfigError("IPV6", args.ipv6, f"an address inside {prefix} ({exc})") from None
    return EXIT_OK


def nat64_validity(found: nat64_io.Nat64Prefix) -> str:
    """``ttl=`` for an RFC 7050 answer (0: valid, not cacheable), ``lifetime=`` for PREF64
    (0: withdrawn)."""
    if found.lifetime is None:
        return ""
    if found.source == "rfc7050":
        return f"  ttl={found.lifetime:g}s" + (" (not cacheable)" if not found.lifetime else "")
    return f"  lifetime={found.lifetime:g}s" + (" (withdrawn)" if found.withdrawn else "")


STDIN = "-"


def _read_message(name: str) -> bytes:
    if name == STDIN:
        return sys.stdin.buffer.read()
    return Path(name).read_bytes()


def sip_check(args: argparse.Namespace) -> int:
    status = EXIT_OK
    many = len(args.files) > 1
    if args.files.count(STDIN) > 1:
        raise ConfigError("FILE", STDIN, "standard input ('-') named once")
    for name in args.files:
        shown = "(stdin)" if name == STDIN else name
        try:
            data = _read_message(name)
        except OSError as exc:
            print(f"{shown}: cannot read: {exc.strerror}", file=sys.stderr)
            status = EXIT_FAIL
            continue
        result = lint.check_file(data)
        if result.normalised:
            print(f"{shown}: note: no CR in it: LF line endings read as CRLF", file=sys.stderr)
        if result.bare_lf_line is not None:
            where = f"line {result.bare_lf_line}"
            print(f"{shown}: note: mixed line endings: {where} ends with LF only", file=sys.stderr)
        print(f"{shown}: {result.verdict}" if many else result.verdict)
        if not result.valid:
            status = EXIT_FAIL
        if args.show and result.message is not None:
            if result.normalised:
                print("  line endings: LF only, checked as CRLF")
            for line in lint.describe(result.message):
                print(f"  {line}")
    return status
