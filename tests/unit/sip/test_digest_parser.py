"""The single-pass credentials parser (``digest._split``): one match per parameter, the
step-by-step parser (``_split_slow``) only to name what is wrong. Both must agree on every
input; well-formed values never take the slow path."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtc64.errors import RemoteProtocolError
from rtc64.sip import digest
from rtc64.sip.digest import Algorithm, parse_credentials

# RFC 3261 §22.4 / §25.1 form (the example of RFC 3665 §2.1, F3), quoted qop as sent by
# several phones, RFC 7616 §3.9.1 with SHA-256 and an opaque.
RFC3261 = (
    b'Digest username="bob", realm="biloxi.com", '
    b'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="sip:biloxi.com", qop=auth, '
    b'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
    b'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC7616 = (
    b'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
    b'algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    b'nc=00000001, cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ", qop="auth", '
    b'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
    b'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
SIPP = (  # SIPp 3.6 (no spaces after commas, unquoted algorithm)
    b'Digest username="u00001",realm="bench.test",uri="sip:bench.test",'
    b'nonce="AAABjAbcdEfGhIjKlMnOpQrStUvWxYz0123456789ab",'
    b'response="0123456789abcdef0123456789abcdef",algorithm=MD5'
)
R32 = "0" * 32


@pytest.fixture
def fast_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(value: bytes | str, what: str) -> list[digest.Param]:
        raise AssertionError(f"slow path taken for {value!r}")

    monkeypatch.setattr(digest, "_split_slow", slow)


@pytest.mark.usefixtures("fast_only")
def test_rfc_and_client_forms_take_the_single_pass() -> None:
    c = parse_credentials(RFC3261)
    assert (c.username, c.realm, c.uri, c.qop, c.nc, c.cnonce) == (
        "bob", "biloxi.com", "sip:biloxi.com", "auth", "00000001", "0a4f113b",
    )  # fmt: skip
    assert c.opaque == "5ccc069c403ebaf9f0171e9517f40e41" and c.algorithm is Algorithm.MD5
    c = parse_credentials(RFC7616)
    assert c.algorithm is Algorithm.SHA_256 and c.qop == "auth" and c.uri == "/dir/index.html"
    c = parse_credentials(SIPP)
    assert c.username == "u00001" and c.response == "0123456789abcdef0123456789abcdef"


@pytest.mark.usefixtures("fast_only")
def test_quoted_strings_escapes_commas_and_case() -> None:
    value = (
        'dIGEST\tUserName = "a\\"b\\\\c, d=e" ,realm="r,s" , nonce="n=1,2", uri="sip:r;x=\\y",'
        f' response="{R32.upper()}", x-Extra=tok, y="" '
    )
    c = parse_credentials(value)
    assert (c.username, c.realm, c.nonce, c.uri) == ('a"b\\c, d=e', "r,s", "n=1,2", "sip:r;x=y")
    assert c.response == R32 and c.params == (("x-extra", "tok"), ("y", ""))
    c = parse_credentials(f'Digest username="ü", realm="r", nonce="n", uri="u", response={R32}')
    assert c.username == "ü"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (f'Digest username="u", USERNAME="v", realm="r", nonce="n", uri="u", response="{R32}"',
         "duplicate parameter 'username'"),
        (f'Digest username="u", realm="r", nonce="n", uri="u", response="{R32}",',
         "expected a parameter name"),
        (f'Digest username="u" realm="r", nonce="n", uri="u", response="{R32}"', "expected ','"),
        ('Digest username="u\\', "quoted-string"),
        ('Digest username="a"b", realm="r"', "expected ','"),
        ("Digest username=@", "empty or bad value"),
        ("Digest =x", "expected a parameter name"),
        ("Digest\x00 username=x", "bad character after scheme"),
        ("NTLM TlRMTVNTUAAB", "unsupported authentication scheme"),
    ],
)  # fmt: skip
def test_garbage_is_a_400_naming_the_problem(value: str, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as err:
        parse_credentials(value)
    assert err.value.status == 400 and reason in err.value.reason


def _outcome(split: object, value: bytes | str) -> object:
    try:
        return split(value, "credentials")  # type: ignore[operator]
    except RemoteProtocolError as exc:
        return ("error", exc.status, exc.reason)


_PIECES = st.sampled_from(
    [
        "Digest", "digest", " ", "  ", ",", ", ", "=", " = ", '"', '\\"', "\\\\", "\\", "a",
        "username", "realm", "nonce", "qop", "nc", "auth", "MD5", "00000001", R32, "\t",
        "\r\n", "é", "\x00", "\x7f", ";", "@", "'", "~", "-", "sip:x", "%",
    ]
)  # fmt: skip


@given(st.lists(_PIECES, max_size=30).map("".join))
def test_single_pass_agrees_with_the_step_by_step_parser_on_pieces(text: str) -> None:
    assert _outcome(digest._split, text) == _outcome(digest._split_slow, text)


_NAME = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,8}", fullmatch=True)
_QUOTED = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12).map(
    lambda v: '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
)
_WS = st.sampled_from(["", " ", "\t", " \r\n "])


@given(
    _WS,
    st.lists(st.tuples(_NAME, _WS, st.one_of(_NAME, _QUOTED), _WS), min_size=1, max_size=6),
    _WS,
)
def test_single_pass_agrees_on_well_formed_lists(
    lead: str, params: list[tuple[str, str, str, str]], tail: str
) -> None:
    text = "Digest " + lead + ",".join(f"{n}{w1}={w1}{v}{w2}" for n, w1, v, w2 in params) + tail
    fast = _outcome(digest._split, text)
    assert fast == _outcome(digest._split_slow, text)
    assert not (isinstance(fast, tuple) and fast[0] == "error")
    assert len(fast) == len(params)  # type: ignore[arg-type]


@given(st.binary(max_size=120))
def test_single_pass_agrees_on_any_bytes(data: bytes) -> None:
    for value in (data, b"Digest " + data, SIPP + data, SIPP + b"," + data):
        assert _outcome(digest._split, value) == _outcome(digest._split_slow, value)
