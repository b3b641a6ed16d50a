"""Who may do what: the attacker's view of the console and the API."""

from __future__ import annotations

import asyncio
from ipaddress import ip_address
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from rtc64.errors import ConfigError
from rtc64.web import auth
from rtc64.web.app import WebSettings, start_web
from tests.unit.web.fakes import TOKEN, TURN_TOKEN, guard, sources, with_client

Client = TestClient[Any, Any]
PROTECTED = [
    "/api/overview",
    "/api/registrations",
    "/api/calls",
    "/api/turn",
    "/api/status",
    "/api/blocks",
    "/api/history",
    "/metrics",
    "/api/events",
]


async def login(client: Client, password: str = "correct horse battery") -> str:
    r = await client.post("/api/login", json={"user": "admin", "password": password})
    assert r.status == 200, await r.text()
    return str((await r.json())["csrf"])


def test_no_session_is_401_everywhere_protected() -> None:
    async def job(client: Client) -> None:
        for path in PROTECTED:
            r = await client.get(path)
            assert r.status == 401, path
            assert (await r.json())["error"] == "authentication required"
        r = await client.post("/api/blocks/unblock", json={"target": "192.0.2.1"})
        assert r.status == 401
        r = await client.get("/api/turn-credentials?username=alice")
        assert r.status == 401

    with_client(sources(), guard(), job)


def test_public_paths_need_nothing() -> None:
    async def job(client: Client) -> None:
        for path in ("/", "/static/console.js", "/api/session", "/api/openapi.json"):
            assert (await client.get(path)).status == 200, path
        body = await (await client.get("/api/session")).json()
        assert body == {"authenticated": False, "open": False, "csrf": None}

    with_client(sources(), guard(), job)


def test_wrong_token_is_401_and_turn_token_is_turn_credentials_only() -> None:
    async def job(client: Client) -> None:
        bad = {"Authorization": "Bearer " + TOKEN[:-1] + "x"}
        assert (await client.get("/api/calls", headers=bad)).status == 401
        turn = {"Authorization": f"Bearer {TURN_TOKEN}"}
        for path in PROTECTED:
            r = await client.get(path, headers=turn)
            assert r.status == 403, path
        r = await client.post("/api/blocks/unblock", json={"target": "x"}, headers=turn)
        assert r.status == 403
        r = await client.get("/api/turn-credentials?username=alice", headers=turn)
        assert r.status == 200
        full = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/api/calls", headers=full)).status == 200
        assert (await client.get("/api/turn-credentials?username=a", headers=full)).status == 200

    with_client(sources(), guard(), job)


def test_bearer_needs_no_csrf_but_a_session_does() -> None:
    async def job(client: Client) -> None:
        full = {"Authorization": f"Bearer {TOKEN}"}
        r = await client.post("/api/blocks/unblock", json={"target": "192.0.2.1"}, headers=full)
        assert r.status == 200
        csrf = await login(client)
        r = await client.post("/api/blocks/unblock", json={"target": "192.0.2.1"})
        assert r.status == 403
        assert "X-CSRF-Token" in (await r.json())["error"]
        wrong = {auth.CSRF_HEADER: csrf[:-2] + "zz"}
        r = await client.post("/api/blocks/unblock", json={"target": "192.0.2.1"}, headers=wrong)
        assert r.status == 403
        r = await client.post(
            "/api/blocks/unblock", json={"target": "192.0.2.1"}, headers={auth.CSRF_HEADER: csrf}
        )
        assert r.status == 200
        assert (await client.post("/api/logout")).status == 403  # logout needs CSRF too
        assert (await client.post("/api/logout", headers={auth.CSRF_HEADER: csrf})).status == 200
        assert (await client.get("/api/calls")).status == 401

    with_client(sources(), guard(), job)


def test_login_cookie_flags_and_wrong_password() -> None:
    async def job(client: Client) -> None:
        r = await client.post("/api/login", json={"user": "admin", "password": "wrong"})
        assert r.status == 401
        r = await client.post(
            "/api/login", json={"user": "root", "password": "correct horse battery"}
        )
        assert r.status == 401
        r = await client.post(
            "/api/login", json={"user": "admin", "password": "correct horse battery"}
        )
        assert r.status == 200
        cookie = r.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain HTTP test server: Secure only over HTTPS
        assert (await client.get("/api/calls")).status == 200
        session = await (await client.get("/api/session")).json()
        assert session["authenticated"] is True
        assert session["csrf"]

    with_client(sources(), guard(), job)


def test_login_demands_json_and_is_throttled() -> None:
    async def job(client: Client) -> None:
        r = await client.post(
            "/api/login",
            data="user=admin&password=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status == 415  # a cross-site form cannot post JSON without a preflight
        for _ in range(auth.LOGIN_FAILURES):
            r = await client.post("/api/login", json={"user": "admin", "password": "guess"})
            assert r.status == 401
        r = await client.post(
            "/api/login", json={"user": "admin", "password": "correct horse battery"}
        )
        assert r.status == 429

    with_client(sources(), guard(), job)


def test_forged_session_cookie_is_401() -> None:
    async def job(client: Client) -> None:
        client.session.cookie_jar.update_cookies({auth.SESSION_COOKIE: "forged"})
        assert (await client.get("/api/calls")).status == 401

    with_client(sources(), guard(), job)


def test_open_console_checks_host_and_csrf() -> None:
    g = guard(admin=False, token="")
    assert g.open

    async def job(client: Client) -> None:
        assert (await client.get("/api/calls")).status == 200
        r = await client.get("/api/calls", headers={"Host": "rebound.attacker.example:8064"})
        assert r.status == 403
        r = await client.post("/api/blocks/unblock", json={"target": "192.0.2.1"})
        assert r.status == 403
        csrf = (await (await client.get("/api/session")).json())["csrf"]
        r = await client.post(
            "/api/blocks/unblock", json={"target": "192.0.2.1"}, headers={auth.CSRF_HEADER: csrf}
        )
        assert r.status == 200

    with_client(sources(), g, job)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.1", "2001:db8::1"])
def test_non_loopback_without_credentials_refused(address: str) -> None:
    with pytest.raises(ConfigError) as err:
        auth.check_listen(ip_address(address), credentials=False)
    assert err.value.key == "web.listen"
    auth.check_listen(ip_address(address), credentials=True)
    auth.check_listen(ip_address("::1"), credentials=False)
    auth.check_listen(ip_address("127.0.0.1"), credentials=False)


def test_start_web_refuses_before_binding() -> None:
    g = guard(admin=False, token="", turn_token=TURN_TOKEN)  # a TURN token opens nothing
    with pytest.raises(ConfigError):
        asyncio.run(start_web(WebSettings("0.0.0.0", 0, None, 60), sources(), g))


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("127.0.0.1:8064", True),
        ("[::1]:8064", True),
        ("localhost", True),
        ("::1", True),
        ("evil.example", False),
        ("127.0.0.1.evil.example", False),
        ("[2001:db8::1]:1", False),
        ("", False),
        (None, False),
    ],
)
def test_loopback_host(host: str | None, ok: bool) -> None:
    assert auth.loopback_host(host) is ok


def test_security_headers() -> None:
    async def job(client: Client) -> None:
        r = await client.get("/")
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert (await client.get("/static/..%2Fapp.py")).status == 404
        assert (await client.get("/static/app.py")).status == 404

    with_client(sources(), guard(), job)


def test_port_in_use_is_a_config_error() -> None:
    async def main() -> None:
        first = await start_web(WebSettings("127.0.0.1", 0, None, 60), sources(), guard())
        try:
            with pytest.raises(ConfigError) as err:
                await start_web(WebSettings("127.0.0.1", first.port, None, 60), sources(), guard())
            assert err.value.key == "web.listen"
            assert "address to bind" in str(err.value)
        finally:
            await first.stop()

    asyncio.run(main())
