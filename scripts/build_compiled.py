"""Build the optional mypyc-compiled hot-path cores (see ``src/rtc64/_compiled.py``).

Compiles rtc64/sip/*.py, rtc64/stun/*.py, rtc64/turn/*.py, rtc64/net/address.py, the TURN
credentials/quotas, the token buckets (net/tokenbucket.py), gateway/ratelimit.py,
gateway/identity.py and the proxy's gateway/proxy/ modules (all but service.py,
quick.py and indialog.py) into
BUILD/mypyc/<ext-suffix>/lib, never next to the sources, and
writes manifest.json with the SHA-256 of each compiled source and of the rtc64 modules
they import: ``import rtc64`` uses the build only while every hash
still matches, so a stale build can never hide a source change. Then the native C modules
(``_compiled.NATIVE_MODULES``: the TURN listener's ChannelData forward) into
BUILD/native/<ext-suffix>/lib, with their own manifest (C sources + ``NATIVE_DEPENDS``).

Exit status: 0 built or already up to date; 3 skipped (no C compiler, no Python headers,
no mypyc, or RTC64_NO_COMPILE=1: the pure-Python path is what runs); 1 the build failed.
Usage: python scripts/build_compiled.py [--force] [--jobs N]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
# Importing rtc64 here must not load (or, with RTC64_COMPILED=1, insist on) the build being
# replaced; the environment is restored so that nothing else sees the change.
_saved_pure = os.environ.get("RTC64_PURE")
os.environ["RTC64_PURE"] = "1"
from rtc64 import _compiled  # noqa: E402

if _saved_pure is None:
    del os.environ["RTC64_PURE"]
else:
    os.environ["RTC64_PURE"] = _saved_pure

SKIPPED = 3
# The hot paths: SIP parser, message model, headers, Via, URI, transactions, edits, digest;
# the TURN allocation path (STUN codec, TURN core, credentials and 401 limiter, whose
# buckets are net.tokenbucket.TokenBucket: one per 401 answered; the SIP limiter is the
# same module, and gateway/ratelimit.py holds the SIP authentication failure tracker); the
# proxy's routing of a new request (router, routing, forwarder, racing, next hops, dialogs,
# call control, Via/hop helpers, request splicing) and the gateway's identity it asks.
COMPILED_DIRS = ("rtc64/sip", "rtc64/stun", "rtc64/turn")
COMPILED_FILES = (
    "rtc64/gateway/identity.py",
    "rtc64/gateway/proxy/atonce.py",
    "rtc64/gateway/proxy/branches.py",
    "rtc64/gateway/proxy/calls.py",
    "rtc64/gateway/proxy/dialogs.py",
    "rtc64/gateway/proxy/forking.py",
    "rtc64/gateway/proxy/forwarder.py",
    "rtc64/gateway/proxy/hops.py",
    "rtc64/gateway/proxy/mtu.py",
    "rtc64/gateway/proxy/nexthop.py",
    "rtc64/gateway/proxy/racing.py",
    "rtc64/gateway/proxy/router.py",
    "rtc64/gateway/proxy/routing.py",
    "rtc64/gateway/proxy/splice.py",
    "rtc64/gateway/ratelimit.py",
    "rtc64/net/address.py",
    "rtc64/net/tokenbucket.py",
    "rtc64/turnserver/credentials.py",
    "rtc64/turnserver/quotas.py",
)
# Nothing under sip/ is left pure. (The transaction events are plain classes, not
# dataclasses, for mypyc: see rtc64.sip.transaction_base._Event.)
EXCLUDED: frozenset[str] = frozenset()


def compiled_sources() -> list[str]:
    """Paths relative to src/ of the modules mypyc compiles."""
    out = [
        p.relative_to(SRC).as_posix()
        for d in COMPILED_DIRS
        for p in sorted((SRC / d).glob("*.py"))
        if p.name != "__init__.py" and p.relative_to(SRC).as_posix() not in EXCLUDED
    ]
    return out + list(COMPILED_FILES)


def module_name(rel: str) -> str:
    """``rtc64/sip/uri.py`` -> ``rtc64.sip.uri``."""
    return rel.removesuffix(".py").replace("/", ".")


def rtc64_imports(rel: str) -> set[str]:
    """The rtc64 modules a source imports (also inside functions), as paths under src/."""
    tree = ast.parse((SRC / rel).read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    out: set[str] = set()
    for name in names:
        if not name.startswith("rtc64"):
            continue
        base = SRC / name.replace(".", "/")
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.is_file():
                out.add(cand.relative_to(SRC).as_posix())
    return out


def hashed_sources(compiled: list[str]) -> dict[str, str]:
    """Compiled sources, their rtc64 imports and the packages' __init__ files -> SHA-256."""
    files = set(compiled)
    for rel in compiled:
        files |= rtc64_imports(rel)
        parts = rel.split("/")
        for i in range(1, len(parts)):
            init = "/".join([*parts[:i], "__init__.py"])
            if (SRC / init).is_file():
                files.add(init)
    return {rel: _compiled.file_hash(SRC / rel) for rel in sorted(files)}


def why_not_buildable() -> str | None:
    """A reason the build cannot run here, None when it can."""
    if os.environ.get("RTC64_NO_COMPILE", "") not in ("", "0"):
        return "RTC64_NO_COMPILE is set"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    include = Path(sysconfig.get_paths()["include"]) / "Python.h"
    if not include.is_file():
        return f"no Python headers ({include})"
    try:
        import mypyc  # noqa: F401, PLC0415
    except ImportError:
        return "mypyc is not installed (pip install mypy)"
    try:
        import setuptools  # noqa: F401, PLC0415
    except ImportError:
        return "setuptools is not installed (pip install setuptools)"
    return None


def mypy_version() -> str:
    from mypy.version import __version__  # noqa: PLC0415

    return str(__version__)


def up_to_date(
    build: Path, sources: dict[str, str], modules: dict[str, str], *, mypy: bool = True
) -> bool:
    """The existing build matches these sources, this interpreter and (``mypy``) this mypy."""
    try:
        manifest = json.loads((build / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("version") == _compiled.MANIFEST_VERSION
        and manifest.get("ext_suffix") == _compiled.EXT_SUFFIX
        and (not mypy or manifest.get("mypy") == mypy_version())
        and manifest.get("sources") == sources
        and set(modules) <= set(manifest.get("modules") or {})
        and all((build / "lib" / so).is_file() for so in manifest["modules"].values())
    )


def built_modules(lib: Path) -> dict[str, str]:
    """Every extension under ``lib`` (the modules and mypyc's shared ``*__mypyc`` library)."""
    out: dict[str, str] = {}
    for so in sorted(lib.rglob("*" + _compiled.EXT_SUFFIX)):
        rel = so.relative_to(lib).as_posix()
        out[rel.removesuffix(_compiled.EXT_SUFFIX).replace("/", ".")] = rel
    return out


def build(staging: Path, compiled: list[str], jobs: int) -> None:
    """Run mypyc and the C compiler into ``staging`` (cwd = the checkout)."""
    from mypyc.build import mypycify  # noqa: PLC0415
    from setuptools import Distribution  # noqa: PLC0415

    os.chdir(ROOT)
    paths = [f"src/{rel}" for rel in compiled]
    # opt_level 3 as mypyc's default; no debug info keeps the .so files small.
    # multi_file: one C file per module, so the C compiler runs in parallel (--jobs).
    exts = mypycify(
        paths, opt_level="3", debug_level="0", multi_file=True, target_dir=str(staging / "c")
    )
    dist = Distribution({"name": "rtc64-compiled", "ext_modules": exts})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(staging / "lib")  # type: ignore[attr-defined]
    cmd.build_temp = str(staging / "tmp")  # type: ignore[attr-defined]
    cmd.parallel = jobs  # type: ignore[attr-defined]
    dist.run_command("build_ext")


def native_sources() -> dict[str, str]:
    """The native modules' C sources and the Python sources they rely on -> SHA-256."""
    files = set(_compiled.NATIVE_MODULES.values()) | set(_compiled.NATIVE_DEPENDS)
    return {rel: _compiled.file_hash(SRC / rel) for rel in sorted(files)}


def build_native(force: bool) -> int:
    """Build the native C modules (plain CPython extensions, no mypyc) into their dir."""
    from setuptools import Distribution, Extension  # noqa: PLC0415

    target = _compiled.native_dir(SRC)
    modules = {
        name: name.replace(".", "/") + _compiled.EXT_SUFFIX for name in _compiled.NATIVE_MODULES
    }
    before = native_sources()
    if not force and up_to_date(target, before, modules, mypy=False):
        print(f"build_compiled: native modules up to date ({target})", file=sys.stderr)
        return 0
    staging = target.with_name(target.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    exts = [
        Extension(name, [str(SRC / rel)], extra_compile_args=["-O2", "-Wall", "-Werror"])
        for name, rel in _compiled.NATIVE_MODULES.items()
    ]
    dist = Distribution({"name": "rtc64-native", "ext_modules": exts})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(staging / "lib")  # type: ignore[attr-defined]
    cmd.build_temp = str(staging / "tmp")  # type: ignore[attr-defined]
    try:
        dist.run_command("build_ext")
    except (Exception, SystemExit) as exc:
        print(f"build_compiled: native build failed: {exc}", file=sys.stderr)
        return 1
    if native_sources() != before:
        print("build_compiled: sources changed during the build; run it again", file=sys.stderr)
        return 1
    built = built_modules(staging / "lib")
    if not set(modules) <= set(built):
        print(f"build_compiled: native modules missing: {set(modules) - set(built)}")
        return 1
    manifest = {
        "version": _compiled.MANIFEST_VERSION,
        "ext_suffix": _compiled.EXT_SUFFIX,
        "sources": before,
        "modules": built,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    shutil.rmtree(staging / "tmp", ignore_errors=True)
    _swap(staging, target)
    print(f"build_compiled: built {len(modules)} native modules into {target}", file=sys.stderr)
    return 0


def _swap(staging: Path, target: Path) -> None:
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild even if up to date")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="C compile jobs")
    args = ap.parse_args(argv)
    reason = why_not_buildable()
    if reason:
        print(f"build_compiled: skipped, {reason}; rtc64 runs as pure Python", file=sys.stderr)
        return SKIPPED
    compiled = compiled_sources()
    modules = {module_name(rel): rel.removesuffix(".py") + _compiled.EXT_SUFFIX for rel in compiled}
    target = _compiled.build_dir(SRC)
    before = hashed_sources(compiled)
    if not args.force and up_to_date(target, before, modules):
        print(f"build_compiled: up to date ({target})", file=sys.stderr)
        return build_native(args.force)
    staging = target.with_name(target.name + ".staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        build(staging, compiled, args.jobs)
    except (Exception, SystemExit) as exc:  # setuptools raises SystemExit on compile errors
        print(f"build_compiled: mypyc build failed: {exc}", file=sys.stderr)
        return 1
    if hashed_sources(compiled) != before:
        print("build_compiled: sources changed during the build; run it again", file=sys.stderr)
        return 1
    built = built_modules(staging / "lib")
    if not set(modules) <= set(built):
        print(f"build_compiled: modules missing from the build: {set(modules) - set(built)}")
        return 1
    manifest = {
        "version": _compiled.MANIFEST_VERSION,
        "ext_suffix": _compiled.EXT_SUFFIX,
        "mypy": mypy_version(),
        "sources": before,
        "modules": built,
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    shutil.rmtree(staging / "tmp", ignore_errors=True)
    _swap(staging, target)
    print(f"build_compiled: built {len(modules)} modules into {target}", file=sys.stderr)
    return build_native(args.force)


if __name__ == "__main__":
    sys.exit(main())
