"""Digest authentication: RFC vectors, round trips, nonces, replay, parser edges, fuzz."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import LocalProtocolError, RemoteProtocolError
from rtc64.sip.digest import (
    Algorithm,
    Challenge,
    Credentials,
    NonceCounter,
    NonceFactory,
    NonceState,
    Verdict,
    authenticate,
    challenges,
    compute_response,
    format_challenge,
    format_credentials,
    ha1,
    nonce_origin,
    parse_challenge,
    parse_credentials,
    respond,
    verify,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "example.com"
RURI = b"sip:example.com"

# RFC 2617 §3.5 (MD5, qop=auth).
RFC2617 = (
    b'Digest username="Mufasa", realm="testrealm@host.com", '
    b'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
    b'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    b'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
# RFC 7616 §3.9.1 (SHA-256, qop=auth).
RFC7616 = (
    'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
    'algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop=auth, '
    'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


# --- RFC vectors ---------------------------------------------------------------------------


def test_rfc2617_vector() -> None:
    c = parse_credentials(RFC2617)
    assert c.algorithm is Algorithm.MD5
    assert (c.qop, c.nc, c.nonce_count, c.cnonce) == ("auth", "00000001", 1, "0a4f113b")
    key = ha1("Mufasa", "testrealm@host.com", "Circle Of Life")
    assert key == "939e7578ed9e3c518a452acee763bce9"  # RFC 2617 §3.5 HA1
    kw = {"realm": "testrealm@host.com", "username": "Mufasa", "request_uri": b"/dir/index.html"}
    assert verify(c, b"GET", key, algorithms=[Algorithm.MD5], **kw)  # type: ignore[arg-type]
    bad = ha1("Mufasa", "testrealm@host.com", "Circle of Life")
    assert not verify(c, b"GET", bad, algorithms=[Algorithm.MD5], **kw)  # type: ignore[arg-type]


def test_rfc7616_sha256_vector() -> None:
    c = parse_credentials(RFC7616)
    assert c.algorithm is Algorithm.SHA_256
    key = ha1("Mufasa", "http-auth@example.org", "Circle of Life", Algorithm.SHA_256)
    assert verify(
        c, b"GET", key, realm="http-auth@example.org", username="Mufasa",
        request_uri=b"/dir/index.html",
    )  # fmt: skip
    expected = "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    assert c.response == expected
    got = compute_response(
        key, algorithm=Algorithm.SHA_256, method=b"GET", uri="/dir/index.html",
        nonce=c.nonce, qop="auth", nc="00000001", cnonce=c.cnonce,
    )  # fmt: skip
    assert got == expected


def test_rfc7616_md5_vector() -> None:
    # RFC 7616 §3.9.1, the same request with MD5.
    value = RFC7616.replace("algorithm=SHA-256", "algorithm=MD5").replace(
        "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
        "8ca523f5e9506fed4657c9700eebdbec",
    )
    c = parse_credentials(value)
    key = ha1("Mufasa", "http-auth@example.org", "Circle of Life")
    assert verify(
        c, b"GET", key, realm="http-auth@example.org", username="Mufasa",
        request_uri=b"/dir/index.html",
    )  # fmt: skip


def test_verify_checks_identity_uri_algorithm_and_opaque() -> None:
    c = parse_credentials(RFC7616)
    key = ha1("Mufasa", "http-auth@example.org", "Circle of Life", Algorithm.SHA_256)
    base = {
        "realm": "http-auth@example.org",
        "username": "Mufasa",
        "request_uri": b"/dir/index.html",
    }

    def ok(**changes: object) -> bool:
        return verify(c, b"GET", key, **{**base, **changes})  # type: ignore[arg-type]

    assert ok()
    assert ok(opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
    assert not ok(opaque="other")
    assert not ok(realm="other")
    assert not ok(username="mufasa")
    assert not ok(request_uri=b"/dir/other.html")
    assert not ok(algorithms=[Algorithm.MD5])
    assert not verify(c, b"POST", key, **base)  # type: ignore[arg-type]


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(Algorithm))
def test_round_trip_each_algorithm(algorithm: Algorithm) -> None:
    nonces = NonceFactory(SECRET)
    nonce = nonces.issue(1000.0)
    [value] = challenges(REALM, nonce, algorithms=[algorithm], opaque="op")
    chal = parse_challenge(value)
    assert (chal.realm, chal.nonce, chal.algorithm, chal.opaque) == (REALM, nonce, algorithm, "op")
    assert chal.qop == ("auth",)
    cred = respond(
        chal, username="alice", password="s3cret", method=b"REGISTER", uri="sip:example.com"
    )
    wire = format_credentials(cred)
    parsed = parse_credentials(wire)
    assert parsed == cred
    stored = ha1("alice", REALM, "s3cret", algorithm)
    counter = NonceCounter(lifetime=300)
    kw = {
        "realm": REALM, "username": "alice", "request_uri": RURI, "nonces": nonces,
        "lifetime": 300.0, "counter": counter, "algorithms": list(Algorithm), "opaque": "op",
    }  # fmt: skip
    assert authenticate(parsed, b"REGISTER", stored, now=1001.0, **kw) is Verdict.OK  # type: ignore[arg-type]
    # The same request again is a replay of nc=1.
    assert authenticate(parsed, b"REGISTER", stored, now=1002.0, **kw) is Verdict.STALE  # type: ignore[arg-type]
    wrong = ha1("alice", REALM, "guess", algorithm)
    assert authenticate(parsed, b"REGISTER", wrong, now=1002.0, **kw) is Verdict.FAILED  # type: ignore[arg-type]
    assert authenticate(parsed, b"REGISTER", stored, now=1400.0, **kw) is Verdict.STALE  # type: ignore[arg-type]


def test_rfc2069_client_without_qop() -> None:
    nonces = NonceFactory(SECRET)
    chal = Challenge(REALM, nonces.issue(5.0), Algorithm.MD5, qop=())
    value = format_challenge(chal)
    assert b"qop" not in value
    cred = respond(
        parse_challenge(value),
        username="bob",
        password="pw",
        method=b"INVITE",
        uri="sip:carol@example.com",
    )
    assert cred.qop is None and cred.nc is None and cred.cnonce is None
    parsed = parse_credentials(format_credentials(cred))
    key = ha1("bob", REALM, "pw")
    kw = {"realm": REALM, "username": "bob", "request_uri": b"sip:carol@example.com"}
    assert verify(parsed, b"INVITE", key, **kw)  # type: ignore[arg-type]
    assert not verify(parsed, b"INVITE", key, require_qop=True, **kw)  # type: ignore[arg-type]


def test_wrong_password_is_false() -> None:
    chal = parse_challenge(challenges(REALM, "abc")[0])
    cred = respond(
        chal, username="alice", password="wrong", method=b"REGISTER", uri="sip:example.com"
    )
    key = ha1("alice", REALM, "right", Algorithm.SHA_256)
    assert not verify(cred, b"REGISTER", key, realm=REALM, username="alice", request_uri=RURI)


def test_challenges_in_server_preference_order_and_stale() -> None:
    default = challenges(REALM, "n0")
    assert [parse_challenge(v).algorithm for v in default] == [Algorithm.SHA_256, Algorithm.MD5]
    values = challenges(REALM, "n0", algorithms=[Algorithm.SHA_256, Algorithm.MD5], stale=True)
    assert all(parse_challenge(v).stale for v in values)
    legacy = challenges(REALM, "n0", algorithms=[Algorithm.MD5, Algorithm.SHA_256, Algorithm.MD5])
    assert [parse_challenge(v).algorithm for v in legacy] == [Algorithm.MD5, Algorithm.SHA_256]
    assert (
        values[0]
        == b'Digest realm="example.com", nonce="n0", algorithm=SHA-256, qop="auth", stale=true'
    )
    assert b"stale" not in challenges(REALM, "n0")[0]
    with pytest.raises(LocalProtocolError):
        challenges(REALM, "n0", algorithms=[])


def test_challenge_quotes_realm_and_refuses_control_characters() -> None:
    value = format_challenge(Challenge('a "quoted" \\ realm', "n"))
    assert value.startswith(b'Digest realm="a \\"quoted\\" \\\\ realm"')
    assert parse_challenge(value).realm == 'a "quoted" \\ realm'
    with pytest.raises(LocalProtocolError):
        format_challenge(Challenge("evil\r\nVia: x", "n"))


def test_utf8_username_round_trip() -> None:
    chal = parse_challenge(challenges(REALM, "n")[0])
    cred = respond(
        chal, username="zoë", password="pässword", method=b"REGISTER", uri="sip:example.com"
    )
    parsed = parse_credentials(format_credentials(cred))
    assert parsed.username == "zoë"
    key = ha1("zoë", REALM, "pässword", Algorithm.SHA_256)
    assert verify(parsed, b"REGISTER", key, realm=REALM, username="zoë", request_uri=RURI)


# --- nonces --------------------------------------------------------------------------------


def test_nonce_valid_stale_invalid() -> None:
    f = NonceFactory(SECRET)
    n = f.issue(100.0)
    assert len(n) == 43
    assert f.check(n, 100.0, 30) is NonceState.VALID
    assert f.check(n, 130.0, 30) is NonceState.VALID
    assert f.check(n, 130.5, 30) is NonceState.STALE
    assert f.check(n, 97.0, 30) is NonceState.STALE  # from too far in the future
    assert f.issued_at(n) == 100.0
    assert f.issue(100.0) != n  # random part


def test_nonce_forged_or_garbled_is_invalid() -> None:
    f = NonceFactory(SECRET)
    n = f.issue(100.0)
    other = NonceFactory(b"another secret, sixteen+ bytes").issue(100.0)
    assert f.check(other, 100.0, 30) is NonceState.INVALID
    raw = bytearray(base64.urlsafe_b64decode(n + "="))
    raw[7] ^= 1  # move the time stamp
    moved = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert f.check(moved, 100.0, 30) is NonceState.INVALID
    for garbled in ("", "x", n[:-1], n + "A", n[:-1] + "!", "dcd98b7102dd2f0e8b11d0f600bfb0c093"):
        assert f.check(garbled, 100.0, 30) is NonceState.INVALID
    # A non-canonical spelling of the last character (unused low bits) is refused.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(n[-1])
    twin = n[:-1] + alphabet[last ^ 1]
    assert f.check(twin, 100.0, 30) is NonceState.INVALID


def test_nonce_shared_secret_bind_and_rotation() -> None:
    a, b = NonceFactory(SECRET), NonceFactory(SECRET)
    n = a.issue(50.0, bind=b"realm-1")
    assert b.check(n, 51.0, 30, bind=b"realm-1") is NonceState.VALID
    assert b.check(n, 51.0, 30) is NonceState.INVALID
    rotated = NonceFactory(b"a brand new secret of 32 bytes!!", previous=[SECRET])
    assert rotated.check(a.issue(50.0), 51.0, 30) is NonceState.VALID
    with pytest.raises(LocalProtocolError):
        NonceFactory(b"short")
    with pytest.raises(LocalProtocolError):
        a.issue(-1.0)


def test_authenticate_bad_nonce_is_not_a_failure() -> None:
    nonces = NonceFactory(SECRET)
    chal = Challenge(REALM, "not-ours", Algorithm.SHA_256)
    cred = respond(chal, username="alice", password="pw", method=b"REGISTER", uri="sip:example.com")
    verdict = authenticate(
        cred, b"REGISTER", ha1("alice", REALM, "pw", Algorithm.SHA_256), realm=REALM,
        username="alice", request_uri=RURI, nonces=nonces, now=1.0, lifetime=30,
    )  # fmt: skip
    assert verdict is Verdict.BAD_NONCE


def test_stale_only_with_right_password() -> None:
    nonces = NonceFactory(SECRET)
    chal = Challenge(REALM, nonces.issue(0.0), Algorithm.SHA_256)
    kw = {"realm": REALM, "username": "alice", "request_uri": RURI, "nonces": nonces}
    good = respond(chal, username="alice", password="pw", method=b"REGISTER", uri="sip:example.com")
    bad = respond(chal, username="alice", password="no", method=b"REGISTER", uri="sip:example.com")
    key = ha1("alice", REALM, "pw", Algorithm.SHA_256)
    assert authenticate(good, b"REGISTER", key, now=999.0, lifetime=30, **kw) is Verdict.STALE  # type: ignore[arg-type]
    assert authenticate(bad, b"REGISTER", key, now=999.0, lifetime=30, **kw) is Verdict.FAILED  # type: ignore[arg-type]


# --- nonce-count replay --------------------------------------------------------------------


def test_nonce_counter_rejects_replay_and_reorder() -> None:
    c = NonceCounter(lifetime=300)
    assert c.accept("n1", 1, 0.0, 1.0)
    assert not c.accept("n1", 1, 0.0, 2.0)
    assert c.accept("n1", 2, 0.0, 3.0)
    assert c.accept("n1", 5, 0.0, 3.0)
    assert not c.accept("n1", 4, 0.0, 3.0)
    assert c.accept("n2", 1, 0.0, 3.0)


def test_nonce_counter_is_bounded_and_eviction_never_reopens_replay() -> None:
    c = NonceCounter(lifetime=300, max_entries=100)
    for i in range(1000):
        assert c.accept(f"n{i}", 1, float(i) / 10, float(i) / 10)
        assert len(c) <= 100
    assert c.evictions == 900
    # n0 was evicted: replaying it is still refused (issued before the watermark).
    assert not c.accept("n0", 1, 0.0, 100.0)
    # A nonce issued after the watermark is fine.
    assert c.accept("fresh", 1, 100.0, 100.0)


def test_nonce_counter_forgets_expired_nonces() -> None:
    c = NonceCounter(lifetime=10)
    for i in range(50):
        c.accept(f"n{i}", 1, 0.0, 0.0)
    c.accept("late", 1, 100.0, 100.0)
    assert len(c) == 1
    assert c.evictions == 0


# --- parser edges and errors ---------------------------------------------------------------


def test_parser_tolerances() -> None:
    value = (
        b'  dIgEsT  USERNAME = "alice" ,REALM="example.com",Nonce="n", uri="sip:example.com",'
        b'\t response="' + b"A" * 64 + b'" , Algorithm="sha-256", QOP="auth", nc=0000000A,'
        b' cnonce=tok-en, userhash=false, extra="x\\"y"  '
    )
    c = parse_credentials(value)
    assert (c.username, c.realm, c.nonce, c.uri) == ("alice", "example.com", "n", "sip:example.com")
    assert c.response == "a" * 64
    assert c.algorithm is Algorithm.SHA_256
    assert (c.qop, c.nc, c.nonce_count, c.cnonce) == ("auth", "0000000A", 10, "tok-en")
    assert c.params == (("userhash", "false"), ("extra", 'x"y'))


def test_credentials_default_algorithm_is_md5() -> None:
    c = parse_credentials(
        'Digest username="u", realm="r", nonce="n", uri="sip:r", response="' + "0" * 32 + '"'
    )
    assert c.algorithm is Algorithm.MD5 and c.qop is None and c.nonce_count is None


GOOD = 'username="u", realm="r", nonce="n", uri="sip:r", response="' + "0" * 32 + '"'


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "no authentication scheme"),
        ("Digest", "no parameters"),
        ("Digest   ", "no parameters"),
        ("Basic dXNlcjpwYXNz", "unsupported authentication scheme 'Basic'"),
        ('Basic realm="x"', "unsupported authentication scheme"),
        ('Digest"x"', "bad character after scheme"),
        ('Digest realm="r", realm="r", ' + GOOD.replace('realm="r", ', ""), "duplicate"),
        ('Digest REALM="r", ' + GOOD, "duplicate parameter 'realm'"),
        ('Digest username="u", realm="r", nonce="n", uri="sip:r"', "missing parameter 'response'"),
        ('Digest realm="r", nonce="n", uri="sip:r", response="' + "0" * 32 + '"', "'username'"),
        ("Digest " + GOOD + ",", "expected a parameter name"),
        ("Digest " + GOOD + ",,", "expected a parameter name"),
        ("Digest ," + GOOD, "expected a parameter name"),
        ("Digest " + GOOD + " qop", "expected ','"),
        ("Digest " + GOOD + ", qop", "has no value"),
        ("Digest " + GOOD + ", qop=", "empty or bad value"),
        ('Digest username="u, realm="r"', "expected ','"),
        ('Digest username="unterminated', "quoted-string"),
        ('Digest username="a\\', "quoted-string"),
        ('Digest username="a\x00b", ' + GOOD[13:], "quoted-string"),
        ('Digest username="a\r\nb", ' + GOOD[13:], "quoted-string"),
        ("Digest " + GOOD.replace("0" * 32, "0" * 31), "response is not 32 hex digits"),
        ("Digest " + GOOD.replace("0" * 32, "g" * 32), "response is not 32 hex digits"),
        ("Digest " + GOOD + ", algorithm=SHA-256", "response is not 64 hex digits"),
        ("Digest " + GOOD + ", algorithm=SHA-512-256", "unsupported digest algorithm"),
        ("Digest " + GOOD + ", qop=auth", "qop needs both nc and cnonce"),
        ("Digest " + GOOD + ', qop=auth, nc=1, cnonce="c"', "nc is not 8 hex digits"),
        ("Digest " + GOOD + ", nc=00000001", "nc without qop"),
        ("Digest " + GOOD + ', qop="a b", nc=00000001, cnonce="c"', "bad qop value"),
        ("Digest " + GOOD + ", algorithm=MD5-sess", "needs a cnonce"),
    ],
)
def test_bad_credentials(value: str, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        parse_credentials(value)
    assert err.value.status == 400
    assert reason in err.value.reason


def test_bad_utf8() -> None:
    with pytest.raises(RemoteProtocolError, match="not UTF-8"):
        parse_credentials(b'Digest username="\xff", ' + GOOD[13:].encode())


def test_auth_int_never_verifies() -> None:
    c = parse_credentials("Digest " + GOOD + ', qop=auth-int, nc=00000001, cnonce="c"')
    assert c.qop == "auth-int"
    assert not verify(c, b"INVITE", "0" * 32, realm="r", username="u", request_uri=b"sip:r")


def test_challenge_parse_errors_and_client_refusals() -> None:
    with pytest.raises(RemoteProtocolError, match="missing parameter 'nonce'"):
        parse_challenge('Digest realm="r"')
    with pytest.raises(RemoteProtocolError, match="unsupported authentication scheme"):
        parse_challenge('Bearer realm="r"')
    chal = parse_challenge('Digest realm="r", nonce="n", qop="auth-int", algorithm=MD5')
    assert chal.qop == ("auth-int",)
    with pytest.raises(LocalProtocolError):
        respond(chal, username="u", password="p", method=b"INVITE", uri="sip:r")
    chal = parse_challenge(
        'Digest realm="r", nonce="n", qop="auth-int, auth", stale=TRUE, domain="sip:r"'
    )
    assert chal.qop == ("auth-int", "auth") and chal.stale and chal.params == (("domain", "sip:r"),)


# --- fuzz ----------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        "Digest", " ", ",", "=", '"', "\\", "username", "realm", "nonce", "uri", "response",
        "algorithm", "qop", "nc", "cnonce", "opaque", "auth", "MD5", "SHA-256-sess",
        "00000001", "0" * 32, "0" * 64, "\t", "\r\n", "é", "\x00",
    ]
)  # fmt: skip


@given(st.lists(_PIECES, max_size=40).map("".join))
def test_fuzz_credentials_from_pieces(text: str) -> None:
    try:
        c = parse_credentials(text)
    except RemoteProtocolError:
        return
    assert isinstance(c, Credentials)
    assert parse_credentials(format_credentials(c)) == c


@given(st.binary(max_size=200))
def test_fuzz_credentials_bytes(data: bytes) -> None:
    for value in (data, b"Digest " + data, b"Digest " + GOOD.encode() + data):
        with contextlib.suppress(RemoteProtocolError):
            parse_credentials(value)
        with contextlib.suppress(RemoteProtocolError):
            parse_challenge(value)


@given(st.text(max_size=30), st.text(max_size=30), st.text(max_size=30))
def test_fuzz_round_trip_values(username: str, realm: str, password: str) -> None:
    chal = Challenge(realm, "n", Algorithm.SHA_256)
    try:
        value = format_challenge(chal)
    except LocalProtocolError:
        return  # control characters are refused on output
    cred = respond(
        parse_challenge(value), username=username, password=password, method=b"MESSAGE", uri="sip:x"
    )
    try:
        wire = format_credentials(cred)
    except LocalProtocolError:
        return
    parsed = parse_credentials(wire)
    key = ha1(username, realm, password, Algorithm.SHA_256)
    assert verify(parsed, b"MESSAGE", key, realm=realm, username=username, request_uri=b"sip:x")


def test_lone_surrogate_in_str_input_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="not UTF-8"):
        parse_credentials('Digest username="\udcff", ' + GOOD[13:])


@pytest.mark.parametrize("algorithm", [Algorithm.MD5_SESS, Algorithm.SHA_256_SESS])
def test_session_algorithm_without_qop(algorithm: Algorithm) -> None:
    chal = Challenge(REALM, "n", algorithm, qop=())
    cred = respond(chal, username="u", password="p", method=b"BYE", uri="sip:x", cnonce="c0")
    parsed = parse_credentials(format_credentials(cred))
    assert (parsed.qop, parsed.cnonce) == (None, "c0")
    key = ha1("u", REALM, "p", algorithm)
    assert verify(
        parsed, b"BYE", key, realm=REALM, username="u", request_uri=b"sip:x",
        algorithms=[algorithm],
    )  # fmt: skip


def test_a_worker_origin_is_written_in_the_nonce_and_read_back_without_the_secret() -> None:
    secret = b"k" * 32
    for origin in (0, 1, 7, 255):
        factory = NonceFactory(secret, origin=origin)
        nonce = factory.issue(1000.0)
        assert nonce_origin(nonce) == origin
        assert factory.check(nonce, 1000.0, 300) is NonceState.VALID  # still authentic
        assert NonceFactory(secret).check(nonce, 1000.0, 300) is NonceState.VALID
    assert nonce_origin("not a nonce") is None and nonce_origin("A" * 44) is None
    with pytest.raises(LocalProtocolError):
        NonceFactory(secret, origin=256)


def test_a_counter_started_later_refuses_older_nonces_as_replays() -> None:
    """After a (worker) restart the counts seen before are gone: nonces issued before
    the start are refused (stale, the client retries with a fresh one); newer ones count."""
    counter = NonceCounter(300.0, since=1000.0)
    assert not counter.accept("old", 1, issued=999.5, now=1001.0)
    assert counter.accept("new", 1, issued=1000.5, now=1001.0)
    assert not counter.accept("new", 1, issued=1000.5, now=1001.0)
