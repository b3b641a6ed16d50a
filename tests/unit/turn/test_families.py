"""Relay family rules of RFC 8656 §7.2 and RFC 6156."""

from __future__ import annotations

import pytest

from rtc64.net.address import Family
from rtc64.turn.families import Choice, Refusal, choose
from rtc64.turn.settings import TurnSettings

V4, V6 = Family.INET, Family.INET6
BOTH = frozenset((V4, V6))


def pick(
    req: Family | None = None,
    add: Family | None = None,
    *,
    client: Family = V6,
    keep: bool = False,
    available: frozenset[Family] = BOTH,
) -> Choice | Refusal:
    return choose(req, add, client_family=client, keep_client_family=keep, available=available)


def test_default_is_ipv4_even_for_an_ipv6_client() -> None:
    assert pick() == Choice((V4,))


def test_keep_client_family() -> None:
    assert pick(keep=True) == Choice((V6,))
    assert pick(client=V4, keep=True) == Choice((V4,))


def test_default_falls_back_when_the_server_lacks_the_family() -> None:
    assert pick(available=frozenset((V6,))) == Choice((V6,))
    assert pick(available=frozenset()) == Refusal(440, "Address Family not Supported")


@pytest.mark.parametrize("family", [V4, V6])
def test_requested_family_honoured(family: Family) -> None:
    assert pick(family) == Choice((family,))


def test_requested_family_missing_is_440() -> None:
    refusal = pick(V6, available=frozenset((V4,)))
    assert isinstance(refusal, Refusal) and refusal.code == 440


def test_both_attributes_is_400() -> None:
    refusal = pick(V4, V6)
    assert isinstance(refusal, Refusal) and refusal.code == 400


def test_additional_must_be_ipv6() -> None:
    refusal = pick(None, V4)
    assert isinstance(refusal, Refusal) and refusal.code == 400


def test_dual_allocation() -> None:
    assert pick(None, V6) == Choice((V4, V6), dual=True)
    assert pick(None, V6, available=frozenset((V4,))) == Choice((V4,), dual=True, missing=(V6,))
    assert pick(None, V6, available=frozenset((V6,))) == Choice((V6,), dual=True, missing=(V4,))
    refusal = pick(None, V6, available=frozenset())
    assert isinstance(refusal, Refusal) and refusal.code == 440


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"max_lifetime": 100}, "max_lifetime"),
        ({"default_lifetime": 0}, "default_lifetime"),
        ({"user_quota": -1}, "user_quota"),
        ({"password_algorithms": (3,)}, "password_algorithms"),
        ({"password_algorithms": ()}, "password_algorithms"),
    ],
)
def test_settings_refuse_nonsense_and_name_the_field(kwargs: dict[str, object], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        TurnSettings(**kwargs)  # type: ignore[arg-type]
