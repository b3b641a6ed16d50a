"""Registrar core, RFC 5626/5627 parts: flows, 439, privacy addresses, max_contacts."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv6Address

import pytest

from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.location.registrar import (
    ContactSpec,
    RegisterOutcome,
    RegisterRequest,
    RegistrarPolicy,
    instance_key,
    is_flow,
    process_register,
)

AOR = "sip:alice@example.net"
NOW = 1_000_000.0
INSTANCE = b'"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
OLD_ADDR = IPv6Address("2001:db8:1::aaaa")
NEW_ADDR = IPv6Address("2001:db8:1::bbbb")


def req(
    *contacts: ContactSpec,
    call_id: bytes = b"c1",
    cseq: int = 1,
    source: IPv6Address = OLD_ADDR,
    vias: int = 1,
    path: tuple[bytes, ...] = (),
    path_ob: bool = False,
) -> RegisterRequest:
    return RegisterRequest(
        aor=AOR,
        contacts=contacts,
        wildcard=False,
        expires=None,
        call_id=call_id,
        cseq=cseq,
        source_ip=source,
        source_port=40000,
        transport="tcp",
        listener="tcp:[2001:db8::1]:5060",
        path=path,
        vias=vias,
        path_ob=path_ob,
    )


def flow(uri: bytes, reg_id: int | None = 1, expires: int | None = None) -> ContactSpec:
    return ContactSpec(uri, expires, None, INSTANCE, reg_id)


def run(
    current: list[Binding], r: RegisterRequest, policy: RegistrarPolicy | None = None
) -> RegisterOutcome:
    return process_register(current, r, policy or RegistrarPolicy(), NOW)


def test_flow_registered_directly_is_outbound() -> None:
    out = run([], req(flow(b"sip:alice@[2001:db8:1::aaaa]:40000;transport=tcp;ob")))
    assert out.status == 200 and out.outbound
    (b,) = out.bindings
    assert is_flow(b) and b.reg_id == 1 and b.registered_at == NOW
    assert instance_key(b.instance) == b"urn:uuid:00000000-0000-1000-8000-000a95a0e128"


def test_privacy_address_change_replaces_the_flow() -> None:
    first = run([], req(flow(b"sip:alice@[2001:db8:1::aaaa]:40000;ob")))
    moved = run(
        list(first.bindings),
        req(flow(b"sip:alice@[2001:db8:1::bbbb]:40001;ob"), call_id=b"c2", source=NEW_ADDR),
    )
    (b,) = moved.bindings
    assert b.contact == b"sip:alice@[2001:db8:1::bbbb]:40001;ob"
    assert b.received_ip == NEW_ADDR


def test_two_reg_ids_are_two_flows_of_one_instance() -> None:
    one = run([], req(flow(b"sip:alice@[2001:db8:1::aaaa]:40000;ob", reg_id=1)))
    two = run(list(one.bindings), req(flow(b"sip:alice@[2001:db8:1::aaaa]:40002;ob", reg_id=2)))
    assert sorted(b.reg_id or 0 for b in two.bindings) == [1, 2]


@pytest.mark.parametrize(
    ("vias", "path", "path_ob", "status"),
    [
        (1, (), False, 200),  # the UA is our direct peer: we are its edge proxy
        (2, (b"<sip:edge.example.net;lr;ob>",), True, 200),  # edge proxy supports outbound
        (2, (b"<sip:edge.example.net;lr>",), False, 439),  # edge proxy without outbound
        (2, (), False, 439),  # a proxy in between that wrote no Path at all
    ],
)
def test_439_only_when_the_first_hop_lacks_outbound(
    vias: int, path: tuple[bytes, ...], path_ob: bool, status: int
) -> None:
    r = req(flow(b"sip:alice@[2001:db8:1::aaaa]:40000;ob"), vias=vias, path=path, path_ob=path_ob)
    out = run([], r)
    assert out.status == status
    if status == 439:
        assert out.reason == "First Hop Lacks Outbound Support" and not out.changed


@pytest.mark.parametrize("vias", [1, 2, 5])
def test_clients_without_outbound_never_get_439(vias: int) -> None:
    # pjsip-style: no reg-id (with or without +sip.instance), through any number of proxies.
    plain = ContactSpec(b"sip:alice@[2001:db8:1::aaaa]:40000")
    gruu_only = ContactSpec(b"sip:alice@[2001:db8:1::aaaa]:40001", instance=INSTANCE)
    for spec in (plain, gruu_only):
        out = run([], req(spec, vias=vias))
        assert out.status == 200 and not out.outbound


def test_max_contacts_refuses_new_contacts_but_not_refreshes() -> None:
    policy = RegistrarPolicy(max_contacts=2)
    a = ContactSpec(b"sip:alice@[2001:db8::a]", expires=600)
    b = ContactSpec(b"sip:alice@[2001:db8::b]", expires=900)
    c = ContactSpec(b"sip:alice@[2001:db8::c]")
    two = run([], req(a, b), policy)
    assert two.status == 200
    live = list(two.bindings)
    over = run(live, req(c, call_id=b"c9"), policy)
    assert (over.status, over.retry_after, over.changed) == (503, 600, False)
    assert over.bindings == two.bindings
    # Refreshing or replacing within the limit goes on working.
    assert run(live, req(a, cseq=2), policy).status == 200
    assert run(live, req(dataclasses.replace(a, expires=0), c, cseq=2), policy).status == 200


def test_max_contacts_counts_a_whole_request() -> None:
    policy = RegistrarPolicy(max_contacts=3)
    many = [ContactSpec(b"sip:alice@[2001:db8::%x]" % i) for i in range(1, 5)]
    alone = run([], req(*many), policy)  # waiting would not help: 403, not 503
    assert (alone.status, alone.retry_after) == (403, None)
    assert alone.reason == "Forbidden: more than 3 contacts in one REGISTER"
    assert run([], req(*many[:3]), policy).status == 200


def test_oversized_instance_is_400() -> None:
    huge = ContactSpec(b"sip:alice@[2001:db8::a]", instance=b'"<urn:' + b"x" * 300 + b'>"')
    assert run([], req(huge)).status == 400


def test_max_contacts_lowered_below_what_is_stored_lets_refreshes_through() -> None:
    specs = [ContactSpec(b"sip:alice@[2001:db8::%x]" % i) for i in range(1, 5)]
    stored = list(run([], req(*specs)).bindings)
    assert run(stored, req(specs[0], cseq=2), RegistrarPolicy(max_contacts=2)).status == 200


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="max_contacts"):
        RegistrarPolicy(max_contacts=0)
    with pytest.raises(ValueError, match="flow_timer"):
        RegistrarPolicy(flow_timer=-1)
