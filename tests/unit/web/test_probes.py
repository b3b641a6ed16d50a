"""Probe runs through the API, with a fake runner (the real one: tests/interop)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiohttp.test_utils import TestClient

from rtc64.web.probes import MAX_RUNS, ProbeResult
from tests.unit.web.fakes import TOKEN, guard, sources, with_client

Client = TestClient[Any, Any]
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class FakeRunner:
    def __init__(self, fail: bool = False) -> None:
        self.gate = asyncio.Event()
        self.calls: list[tuple[tuple[str, ...], frozenset[int]]] = []
        self.fail = fail

    async def __call__(self, targets: Sequence[str], families: frozenset[int]) -> ProbeResult:
        self.calls.append((tuple(targets), families))
        await self.gate.wait()
        if self.fail:
            raise RuntimeError("resolver exploded")
        return ProbeResult({"schema": "1.0", "targets": list(targets)}, "<p>report</p>", 1)


async def _until(client: Client, run_id: str, status: str) -> Any:
    for _ in range(100):
        body = await (await client.get(f"/api/probes/{run_id}", headers=AUTH)).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.01)
    raise AssertionError(f"run {run_id} never {status}")


def test_start_list_fetch_and_html() -> None:
    runner = FakeRunner()

    async def job(client: Client) -> None:
        body = {"targets": ["sip:example.net", "network"], "families": [6]}
        r = await client.post("/api/probes", json=body, headers=AUTH)
        assert r.status == 202
        run = await r.json()
        assert (run["status"], run["families"], run["exit_code"]) == ("running", [6], None)
        again = await client.post("/api/probes", json={"targets": ["x"]}, headers=AUTH)
        assert again.status == 409  # one run at a time
        r = await client.get(f"/api/probes/{run['id']}/html", headers=AUTH)
        assert r.status == 409
        runner.gate.set()
        done = await _until(client, run["id"], "done")
        assert done["exit_code"] == 1
        assert done["report"] == {"schema": "1.0", "targets": ["sip:example.net", "network"]}
        assert runner.calls == [(("sip:example.net", "network"), frozenset({6}))]
        listed = await (await client.get("/api/probes", headers=AUTH)).json()
        assert [r["id"] for r in listed["runs"]] == [run["id"]]
        r = await client.get(f"/api/probes/{run['id']}/html", headers=AUTH)
        assert r.status == 200
        assert await r.text() == "<p>report</p>"
        assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
        assert (await client.get("/api/probes/nope", headers=AUTH)).status == 404
        assert (await client.get("/api/probes/nope/html", headers=AUTH)).status == 404

    with_client(sources(probe=runner), guard(), job)


def test_bad_requests_and_history_bound() -> None:
    runner = FakeRunner()
    runner.gate.set()

    async def job(client: Client) -> None:
        for bad in (
            {},
            {"targets": []},
            {"targets": "sip:x"},
            {"targets": ["a b"]},
            {"targets": ["sip:\x00x"]},
            {"targets": ["x" * 300]},
            {"targets": [f"t{i}" for i in range(9)]},
            {"targets": ["sip:x"], "families": [5]},
            {"targets": ["sip:x"], "families": []},
            {"targets": ["sip:x"], "families": [True]},
            {"targets": ["sip:x"], "families": "6"},
        ):
            r = await client.post("/api/probes", json=bad, headers=AUTH)
            assert r.status == 400, bad
        for i in range(MAX_RUNS + 3):
            r = await client.post(
                "/api/probes", json={"targets": [f"sip:{i}.example"]}, headers=AUTH
            )
            assert r.status == 202
            await _until(client, (await r.json())["id"], "done")
        listed = await (await client.get("/api/probes", headers=AUTH)).json()
        assert len(listed["runs"]) == MAX_RUNS
        assert listed["runs"][0]["targets"] == [f"sip:{MAX_RUNS + 2}.example"]  # newest first

    with_client(sources(probe=runner), guard(), job)


def test_failed_run_and_no_probe() -> None:
    runner = FakeRunner(fail=True)
    runner.gate.set()

    async def job(client: Client) -> None:
        r = await client.post("/api/probes", json={"targets": ["sip:x"]}, headers=AUTH)
        failed = await _until(client, (await r.json())["id"], "failed")
        assert failed["error"] == "RuntimeError: resolver exploded"
        assert failed["report"] is None

    with_client(sources(probe=runner), guard(), job)

    async def none(client: Client) -> None:
        r = await client.post("/api/probes", json={"targets": ["sip:x"]}, headers=AUTH)
        assert r.status == 501
        assert (await client.get("/api/probes", headers=AUTH)).status == 501

    with_client(sources(), guard(), none)


def test_probe_start_needs_auth_and_csrf() -> None:
    async def job(client: Client) -> None:
        assert (await client.post("/api/probes", json={"targets": ["sip:x"]})).status == 401
        r = await client.post(
            "/api/login", json={"user": "admin", "password": "correct horse battery"}
        )
        assert r.status == 200
        assert (await client.post("/api/probes", json={"targets": ["sip:x"]})).status == 403

    with_client(sources(probe=FakeRunner()), guard(), job)
