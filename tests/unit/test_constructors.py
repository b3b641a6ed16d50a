"""Value classes with a written-out ``__init__`` (``@dataclass(..., init=False)``).

A dataclass-generated ``__init__`` is interpreted Python even in a module mypyc compiles
(and calls ``object.__setattr__`` once per field of a frozen class); the per-message and
per-call classes therefore write theirs out. These tests keep each such ``__init__`` equal
to what the dataclass would generate (same parameters in field order, same defaults, every
field set, a fresh value per ``default_factory``), keep the dataclass behaviour callers
rely on (equality, hashing, ``replace``, frozen instances), and, in a compiled run, check
that the build really constructs them natively.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import inspect
import ipaddress
import pickle
import pkgutil
import types
from typing import Any

import pytest

from rtc64 import _compiled
from rtc64.gateway.proxy import router
from rtc64.net.endpoint import BoundListener, Flow, Transport, parse_listen
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request
from rtc64.sip.uri import SipUri
from rtc64.sip.via import Via

PACKAGES = ("rtc64.sip", "rtc64.net", "rtc64.gateway.proxy")
HOT = {
    "rtc64.sip.via": ("Via",),
    "rtc64.sip.message": ("CSeq", "Request", "Response"),
    "rtc64.sip.nameaddr": ("NameAddr",),
    "rtc64.sip.uri": ("SipUri",),
    "rtc64.sip.peek": ("RawRequest", "RawResponse"),
    "rtc64.sip.parser": ("Head",),
    "rtc64.sip.digest": ("Credentials", "Challenge"),
    "rtc64.net.endpoint": ("Flow",),
    "rtc64.gateway.proxy.hops": ("Hop", "FlowToken"),
    "rtc64.gateway.proxy.router": ("Target", "Forward", "Register", "Admit", "Authenticate"),
    "rtc64.gateway.proxy.forking": ("Branch", "ResponseContext"),
    "rtc64.gateway.proxy.branches": ("Pending", "Plan", "Leg", "Launch"),
    "rtc64.gateway.proxy.dialogs": ("Dialog",),
}
"""Classes built per datagram, per call or per REGISTER (counted with bench.gwcount)."""


def written_out() -> list[type]:
    """Every dataclass with ``init=False`` defined in the packages above."""
    found: list[type] = []
    for pkg_name in PACKAGES:
        pkg = importlib.import_module(pkg_name)
        for info in pkgutil.iter_modules(pkg.__path__, pkg_name + "."):
            mod = importlib.import_module(info.name)
            for obj in vars(mod).values():
                if (
                    isinstance(obj, type)
                    and obj.__module__ == info.name
                    and dataclasses.is_dataclass(obj)
                    and not obj.__dataclass_params__.init  # type: ignore[attr-defined]
                ):
                    found.append(obj)
    return found


WRITTEN_OUT = written_out()
PURE = not (_compiled.STATUS is not None and _compiled.STATUS.compiled)


def test_hot_classes_write_their_init_out() -> None:
    names = {f"{c.__module__}.{c.__qualname__}" for c in WRITTEN_OUT}
    for mod, classes in HOT.items():
        for cls in classes:
            assert f"{mod}.{cls}" in names, f"{mod}.{cls} uses a generated __init__"


@pytest.mark.skipif(not PURE, reason="signatures are read from the Python sources")
@pytest.mark.parametrize("cls", WRITTEN_OUT, ids=lambda c: c.__qualname__)
def test_init_matches_the_fields(cls: type) -> None:
    fields = dataclasses.fields(cls)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in fields]
    for p, f in zip(params, fields, strict=True):
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, p
        if f.default is not dataclasses.MISSING:
            assert p.default == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert p.default is None, f.name
        else:
            assert p.default is inspect.Parameter.empty, f.name
    # every field is set from its own argument, positionally and by keyword
    marks = {f.name: object() for f in fields}
    for obj in (cls(*marks.values()), cls(**marks)):
        assert {f.name: getattr(obj, f.name) for f in fields} == marks
    # omitted arguments take the field's default; a factory's value is fresh each time
    required = {f.name: marks[f.name] for f in fields if p_required(f)}
    one, two = cls(**required), cls(**required)
    for f in fields:
        if f.default is not dataclasses.MISSING:
            assert getattr(one, f.name) == f.default, f.name
        elif f.default_factory is not dataclasses.MISSING:
            assert getattr(one, f.name) == f.default_factory(), f.name
            assert getattr(one, f.name) is not getattr(two, f.name), f.name


def p_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


@pytest.mark.skipif(PURE, reason="a compiled run only")
def test_compiled_classes_construct_natively() -> None:
    assert _compiled.STATUS is not None
    compiled = set(_compiled.STATUS.modules)
    assert set(HOT) <= compiled  # scripts/build_compiled.py compiles every module above
    for cls in WRITTEN_OUT:
        if cls.__module__ in compiled:
            assert not isinstance(vars(cls)["__init__"], types.FunctionType), cls


INVITE = (
    b"INVITE sip:bob@192.0.2.50:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bK-1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@198.51.100.7>;tag=a1\r\n"
    b"To: <sip:bob@192.0.2.50>\r\n"
    b"Call-ID: c1@198.51.100.7\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_parsed_values_keep_dataclass_behaviour() -> None:
    """Pure and compiled: equality, hashing, ``replace``, repr and frozen instances."""
    req = parse_datagram(INVITE)
    assert isinstance(req, Request)
    via = req.via
    assert via == Via(b"UDP", via.host, 5060, via.params)
    assert hash(via) == hash(Via(b"UDP", via.host, 5060, via.params))
    moved = dataclasses.replace(via, port=5070)
    assert (moved.port, moved.host, moved.params) == (5070, via.host, via.params)
    assert moved != via
    assert repr(req.cseq) == "CSeq(seq=1, method=b'INVITE')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        via.port = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.cseq.seq = 2  # type: ignore[misc]
    again = parse_datagram(INVITE)
    assert again == req and again.index == req.index and again.index is not req.index
    assert {req.from_: 1}[again.from_] == 1


def test_routing_decisions_replace_and_compare() -> None:
    req = parse_datagram(INVITE)
    assert isinstance(req, Request)
    assert isinstance(req.uri, SipUri)
    target = router.Target(req.uri)
    assert (target.uri, target.routes, target.extra, target.flow) == (None, (), (), False)
    restored = dataclasses.replace(target, uri=req.uri)
    assert restored.uri == req.uri and restored.hop is target.hop
    assert router.Forward((target,)) == router.Forward((target,), record_route=True)
    assert router.Register() == router.Register()


def test_flow_is_a_frozen_value() -> None:
    a = (ipaddress.ip_address("192.0.2.1"), 5060)
    b = (ipaddress.ip_address("198.51.100.7"), 5060)
    flow = Flow(Transport.UDP, a, b)
    assert flow == Flow(Transport.UDP, a, b, None) and hash(flow) == hash(Flow(Transport.UDP, a, b))
    assert flow != Flow(Transport.TCP, a, b, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        flow.remote = a  # type: ignore[misc]
    assert str(flow) == "udp 192.0.2.1:5060<->198.51.100.7:5060"


def test_endpoint_values_pickle_and_copy() -> None:
    """The SIP workers get their listen specs pickled; a compiled frozen class can only be
    rebuilt through its constructor (``__reduce__``), never field by field."""
    spec = parse_listen("udp:[2001:db8::1]:5060;advertise=sip.example.net")
    bound = BoundListener(spec, 5060)
    flow = Flow(Transport.TCP, bound.local, (ipaddress.ip_address("192.0.2.7"), 5061), 4)
    for value in (spec, bound, flow):
        for again in (pickle.loads(pickle.dumps(value)), copy.copy(value), copy.deepcopy(value)):
            assert again == value and type(again) is type(value)
            assert hash(again) == hash(value) and repr(again) == repr(value)


def test_a_config_with_advertised_listeners_pickles() -> None:
    """What the supervisor hands each spawned SIP worker (``workers.WorkerPlan.config``)."""
    from rtc64 import config  # noqa: PLC0415

    listen = ["udp:[::1]:5060;advertise=sip.example.net:5070", "tcp:127.0.0.1:5060"]
    cfg = config.load(None, {"sip.workers": 2, "sip.listen": listen})
    assert cfg.sip.listen[0].advertise is not None
    again = pickle.loads(pickle.dumps(cfg))
    assert again.sip.listen == cfg.sip.listen
