"""Keepalives with two SIP worker processes, observed by the phones (issue 12).

Twelve scripted UDP phones on the v4 host (``kaphone.py``) register through the shared
port 5060 (the kernel picks a worker per source) and through each worker's private port,
and answer every OPTIONS. Each contact must get OPTIONS from exactly one worker (the
token in the Call-ID names it: ``W<k>Z...``), the owner of its AOR
(``keepalive.service.owner_of``), always from the shared port, whichever worker took the
REGISTER; and again after that worker is killed with SIGKILL and restarted, with no
binding removed as unreachable on the way.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from rtc64.gateway.keepalive.service import owner_of
from tests.interop.lab import V4_GW, V4_HOST, V6_GW, Lab
from tests.interop.peers import Gateway
from tests.interop.test_workers_sipp import _own_ports, _pids, _wait_log

pytestmark = pytest.mark.interop
LAB_TOOLS = ("ss",)
ROOT = Path(__file__).resolve().parents[2]

ARGS = [
    "--sip-listen", f"udp:[{V6_GW}]:5060", "--sip-listen", f"udp:{V4_GW}:5060",
    "--trusted-network", "10.64.4.0/24", "--sip-workers", "2", "--media-policy", "never",
    "--keepalive-interval", "0.5", "--keepalive-options-interval", "1",
]  # fmt: skip
CONFIG = '[sip]\ndomains = ["example.net"]\noverload_lag = 0\n[keepalive]\nmax_failures = 3\n'
USERS = [f"ka{n}" for n in range(12)]
TIMEOUT = 30.0


def _events(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _options(path: Path, since: float = 0.0) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {u: [] for u in USERS}
    for e in _events(path):
        if e["kind"] == "options" and float(e["t"]) > since:  # type: ignore[arg-type]
            out[str(e["user"])].append(e)
    return out


def _wait(what: str, check: object, gw: Gateway, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what}\n{gw.text()[-6000:]}"
        time.sleep(0.2)


def _worker_of(call_id: str) -> int:
    found = re.match(r"W(\d+)Z", call_id)
    assert found, call_id
    return int(found.group(1))


def _check_streams(seen: dict[str, list[dict[str, object]]]) -> None:
    """Every contact got OPTIONS from one worker, its AOR's owner, from port 5060."""
    for user, events in seen.items():
        workers = {_worker_of(str(e["call_id"])) for e in events}
        assert workers == {owner_of(f"sip:{user}@example.net", 2)}, (user, workers)
        assert all(e["source"] == [str(V4_GW), 5060] for e in events), (user, events)


def test_one_keepalive_stream_per_contact_across_workers_and_restarts(net: Lab, work: Path) -> None:
    owners = {owner_of(f"sip:{u}@example.net", 2) for u in USERS}
    assert owners == {0, 1}  # the users are spread over both workers
    gw = Gateway(net.gw, work, ARGS, config=CONFIG)
    log = work / "phones.jsonl"
    own = _own_ports(gw)
    routes = [f"{V4_GW}:5060"] * 6 + [own[0][4]] * 3 + [own[1][4]] * 3
    phones = [f"{u}@{6000 + n}>{routes[n]}" for n, u in enumerate(USERS)]
    phone = net.v4.popen(
        [sys.executable, "-m", "tests.interop.kaphone", str(log), str(V4_HOST), "example.net",
         *phones],
        log=work / "phones.out", cwd=ROOT,
    )  # fmt: skip
    try:

        def registered() -> bool:
            ok = {
                e["user"] for e in _events(log) if e["kind"] == "registered" and e["status"] == 200
            }
            return ok == set(USERS)

        _wait("every phone registered", registered, gw)
        _wait("3 OPTIONS each", lambda: all(len(v) >= 3 for v in _options(log).values()), gw)
        before = _options(log)
        _check_streams(before)
        for k in (1, 0):  # kill -9 each worker in turn: its contacts come back to it
            (first, *_) = _pids(gw, k)[-1:]
            os.kill(first, signal.SIGKILL)
            assert _wait_log(gw, rf"SIP worker {k} ready again"), gw.text()[-4000:]
            since = time.time()
            _wait(
                f"OPTIONS again after worker {k} restarted",
                lambda since=since: all(len(v) >= 2 for v in _options(log, since).values()),
                gw,
            )
            _check_streams(_options(log, since))
        assert "unreachable (" not in gw.text(), gw.text()[-6000:]
        assert ": removed" not in gw.text()
        # every binding is still there: the phones register again, all 200
        mark = len(_events(log))
        phone.send_signal(signal.SIGUSR1)
        _wait(
            "re-registration",
            lambda: (
                {e["user"] for e in _events(log)[mark:] if e["kind"] == "registered"} == set(USERS)
            ),
            gw,
        )
        assert "Traceback" not in gw.text(), gw.text()[-8000:]
    finally:
        phone.terminate()
        gw.stop()
