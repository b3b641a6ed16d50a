"""schemathesis against the OpenAPI document and the app on a loopback port (kept
short: a few generated cases per operation)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from rtc64.web import openapi
from rtc64.web.probes import ProbeResult
from tests.unit.web.fakes import TOKEN, V4, V6, FakeProxy, guard, serving, signalled, sources

schema = schemathesis.openapi.from_dict(openapi.document())


async def _instant(targets: Sequence[str], families: frozenset[int]) -> ProbeResult:
    return ProbeResult({"schema": "1.0"}, "<p>report</p>", 0)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    proxy = FakeProxy(calls=[signalled(b"c1", V6, V4), signalled(b"early", V4, None)])
    with serving(sources(reload=lambda: True, probe=_instant, proxy=proxy), guard()) as port:
        yield f"http://127.0.0.1:{port}"


@schema.parametrize()
@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_conforms(case: Any, base_url: str) -> None:
    # an ``aor`` string that is not a SIP URI is a 400 (the schema cannot say "a SIP URI")
    excluded = [positive_data_acceptance] if case.operation.path == "/api/registrations" else []
    # schemathesis may add a generated Host header; with a bracket in it requests' cookie
    # jar raises ValueError ("Invalid IPv6 URL") while building the ignored_auth probe,
    # which runs only on a 2xx answer (POST /api/probes: 202 or 409 by timing): a harness
    # crash, not an API answer
    for name in [n for n in case.headers or {} if n.lower() == "host"]:
        del case.headers[name]
    case.call_and_validate(
        base_url=base_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        excluded_checks=excluded,
    )


def test_document_is_served_and_complete() -> None:
    doc = openapi.document()
    assert doc["openapi"].startswith("3.")
    paths = set(doc["paths"])
    assert {
        "/api/registrations",
        "/api/calls",
        "/api/turn",
        "/api/status",
        "/api/blocks",
        "/api/blocks/unblock",
        "/api/turn-credentials",
        "/api/reload",
    } <= paths
