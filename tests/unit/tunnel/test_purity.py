"""tunnel/'s codec and rules are sans-I/O like the pure cores: only service.py and
command.py (the wiring) touch io/, asyncio, sockets or the clock."""

from __future__ import annotations

import pytest

from tests.unit.test_layering import CORE_BANNED_STDLIB, SRC, _clock_calls, _imports, _under

PURE = ("tsp", "mapping", "packet", "ratelimit", "server", "client", "stats")
ALLOWED = ("rtc64.errors", *(f"rtc64.tunnel.{m}" for m in PURE), "rtc64.tunnel")


@pytest.mark.parametrize("name", PURE)
def test_tunnel_rules_are_pure(name: str) -> None:
    path = SRC / "tunnel" / f"{name}.py"
    bad = [
        imp.target
        for imp in _imports(path)
        if _under(imp.target, CORE_BANNED_STDLIB)
        or (_under(imp.target, ("rtc64",)) and not _under(imp.target, ALLOWED))
    ]
    assert bad == [] and list(_clock_calls(path)) == []


def test_every_tunnel_module_is_classified() -> None:
    found = {p.stem for p in (SRC / "tunnel").glob("*.py")} - {"__init__"}
    assert found == {*PURE, "service", "command"}
