# Optional mypyc-compiled pure cores: load them only when they match the sources exactly.
#
# Rules:
# - `scripts/build_compiled.py` builds the hot-path cores (sip/, stun/, turn/, net/address.py,
#   net/endpoint.py, TURN
#   credentials) into
#   BUILD/mypyc/<ext-suffix>/lib, never next to the sources, and writes manifest.json with
#   the SHA-256 of every source it compiled and of the rtc64 modules those import.
# - At `import rtc64` the manifest is checked against the sources on disk. Only when every
#   hash and the interpreter's extension suffix match is a meta-path
#   finder installed that serves the compiled modules; otherwise everything is pure Python.
#   All or nothing: mypyc links the modules of one build to each other natively, so mixing a
#   compiled module with the pure version of another would give two classes for one name.
# - RTC64_PURE=1 forces pure Python; RTC64_COMPILED=1 makes a missing or stale build an
#   ImportError (what `make test` uses, so the compiled run cannot silently test pure code).
# - BUILD is the checkout holding src/rtc64 (editable installs, PYTHONPATH=src), or
#   RTC64_COMPILED_DIR. An installed wheel without a build is pure Python.
# - Native C modules (``NATIVE_MODULES``: the TURN listener's ChannelData forward) are a
#   second, independent build in BUILD/native/<ext-suffix> (RTC64_COMPILED_DIR + "-native")
#   with its own manifest (the C source and the Python modules whose attributes it reads):
#   they talk to Python objects only through the C API, so they mix with either
#   implementation of the cores. Same rules: used only while every hash matches,
#   RTC64_PURE=1 turns them off, RTC64_COMPILED=1 makes a missing or stale one an error;
#   RTC64_NO_NATIVE=1 turns off only them (a comparison of the two paths).
#   Code that uses one imports it and falls back to pure Python on ImportError.
"""Select the compiled or the pure-Python implementation of the hot-path cores."""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

MANIFEST_VERSION = 1
EXT_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


@dataclass(frozen=True, slots=True)
class Status:
    """What was chosen and why; ``modules`` maps module name -> extension path."""

    compiled: bool
    reason: str
    modules: dict[str, str]


def source_root() -> Path:
    """The directory holding the ``rtc64`` package (``src`` in a checkout)."""
    return Path(__file__).resolve().parent.parent


def build_dir(src: Path | None = None) -> Path:
    """Where the build for this interpreter lives."""
    override = os.environ.get("RTC64_COMPILED_DIR")
    if override:
        return Path(override)
    root = (src or source_root()).parent
    return root / "build" / "mypyc" / EXT_SUFFIX.strip(".").removesuffix(".so")


def native_dir(src: Path | None = None) -> Path:
    """Where the native C modules for this interpreter live."""
    override = os.environ.get("RTC64_COMPILED_DIR")
    if override:
        return Path(override + "-native")
    root = (src or source_root()).parent
    return root / "build" / "native" / EXT_SUFFIX.strip(".").removesuffix(".so")


NATIVE_MODULES = {"rtc64.io._turn_native": "rtc64/io/turn_native.c"}
"""Native module name -> its C source under src/."""
NATIVE_DEPENDS = (
    "rtc64/io/_turn_native.pyi",
    "rtc64/io/turn_fastpath.py",
    "rtc64/io/turn_listeners.py",
)
"""Sources whose names the native modules rely on (hashed with the C sources)."""


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(build: Path, src: Path) -> Status:
    """Compare ``build``'s manifest with the sources under ``src``; never raises."""
    manifest_path = build / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        return Status(False, f"no compiled build at {build}", {})
    except (OSError, ValueError) as exc:
        return Status(False, f"unreadable manifest {manifest_path}: {exc}", {})
    if not isinstance(manifest, dict) or manifest.get("version") != MANIFEST_VERSION:
        return Status(False, f"manifest {manifest_path} has an unknown format", {})
    if manifest.get("ext_suffix") != EXT_SUFFIX:
        return Status(False, f"build is for {manifest.get('ext_suffix')}, not {EXT_SUFFIX}", {})
    sources = manifest.get("sources")
    modules = manifest.get("modules")
    if not isinstance(sources, dict) or not isinstance(modules, dict) or not modules:
        return Status(False, f"manifest {manifest_path} lists no modules", {})
    for rel, digest in sorted(sources.items()):
        path = src / rel
        try:
            current = file_hash(path)
        except OSError:
            return Status(False, f"stale build: {rel} is missing", {})
        if current != digest:
            return Status(False, f"stale build: {rel} changed since it was compiled", {})
    paths: dict[str, str] = {}
    for name, rel in modules.items():
        so = build / "lib" / str(rel)
        if not so.is_file():
            return Status(False, f"incomplete build: {so} is missing", {})
        paths[str(name)] = str(so)
    return Status(True, f"compiled build at {build}", paths)


class CompiledFinder(MetaPathFinder):
    """Serves the listed extension modules ahead of the sources."""

    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = modules

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """A spec for a compiled module, None for everything else."""
        so = self.modules.get(fullname)
        if so is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, so)
        return importlib.util.spec_from_file_location(fullname, so, loader=loader)


def install() -> Status:
    """Choose the implementation once per process (idempotent)."""
    global STATUS, NATIVE  # noqa: PLW0603
    if STATUS is not None:
        return STATUS
    if os.environ.get("RTC64_PURE", "") not in ("", "0"):
        STATUS = NATIVE = Status(False, "RTC64_PURE is set", {})
    else:
        src = source_root()
        STATUS = check(build_dir(src), src)
        if os.environ.get("RTC64_NO_NATIVE", "") not in ("", "0"):
            NATIVE = Status(False, "RTC64_NO_NATIVE is set", {})
        else:
            NATIVE = check(native_dir(src), src)
        modules = {**(STATUS.modules if STATUS.compiled else {})}
        modules.update(NATIVE.modules if NATIVE.compiled else {})
        if modules:
            # mypyc-compiled code still needs the sources' own modules already imported
            # (rtc64.sip, rtc64.net packages): the finder only answers for listed names.
            sys.meta_path.insert(0, CompiledFinder(modules))
    if os.environ.get("RTC64_COMPILED", "") not in ("", "0"):
        for what, status in (("compiled cores", STATUS), ("native modules", NATIVE)):
            if not status.compiled and status.reason != "RTC64_NO_NATIVE is set":
                msg = f"RTC64_COMPILED=1 but the {what} are not used: {status.reason}"
                raise ImportError(msg)
    return STATUS


STATUS: Status | None = None
NATIVE: Status | None = None
"""The native C modules' status (set by ``install`` with ``STATUS``)."""
