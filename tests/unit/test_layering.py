"""The import contract: the layering of ``docs/architecture.md`` enforced on every run.

    cli.py  serve.py  config/     settings.py  logs.py   top: parse, build, configure
    services  gateway/ relay/ turnserver/ probe/ clat/ tunnel/   (web/: a leaf)
    io/                                           asyncio + sockets only
    pure cores  net/ sip/ sdp/ stun/ turn/ rtp/   no asyncio, no sockets, no clock

Rules checked on the source (``ast``, every ``import`` and ``from ... import``, also
inside functions and ``TYPE_CHECKING`` blocks):

1. A pure core imports only the standard library minus I/O and clocks (asyncio, socket,
   ssl, selectors, threading, subprocess, multiprocessing, time) and other cores or
   ``rtc64.errors``; it never calls ``datetime.now()``/``utcnow()``/``today()``.
2. ``io/`` imports no service, no configuration and no command-line module.
3. A service never imports the configuration module (nor ``rtc64.settings``, which
   builds services' settings from it), the command line or the composition root: it
   takes its own settings object.
4. Nothing imports ``rtc64.web`` or ``rtc64.probe`` except the command line and the
   composition root; ``probe/`` never imports the gateway (it is a client of the world).
   The keepalive schedule (``gateway.keepalive.schedule``, ``options``, ``stunkeep``) is a
   sans-I/O core inside a service: the same ban on I/O and clocks holds for it.
5. The store protocol (``gateway.location.store``) imports no backend (``sqlite``,
   ``redis``) nor the backend choice (``backends``): backends import the protocol, never
   the reverse, so there is no import circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "rtc64"

CORES = ("net", "sip", "sdp", "stun", "turn", "rtp")
SERVICES = ("gateway", "relay", "turnserver", "probe", "clat", "tunnel")
TOP = (
    "rtc64.cli",
    "rtc64.cli_store",
    "rtc64.cli_tools",
    "rtc64.serve",
    "rtc64.workers",
    "rtc64.__main__",
)
CONFIG = ("rtc64.config", "rtc64.settings")
LEAVES = ("rtc64.web", "rtc64.probe")
STORE_PROTOCOL = "rtc64.gateway.location.store"
STORE_BACKENDS = tuple(f"rtc64.gateway.location.{m}" for m in ("sqlite", "redis", "backends"))
CORE_BANNED_STDLIB = (
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "threading",
    "subprocess",
    "multiprocessing",
    "time",
)
CLOCK_CALLS = frozenset(("now", "utcnow", "today"))
# Sans-I/O cores that live inside a service package: the core rule on I/O and clocks holds.
PURE_IN_SERVICES = tuple(
    f"rtc64.gateway.keepalive.{m}" for m in ("schedule", "options", "stunkeep")
)


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, e.g. rtc64.gateway.app
    target: str  # what it imports, e.g. rtc64.config or asyncio
    line: int


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> Iterator[Import]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            yield Import(name, mod, node.lineno)
            for alias in node.names:
                # ``from rtc64 import config`` imports the module rtc64.config.
                yield Import(name, f"{mod}.{alias.name}", node.lineno)


def _clock_calls(path: Path) -> Iterator[int]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in ("datetime", "date")
        ):
            yield node.lineno


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in CORES:
        return "core"
    if len(parts) > 1 and parts[1] == "io":
        return "io"
    if len(parts) > 1 and parts[1] in SERVICES:
        return "service"
    return "top"


def _violations() -> Iterator[tuple[str, str, str]]:
    """(module, imported target, rule) for every import that breaks the contract, once
    per module and rule."""
    seen: set[tuple[str, str]] = set()
    for module, target, rule in _all_violations():
        if (module, rule) not in seen:
            seen.add((module, rule))
            yield module, target, rule


def _all_violations() -> Iterator[tuple[str, str, str]]:
    cores = tuple(f"rtc64.{c}" for c in CORES)
    services = tuple(f"rtc64.{s}" for s in SERVICES)
    for path in sorted(SRC.rglob("*.py")):
        for imp in _imports(path):
            layer, target = _layer(imp.module), imp.target
            if imp.module in PURE_IN_SERVICES and _under(target, CORE_BANNED_STDLIB):
                yield imp.module, target, "a sans-I/O schedule does no I/O and reads no clock"
            if layer == "core":
                if _under(target, CORE_BANNED_STDLIB):
                    yield imp.module, target, "a pure core does no I/O and reads no clock"
                elif _under(target, ("rtc64",)) and not _under(target, (*cores, "rtc64.errors")):
                    yield imp.module, target, "a pure core imports only cores and errors"
            elif layer == "io" and _under(target, (*services, *CONFIG, *TOP)):
                yield imp.module, target, "io/ never imports a service or the configuration"
            elif layer == "service" and _under(target, (*CONFIG, *TOP)):
                yield imp.module, target, "a service takes its settings, not the configuration"
            if (
                _under(target, LEAVES)
                and not _under(imp.module, TOP)
                and not _under(imp.module, (target.split(".")[0] + "." + target.split(".")[1],))
            ):
                yield imp.module, target, "web/ and probe/ are leaves nobody imports"
            if _under(imp.module, ("rtc64.probe",)) and _under(target, ("rtc64.gateway",)):
                yield imp.module, target, "probe/ is a client of the world, not of the gateway"
            if _under(target, ("rtc64.serve",)) and not _under(imp.module, TOP):
                yield imp.module, target, "only the command line imports the composition root"
            if imp.module == STORE_PROTOCOL and (
                _under(target, STORE_BACKENDS) or _under(target, ("redis", "sqlite3"))
            ):
                yield imp.module, target, "the store protocol imports no backend"
        if _layer(_module_name(path)) == "core":
            for line in _clock_calls(path):
                yield _module_name(path), f"datetime call at line {line}", "no clock in a core"


def test_the_layers_hold() -> None:
    found = sorted(set(_violations()))
    assert not found, "import contract broken:\n" + "\n".join(
        f"  {m} imports {t}: {r}" for m, t, r in found
    )


@pytest.mark.parametrize(
    ("module", "target", "rule_word"),
    [
        ("rtc64.sip.fake", "asyncio", "I/O"),
        ("rtc64.net.fake", "time", "clock"),
        ("rtc64.sdp.fake", "rtc64.io.flow", "cores"),
        ("rtc64.io.fake", "rtc64.gateway.proxy", "service"),
        ("rtc64.gateway.fake", "rtc64.config", "settings"),
        ("rtc64.relay.fake", "rtc64.cli", "settings"),
        ("rtc64.gateway.location.store", "rtc64.gateway.location.sqlite", "backend"),
        ("rtc64.gateway.location.store", "rtc64.gateway.location.redis", "backend"),
        ("rtc64.gateway.location.store", "rtc64.gateway.location.backends", "backend"),
        ("rtc64.gateway.location.store", "redis.asyncio", "backend"),
        ("rtc64.relay.fake", "rtc64.settings", "settings"),
        ("rtc64.gateway.keepalive.schedule", "time", "clock"),
    ],
)
def test_the_contract_catches_a_breach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, target: str, rule_word: str
) -> None:
    """Each rule fires on a module written to break it (the contract cannot pass vacuously)."""
    root = tmp_path / "rtc64"
    path = root.joinpath(*module.split(".")[1:]).with_suffix(".py")
    path.parent.mkdir(parents=True)
    path.write_text(f"import {target}\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["SRC"]), "SRC", root)
    found = list(_violations())
    assert [(m, t) for m, t, _ in found] == [(module, target)]
    assert rule_word in found[0][2]
