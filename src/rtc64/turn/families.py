# Which relay families an Allocate gets (RFC 8656 §7.2, RFC 6156 §4).
#
# Rules:
# - REQUESTED-ADDRESS-FAMILY and ADDITIONAL-ADDRESS-FAMILY together: 400.
# - ADDITIONAL-ADDRESS-FAMILY may only name IPv6 (400 otherwise) and asks for a dual
#   allocation: IPv4 and IPv6. If one family fails the other is kept and the success
#   response says why in ADDRESS-ERROR-CODE; if both fail, the request fails.
# - REQUESTED-ADDRESS-FAMILY is honoured; 440 when the server has no relay of that family.
# - Neither: IPv4 (the RFC's default, and what an IPv6-only browser needs to reach IPv4
#   peers), or the client's family on listeners set to keep it. The client asked for no
#   family, so when the server has no relay of the default family the other one is used.
"""Relay family choice for Allocate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from rtc64.net.address import Family


class Choice:
    """Families to allocate, first the primary one; ``dual`` for ADDITIONAL-ADDRESS-FAMILY.
    ``missing`` lists families of a dual allocation the server has no relay of.
    A plain immutable class, not a frozen dataclass: one per Allocate, constructed
    natively in the mypyc build (a dataclass's ``__init__`` is generated Python)."""

    __slots__ = ("dual", "families", "missing")

    def __init__(
        self, families: tuple[Family, ...], dual: bool = False, missing: tuple[Family, ...] = ()
    ) -> None:
        self.families: Final = families
        self.dual: Final = dual
        self.missing: Final = missing

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Choice):
            return NotImplemented
        return (self.families, self.dual, self.missing) == (
            other.families,
            other.dual,
            other.missing,
        )

    def __hash__(self) -> int:
        return hash((self.families, self.dual, self.missing))

    def __repr__(self) -> str:
        return f"Choice(families={self.families!r}, dual={self.dual!r}, missing={self.missing!r})"


@dataclass(frozen=True, slots=True)
class Refusal:
    """The error to answer instead."""

    code: int
    reason: str


def choose(
    requested: Family | None,
    additional: Family | None,
    *,
    client_family: Family,
    keep_client_family: bool,
    available: frozenset[Family],
) -> Choice | Refusal:
    """Decide the relay families of an Allocate (see the module rules)."""
    if requested is not None and additional is not None:
        return Refusal(400, "REQUESTED-ADDRESS-FAMILY with ADDITIONAL-ADDRESS-FAMILY")
    if additional is not None:
        if additional is not Family.INET6:
            return Refusal(400, "ADDITIONAL-ADDRESS-FAMILY must be IPv6")
        wanted = (Family.INET, Family.INET6)
        have = tuple(f for f in wanted if f in available)
        if not have:
            return Refusal(440, "Address Family not Supported")
        return Choice(have, dual=True, missing=tuple(f for f in wanted if f not in available))
    if requested is not None:
        if requested not in available:
            return Refusal(440, "Address Family not Supported")
        return Choice((requested,))
    family = client_family if keep_client_family else Family.INET
    if family not in available:
        other = Family.INET6 if family is Family.INET else Family.INET
        if other not in available:
            return Refusal(440, "Address Family not Supported")
        family = other
    return Choice((family,))
