"""The optional mypyc build (``rtc64._compiled``, ``scripts/build_compiled.py``).

- The manifest check: no build, unreadable or foreign manifest, a changed or missing source,
  a missing extension: all pure Python; only an exact match loads the build.
- RTC64_PURE=1 forces pure Python; RTC64_COMPILED=1 turns "not compiled" into an error.
- With a current build on disk: a fresh interpreter loads it, a copy of the sources with
  one byte changed does not (a stale build never hides a source change), and the compiled
  and pure parsers agree on every message of the conformance corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtc64 import _compiled

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
BUILD = _compiled.build_dir(SRC)
CURRENT = _compiled.check(BUILD, SRC)
needs_build = pytest.mark.skipif(
    not CURRENT.compiled, reason=f"no current compiled build ({CURRENT.reason})"
)


def fake_build(tmp: Path) -> tuple[Path, Path]:
    """A source tree with one module and a build whose manifest matches it."""
    src = tmp / "src"
    (src / "pkg").mkdir(parents=True)
    mod = src / "pkg" / "mod.py"
    mod.write_bytes(b"X = 1\n")
    build = tmp / "build"
    so = build / "lib" / "pkg" / ("mod" + _compiled.EXT_SUFFIX)
    so.parent.mkdir(parents=True)
    so.write_bytes(b"not really an extension")
    manifest = {
        "version": _compiled.MANIFEST_VERSION,
        "ext_suffix": _compiled.EXT_SUFFIX,
        "sources": {"pkg/mod.py": hashlib.sha256(b"X = 1\n").hexdigest()},
        "modules": {"pkg.mod": "pkg/mod" + _compiled.EXT_SUFFIX},
    }
    (build / "manifest.json").write_text(json.dumps(manifest))
    return src, build


def test_matching_build_is_used(tmp_path: Path) -> None:
    src, build = fake_build(tmp_path)
    status = _compiled.check(build, src)
    assert status.compiled, status.reason
    assert status.modules == {
        "pkg.mod": str(build / "lib" / "pkg" / ("mod" + _compiled.EXT_SUFFIX))
    }


def test_no_build(tmp_path: Path) -> None:
    status = _compiled.check(tmp_path / "nothing", tmp_path)
    assert not status.compiled and "no compiled build" in status.reason
    assert status.modules == {}


def test_changed_source_makes_the_build_stale(tmp_path: Path) -> None:
    src, build = fake_build(tmp_path)
    (src / "pkg" / "mod.py").write_bytes(b"X = 2\n")
    status = _compiled.check(build, src)
    assert not status.compiled
    assert "pkg/mod.py changed" in status.reason


def test_missing_source_makes_the_build_stale(tmp_path: Path) -> None:
    src, build = fake_build(tmp_path)
    (src / "pkg" / "mod.py").unlink()
    status = _compiled.check(build, src)
    assert not status.compiled and "pkg/mod.py is missing" in status.reason


def test_missing_extension_is_refused(tmp_path: Path) -> None:
    src, build = fake_build(tmp_path)
    (build / "lib" / "pkg" / ("mod" + _compiled.EXT_SUFFIX)).unlink()
    status = _compiled.check(build, src)
    assert not status.compiled and "incomplete build" in status.reason


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"ext_suffix": ".cpython-39-x86_64-linux-gnu.so"}, "build is for"),
        ({"version": 99}, "unknown format"),
        ({"modules": {}}, "lists no modules"),
        ({"sources": "all of them"}, "lists no modules"),
    ],
)
def test_foreign_manifest_is_refused(
    tmp_path: Path, change: dict[str, object], reason: str
) -> None:
    src, build = fake_build(tmp_path)
    path = build / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **change}))
    status = _compiled.check(build, src)
    assert not status.compiled and reason in status.reason


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", ""])
def test_unreadable_manifest_is_refused(tmp_path: Path, text: str) -> None:
    src, build = fake_build(tmp_path)
    (build / "manifest.json").write_text(text)
    status = _compiled.check(build, src)
    assert not status.compiled


def run_python(
    code: str, env_extra: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC64_")}
    env["PYTHONPATH"] = str(cwd or SRC)
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


WHICH = (
    "import rtc64, rtc64.sip.parser as p; print(p.__file__); print(rtc64._compiled.STATUS.reason)"
)


def test_pure_env_forces_sources() -> None:
    proc = run_python(WHICH, {"RTC64_PURE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        str(SRC / "rtc64" / "sip" / "parser.py"),
        "RTC64_PURE is set",
    ]


def test_compiled_env_refuses_to_run_pure(tmp_path: Path) -> None:
    proc = run_python(WHICH, {"RTC64_COMPILED": "1", "RTC64_COMPILED_DIR": str(tmp_path)})
    assert proc.returncode != 0
    assert "RTC64_COMPILED=1 but the compiled cores are not used: no compiled build" in proc.stderr


def test_compiled_run_really_is_compiled() -> None:
    """Under RTC64_COMPILED=1 (``make test``) this very process runs the compiled cores."""
    if os.environ.get("RTC64_COMPILED", "") in ("", "0"):
        pytest.skip("RTC64_COMPILED is not set")
    import rtc64.net.address  # noqa: PLC0415
    import rtc64.sip.edit  # noqa: PLC0415
    import rtc64.sip.parser  # noqa: PLC0415
    import rtc64.stun.message  # noqa: PLC0415
    import rtc64.turn.server  # noqa: PLC0415
    import rtc64.turnserver.credentials  # noqa: PLC0415

    for mod in (
        rtc64.sip.parser,
        rtc64.sip.edit,
        rtc64.net.address,
        rtc64.stun.message,
        rtc64.turn.server,
        rtc64.turnserver.credentials,
    ):
        assert str(mod.__file__).endswith(_compiled.EXT_SUFFIX), mod.__file__


@needs_build
def test_fresh_interpreter_loads_the_build() -> None:
    proc = run_python(WHICH, {})
    assert proc.returncode == 0, proc.stderr
    so, reason = proc.stdout.splitlines()
    assert so == str(BUILD / "lib" / "rtc64" / "sip" / ("parser" + _compiled.EXT_SUFFIX))
    assert reason.startswith("compiled build at")


@needs_build
def test_a_changed_source_is_never_hidden_by_the_build(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(SRC / "rtc64", src / "rtc64", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"RTC64_COMPILED_DIR": str(BUILD)}
    same = run_python(WHICH, env, cwd=src)
    assert same.returncode == 0, same.stderr
    assert same.stdout.splitlines()[0].endswith(_compiled.EXT_SUFFIX)
    uri = src / "rtc64" / "sip" / "uri.py"
    uri.write_bytes(uri.read_bytes() + b"\n# edited\n")
    edited = run_python(WHICH, env, cwd=src)
    assert edited.returncode == 0, edited.stderr
    assert edited.stdout.splitlines() == [
        str(src / "rtc64" / "sip" / "parser.py"),
        "stale build: rtc64/sip/uri.py changed since it was compiled",
    ]
    strict = run_python(WHICH, {**env, "RTC64_COMPILED": "1"}, cwd=src)
    assert strict.returncode != 0 and "rtc64/sip/uri.py changed" in strict.stderr


PARSE_CORPUS = """
import csv, sys
from pathlib import Path
from rtc64.sip.framing import parse_datagram
from rtc64.sip.edit import forward_request, forward_response
from rtc64.sip.message import Request
from rtc64.sip.serializer import serialize
corpus = Path(sys.argv[1])
with (corpus / "manifest.tsv").open(newline="") as fh:
    rows = list(csv.DictReader(fh, delimiter="\\t"))
for r in rows:
    data = (corpus / r["file"]).read_bytes()
    try:
        msg = parse_datagram(data)
    except Exception as exc:
        print(r["file"], "ERR", type(exc).__name__, exc)
        continue
    try:
        fwd = (forward_request(msg, via=b"SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK-x")
               if isinstance(msg, Request) else forward_response(msg))
    except Exception as exc:
        fwd = f"FWD-ERR {type(exc).__name__} {exc}"
    print(r["file"], repr(msg), serialize(msg), fwd)
"""


@needs_build
def test_compiled_and_pure_agree_on_the_corpus() -> None:
    corpus = ROOT / "tests" / "conformance" / "corpus"
    code = PARSE_CORPUS + "\n"
    runs = {}
    for variant, env in (("pure", {"RTC64_PURE": "1"}), ("compiled", {"RTC64_COMPILED": "1"})):
        proc = subprocess.run(
            [sys.executable, "-c", code, str(corpus)],
            capture_output=True,
            text=True,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("RTC64_")},
                "PYTHONPATH": str(SRC),
                **env,
            },
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        runs[variant] = proc.stdout.splitlines()
    assert len(runs["pure"]) > 50
    assert sum(" ERR " in line for line in runs["pure"]) > 5  # the invalid messages
    assert runs["compiled"] == runs["pure"]


STUN_CORPUS = """
import sys
sys.path.insert(0, sys.argv[1])
from vectors import VECTORS, PASSWORD
from rtc64.stun.attributes import TABLE
from rtc64.stun.message import check_integrity, decode, encode
key = PASSWORD.encode()
inputs = []
for v in VECTORS:  # each vector, every truncation and every byte flipped
    inputs += [v] + [v[:n] for n in range(len(v))]
    inputs += [v[:i] + bytes((v[i] ^ 0xFF,)) + v[i + 1:] for i in range(len(v))]
for data in inputs:
    try:
        msg = decode(data)
    except Exception as exc:
        print("ERR", type(exc).__name__, exc)
        continue
    values = []
    for t, raw in msg.attributes:
        attr = TABLE.get(t)
        try:
            values.append(repr(None if attr is None else attr.decode(raw, msg.transaction_id)))
        except Exception as exc:
            values.append(f"ERR {type(exc).__name__} {exc}")
    print(repr(msg), values, check_integrity(msg, key), encode(msg, key=key).hex())
"""


@needs_build
def test_compiled_and_pure_stun_agree_on_mutated_vectors() -> None:
    """The STUN codec, compiled and pure, on RFC 5769's vectors and ~800 mutations."""
    runs = {}
    for variant, env in (("pure", {"RTC64_PURE": "1"}), ("compiled", {"RTC64_COMPILED": "1"})):
        proc = subprocess.run(
            [sys.executable, "-c", STUN_CORPUS, str(ROOT / "tests" / "unit" / "stun")],
            capture_output=True,
            text=True,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("RTC64_")},
                "PYTHONPATH": str(SRC),
                **env,
            },
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        runs[variant] = proc.stdout.splitlines()
    assert len(runs["pure"]) > 700
    assert sum(line.startswith("ERR StunError") for line in runs["pure"]) > 100
    assert sum(" True " in line for line in runs["pure"]) >= 3  # intact vectors verify
    assert runs["compiled"] == runs["pure"]


def load_build_script() -> object:
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.spec_from_file_location(
        "build_compiled", ROOT / "scripts" / "build_compiled.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_script_compiles_the_hot_path_and_hashes_its_imports() -> None:
    mod = load_build_script()
    compiled = mod.compiled_sources()  # type: ignore[attr-defined]
    assert "rtc64/sip/parser.py" in compiled and "rtc64/net/address.py" in compiled
    assert "rtc64/sip/transaction.py" in compiled
    assert "rtc64/sip/transaction_base.py" in compiled
    for rel in ("stun/message.py", "turn/server.py", "turnserver/credentials.py"):
        assert "rtc64/" + rel in compiled  # the TURN allocation path
    assert not any(p.endswith("__init__.py") for p in compiled)
    hashed = mod.hashed_sources(compiled)  # type: ignore[attr-defined]
    # pure modules the compiled ones import are hashed too: a change there rebuilds/refuses
    for rel in ("rtc64/errors.py", "rtc64/sip/__init__.py", "rtc64/__init__.py"):
        assert rel in hashed
    assert (
        hashed["rtc64/sip/parser.py"]
        == hashlib.sha256((SRC / "rtc64" / "sip" / "parser.py").read_bytes()).hexdigest()
    )


def test_build_script_skips_without_a_compiler() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC64_")}
    env["RTC64_NO_COMPILE"] = "1"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_compiled.py")],
        capture_output=True, text=True, env=env, check=False, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 3
    assert "skipped, RTC64_NO_COMPILE is set; rtc64 runs as pure Python" in proc.stderr


@needs_build
def test_build_script_sees_a_current_build_as_up_to_date() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RTC64_")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_compiled.py")],
        capture_output=True, text=True, env=env, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stderr


def test_loading_the_build_script_leaves_the_environment_alone() -> None:
    before = dict(os.environ)
    load_build_script()
    assert dict(os.environ) == before


NATIVE_WHICH = (
    "import rtc64, rtc64.io.turn_fastpath as f; print(f.NATIVE is None); "
    "print(rtc64._compiled.NATIVE.reason)"
)


def test_no_native_env_turns_off_only_the_native_modules() -> None:
    proc = run_python(NATIVE_WHICH, {"RTC64_NO_NATIVE": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["True", "RTC64_NO_NATIVE is set"]


@needs_build
def test_compiled_env_refuses_to_run_without_the_native_modules() -> None:
    # the mypyc build is current, its "-native" sibling does not exist
    proc = run_python(NATIVE_WHICH, {"RTC64_COMPILED": "1", "RTC64_COMPILED_DIR": str(BUILD)})
    assert proc.returncode != 0
    assert "RTC64_COMPILED=1 but the native modules are not used: no compiled build" in (
        proc.stderr
    )


def test_native_build_is_used_only_when_its_sources_match(tmp_path: Path) -> None:
    """A native manifest naming a C source that changed: not used (pure path)."""
    src, build = fake_build(tmp_path)
    assert _compiled.check(build, src).compiled
    (src / "pkg" / "mod.py").write_bytes(b"X = 2\n")
    assert not _compiled.check(build, src).compiled
    assert _compiled.native_dir(SRC).parent.name == "native"


def test_compiled_run_really_uses_the_native_reader() -> None:
    if os.environ.get("RTC64_COMPILED", "") in ("", "0"):
        pytest.skip("RTC64_COMPILED is not set")
    from rtc64.io import turn_fastpath  # noqa: PLC0415

    assert turn_fastpath.NATIVE is not None
    assert str(turn_fastpath.NATIVE.__file__).endswith(_compiled.EXT_SUFFIX)
