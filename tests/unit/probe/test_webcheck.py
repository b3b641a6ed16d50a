"""Web probe decisions: answers, redirects, hosts a page reveals, content parity."""

from __future__ import annotations

import random

import pytest

from rtc64.probe import webcheck as wc
from rtc64.probe.verdict import Aspect

PAGE = b"""<html><script>
const signalling = "wss://signal.example.net/ws";
const ice = [{urls: "turn:turn.example.net:3478?transport=udp"}, {urls: "stun:192.0.2.9"}];
</script><a href="https://cdn.example.net/app.js">x</a></html>"""


def test_a_redirect_answer_and_its_target() -> None:
    raw = b"HTTP/1.1 302 Found\r\nLocation: http://login.example.net/sso?x=1\r\n\r\n"
    answer = wc.read_answer(raw)
    assert answer is not None and answer.status == 302
    assert wc.redirect_target("https://meet.example.net/", answer) == (
        "http://login.example.net/sso?x=1"
    )
    relative = wc.read_answer(b"HTTP/1.0 301 Moved\r\nlocation: /login\r\n\r\n")
    assert relative is not None
    assert wc.redirect_target("https://a.example/x", relative) == "https://a.example/login"


def test_chunked_bodies_are_joined() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n"
    answer = wc.read_answer(raw)
    assert answer is not None and answer.body == b"abcdef"


def test_not_http_is_none() -> None:
    assert wc.read_answer(b"SSH-2.0-OpenSSH\r\n") is None


def test_the_page_reveals_signalling_ice_and_web_hosts() -> None:
    found = {(n.host, n.aspect) for n in wc.revealed(PAGE, "https://meet.example.net/")}
    assert ("signal.example.net", Aspect.SIGNALLING) in found
    assert ("turn.example.net", Aspect.MEDIA) in found
    assert ("192.0.2.9", Aspect.MEDIA) in found
    assert ("cdn.example.net", Aspect.WEB) in found


def test_revealed_hosts_are_capped() -> None:
    page = b" ".join(b"https://h%d.example.net/" % i for i in range(100))
    assert len(wc.revealed(page, "p")) == wc.MAX_HOSTS


def test_websocket_upgrade_request() -> None:
    data, key = wc.request("https://signal.example.net/ws?room=1", websocket=True)
    assert data.startswith(b"GET /ws?room=1 HTTP/1.1\r\nHost: signal.example.net\r\n")
    assert b"Upgrade: websocket" in data and key.encode() in data


def test_parity_tolerates_small_differences_only() -> None:
    a = wc.HttpAnswer(200, (), b"x" * 1000)
    assert wc.similar(a, wc.HttpAnswer(200, (), b"x" * 1050))
    assert not wc.similar(a, wc.HttpAnswer(200, (), b"x" * 500))
    assert not wc.similar(a, wc.HttpAnswer(403, (), b"x" * 1000))


@pytest.mark.parametrize("seed", range(20))
def test_hostile_http_answers_never_raise(seed: int) -> None:
    rng = random.Random(seed)
    base = bytearray(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwss://a\r\n0\r\n")
    for _ in range(rng.randint(1, 20)):
        base[rng.randrange(len(base))] = rng.randrange(256)
    for data in (
        bytes(base),
        rng.randbytes(rng.randint(0, 400)),
        b"HTTP/1.1 200 OK\r\n\r\n" + b"f" * 50,
    ):
        answer = wc.read_answer(data)
        if answer is not None:
            wc.revealed(answer.body, "p")
            wc.redirect_target("http://x/", answer)
    assert wc.dechunk(b"fffffffffffffffff\r\nab") == b"ab"
