"""Registrar binding logic (RFC 3261 §10.3, RFC 5626 §6), driven with a fake clock."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv6Address, ip_address

import pytest

from rtc64.gateway.location.bindings import Binding
from rtc64.gateway.location.registrar import (
    ContactSpec,
    RegisterOutcome,
    RegisterRequest,
    RegistrarPolicy,
    process_register,
    same_contact,
)

AOR = "sip:alice@example.net"
POLICY = RegistrarPolicy(min_expires=60, max_expires=7200, default_expires=3600)
SOURCE = IPv6Address("2001:db8::10")
LISTENER = "udp:[2001:db8::1]:5060"
INSTANCE = b'"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'


def contact(
    uri: bytes,
    expires: int | None = None,
    q: float | None = None,
    instance: bytes | None = None,
    reg_id: int | None = None,
) -> ContactSpec:
    return ContactSpec(uri, expires, q, instance, reg_id)


def request(
    *contacts: ContactSpec,
    wildcard: bool = False,
    expires: int | None = None,
    call_id: bytes = b"call-1",
    cseq: int = 1,
    path: tuple[bytes, ...] = (),
) -> RegisterRequest:
    return RegisterRequest(
        aor=AOR,
        contacts=contacts,
        wildcard=wildcard,
        expires=expires,
        call_id=call_id,
        cseq=cseq,
        source_ip=SOURCE,
        source_port=40000,
        transport="udp",
        listener=LISTENER,
        path=path,
        user_agent=b"phone/1.0",
    )


@dataclass
class Registrar:
    """The AOR's stored set plus a fake clock: what the gateway would keep around."""

    now: float = 1_000_000.0
    policy: RegistrarPolicy = POLICY
    bindings: tuple[Binding, ...] = ()
    outcomes: list[RegisterOutcome] = field(default_factory=list)

    def register(self, req: RegisterRequest) -> RegisterOutcome:
        outcome = process_register(self.bindings, req, self.policy, self.now)
        self.outcomes.append(outcome)
        if outcome.ok:
            self.bindings = outcome.bindings
        return outcome

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def uris(self) -> list[bytes]:
        return [b.contact for b in self.bindings]


A = b"sip:alice@[2001:db8::10]:40000"
B = b"sip:alice@192.0.2.7:5060;transport=tcp"
C = b"sip:alice@phone.example.org"


# -- adding, refreshing, expiry values --


def test_add_uses_default_expires_and_records_everything() -> None:
    reg = Registrar()
    out = reg.register(request(contact(A), path=(b"<sip:edge.example.net;lr>",)))
    assert (out.status, out.reason, out.changed) == (200, "OK", True)
    (b,) = out.bindings
    assert b == Binding(
        aor=AOR,
        contact=A,
        expires_at=reg.now + 3600,
        call_id=b"call-1",
        cseq=1,
        transport="udp",
        listener=LISTENER,
        received_ip=SOURCE,
        received_port=40000,
        path=(b"<sip:edge.example.net;lr>",),
        user_agent=b"phone/1.0",
        registered_at=reg.now,
    )
    assert [(c.binding, c.expires) for c in out.contacts] == [(b, 3600)]


def test_expires_header_applies_when_contact_has_none() -> None:
    out = Registrar().register(request(contact(A), contact(B, expires=120), expires=600))
    assert {c.binding.contact: c.expires for c in out.contacts} == {A: 600, B: 120}


def test_expires_is_clamped_to_max() -> None:
    out = Registrar().register(request(contact(A, expires=100_000), contact(B, expires=2**32)))
    assert [c.expires for c in out.contacts] == [7200, 7200]


def test_min_expires_itself_is_accepted() -> None:
    out = Registrar().register(request(contact(A, expires=60)))
    assert out.status == 200
    assert out.contacts[0].expires == 60


@pytest.mark.parametrize("expires", [1, 59])
def test_too_brief_answers_423_with_min_expires(expires: int) -> None:
    reg = Registrar()
    reg.register(request(contact(A)))
    before = reg.bindings
    out = reg.register(request(contact(B, expires=expires), cseq=2))
    assert (out.status, out.reason, out.min_expires) == (423, "Interval Too Brief", 60)
    assert out.bindings == before
    assert not out.changed
    assert out.contacts == ()


def test_one_brief_contact_rejects_the_whole_request() -> None:
    reg = Registrar()
    out = reg.register(request(contact(A, expires=3600), contact(B), expires=30))
    assert out.status == 423
    assert reg.bindings == ()


def test_423_only_below_one_hour() -> None:
    # RFC 3261 §10.3 step 7: 423 "if and only if" 0 < expires < 1 hour and < minimum;
    # a registrar may shorten an interval but never lengthen it, so 3600 is granted as is.
    reg = Registrar(policy=RegistrarPolicy(min_expires=7200, max_expires=86400,
                                           default_expires=7200))  # fmt: skip
    assert reg.register(request(contact(A, expires=3599))).status == 423
    out = reg.register(request(contact(A, expires=3600)))
    assert out.status == 200
    assert out.contacts[0].expires == 3600


def test_zero_min_expires_accepts_one_second() -> None:
    reg = Registrar(policy=RegistrarPolicy(min_expires=0, max_expires=60, default_expires=60))
    assert reg.register(request(contact(A, expires=1))).contacts[0].expires == 1


def test_refresh_same_call_id_higher_cseq_updates_in_place() -> None:
    reg = Registrar()
    reg.register(request(contact(A, expires=600), contact(B, expires=600)))
    reg.advance(300)
    out = reg.register(request(contact(A, expires=900), cseq=2))
    assert out.status == 200
    assert reg.uris() == [A, B]
    assert {c.binding.contact: c.expires for c in out.contacts} == {A: 900, B: 300}
    assert reg.bindings[0].cseq == 2
    assert reg.bindings[1].cseq == 1


def test_refresh_matches_contact_case_insensitively_in_scheme_and_host() -> None:
    reg = Registrar()
    reg.register(request(contact(b"sip:alice@Phone.Example.ORG;Transport=TCP")))
    out = reg.register(request(contact(b"SIP:alice@phone.example.org;transport=tcp"), cseq=2))
    assert len(out.bindings) == 1
    assert out.bindings[0].contact == b"SIP:alice@phone.example.org;transport=tcp"


def test_user_part_is_case_sensitive() -> None:
    reg = Registrar()
    reg.register(request(contact(b"sip:alice@phone.example.org")))
    out = reg.register(request(contact(b"sip:Alice@phone.example.org"), cseq=2))
    assert len(out.bindings) == 2


def test_remaining_expires_follows_the_clock() -> None:
    reg = Registrar()
    reg.register(request(contact(A, expires=3600)))
    reg.advance(100.4)
    out = reg.register(request(cseq=2))
    assert out.contacts[0].expires == 3500


def test_query_lists_bindings_and_changes_nothing() -> None:
    reg = Registrar()
    reg.register(request(contact(A), contact(B, q=0.5)))
    out = reg.register(request(cseq=2))
    assert (out.status, out.changed) == (200, False)
    assert [c.binding.contact for c in out.contacts] == [A, B]
    # a query with an old CSeq is fine: nothing is updated, so nothing is out of order
    assert reg.register(request(cseq=1)).status == 200


def test_query_on_empty_aor() -> None:
    out = Registrar().register(request())
    assert (out.status, out.bindings, out.contacts, out.changed) == (200, (), (), False)


def test_expired_bindings_are_dropped_and_not_listed() -> None:
    reg = Registrar()
    first = reg.register(request(contact(A, expires=60), contact(B, expires=600)))
    reg.advance(60)  # A expires exactly now
    out = reg.register(request(cseq=2))
    assert [c.binding.contact for c in out.contacts] == [B]
    assert out.bindings == (first.bindings[1],)
    assert not out.changed  # the live set did not change; the store filters by time


def test_expired_binding_does_not_block_an_old_cseq() -> None:
    reg = Registrar()
    reg.register(request(contact(A, expires=60), cseq=10))
    reg.advance(61)
    assert reg.register(request(contact(A), cseq=5)).status == 200


def test_multiple_contacts_from_several_devices() -> None:
    reg = Registrar()
    reg.register(request(contact(A), call_id=b"phone-1"))
    reg.register(request(contact(B), call_id=b"phone-2"))
    out = reg.register(request(contact(C), call_id=b"phone-3"))
    assert [c.binding.contact for c in out.contacts] == [A, B, C]
    assert [b.call_id for b in reg.bindings] == [b"phone-1", b"phone-2", b"phone-3"]


def test_same_contact_twice_in_one_request_last_wins() -> None:
    reg = Registrar()
    reg.register(request(contact(A, expires=600)))
    out = reg.register(request(contact(A, expires=900), contact(A, expires=1200), cseq=2))
    assert out.status == 200  # the second copy is not an out-of-order CSeq
    assert [c.expires for c in out.contacts] == [1200]


# -- q ordering --


def test_bindings_are_ordered_by_q() -> None:
    reg = Registrar()
    out = reg.register(
        request(
            contact(b"sip:a@h1", q=0.5),
            contact(b"sip:b@h2"),
            contact(b"sip:c@h3", q=1.0),
            contact(b"sip:d@h4", q=0.1),
            contact(b"sip:e@h5", q=0.5),
        )
    )
    assert [c.binding.contact for c in out.contacts] == [
        b"sip:b@h2",  # absent q counts as 1.0; equal q keeps registration order
        b"sip:c@h3",
        b"sip:a@h1",
        b"sip:e@h5",
        b"sip:d@h4",
    ]
    assert [b.q for b in out.bindings] == [None, 1.0, 0.5, 0.5, 0.1]


def test_refresh_with_new_q_reorders() -> None:
    reg = Registrar()
    reg.register(request(contact(A, q=0.9), contact(B, q=0.8)))
    out = reg.register(request(contact(B, q=1.0), cseq=2))
    assert [b.contact for b in out.bindings] == [B, A]


@pytest.mark.parametrize("q", [1.5, -0.1, float("nan")])
def test_bad_q_is_400(q: float) -> None:
    out = Registrar().register(request(contact(A, q=q)))
    assert (out.status, out.reason) == (400, "Bad Request")


def test_q_bounds_are_accepted() -> None:
    out = Registrar().register(request(contact(A, q=0.0), contact(B, q=1.0)))
    assert [b.q for b in out.bindings] == [1.0, 0.0]


# -- removal --


def test_remove_with_contact_expires_zero() -> None:
    reg = Registrar()
    reg.register(request(contact(A), contact(B)))
    out = reg.register(request(contact(A, expires=0), cseq=2))
    assert (out.status, out.changed) == (200, True)
    assert reg.uris() == [B]
    assert [c.binding.contact for c in out.contacts] == [B]


def test_remove_with_expires_header_zero() -> None:
    reg = Registrar()
    reg.register(request(contact(A), contact(B)))
    out = reg.register(request(contact(A), contact(B), expires=0, cseq=2))
    assert (out.status, out.bindings, out.contacts) == (200, (), ())


def test_contact_param_overrides_header_zero() -> None:
    reg = Registrar()
    reg.register(request(contact(A)))
    reg.register(request(contact(A), contact(B, expires=300), expires=0, cseq=2))
    assert reg.uris() == [B]


def test_removing_an_unknown_contact_is_fine() -> None:
    reg = Registrar()
    reg.register(request(contact(A)))
    out = reg.register(request(contact(B, expires=0), cseq=2))
    assert (out.status, out.changed) == (200, False)
    assert reg.uris() == [A]


def test_removal_by_another_call_id() -> None:
    reg = Registrar()
    reg.register(request(contact(A), call_id=b"x", cseq=50))
    assert reg.register(request(contact(A, expires=0), call_id=b"y", cseq=1)).status == 200
    assert reg.bindings == ()


# -- Contact: * --


def test_wildcard_removes_everything() -> None:
    reg = Registrar()
    reg.register(request(contact(A), contact(B), call_id=b"one"))
    reg.register(request(contact(C), call_id=b"two"))
    out = reg.register(request(wildcard=True, expires=0, call_id=b"three"))
    assert (out.status, out.bindings, out.contacts, out.changed) == (200, (), (), True)


def test_wildcard_with_same_call_id_and_higher_cseq() -> None:
    reg = Registrar()
    reg.register(request(contact(A), cseq=3))
    assert reg.register(request(wildcard=True, expires=0, cseq=4)).status == 200
    assert reg.bindings == ()


def test_wildcard_on_empty_aor() -> None:
    out = Registrar().register(request(wildcard=True, expires=0))
    assert (out.status, out.changed) == (200, False)


@pytest.mark.parametrize("expires", [None, 3600, 1])
def test_wildcard_without_expires_zero_is_400(expires: int | None) -> None:
    reg = Registrar()
    reg.register(request(contact(A)))
    out = reg.register(request(wildcard=True, expires=expires, cseq=2))
    assert (out.status, out.reason) == (400, "Bad Request")
    assert reg.uris() == [A]


def test_wildcard_with_other_contacts_is_400() -> None:
    reg = Registrar()
    reg.register(request(contact(A)))
    out = reg.register(request(contact(B, expires=0), wildcard=True, expires=0, cseq=2))
    assert out.status == 400
    assert reg.uris() == [A]


@pytest.mark.parametrize("cseq", [1, 2])
def test_wildcard_with_old_cseq_is_500(cseq: int) -> None:
    reg = Registrar()
    reg.register(request(contact(A), cseq=2))
    out = reg.register(request(wildcard=True, expires=0, cseq=cseq))
    assert (out.status, out.reason) == (500, "Server Internal Error")
    assert reg.uris() == [A]


# -- CSeq ordering (§10.3 step 7) --


@pytest.mark.parametrize("cseq", [4, 5])
def test_out_of_order_cseq_same_call_id_is_500(cseq: int) -> None:
    reg = Registrar()
    reg.register(request(contact(A, expires=600), cseq=5))
    before = reg.bindings
    out = reg.register(request(contact(A, expires=900), cseq=cseq))
    assert (out.status, out.reason, out.changed) == (500, "Server Internal Error", False)
    assert out.bindings == before
    assert "CSeq" in out.detail


def test_out_of_order_removal_is_500() -> None:
    reg = Registrar()
    reg.register(request(contact(A), cseq=5))
    assert reg.register(request(contact(A, expires=0), cseq=5)).status == 500
    assert reg.uris() == [A]


def test_out_of_order_on_one_contact_aborts_the_others() -> None:
    reg = Registrar()
    reg.register(request(contact(A), cseq=5))
    out = reg.register(request(contact(B), contact(A), cseq=3))
    assert out.status == 500
    assert reg.uris() == [A]


def test_different_call_id_may_use_any_cseq() -> None:
    reg = Registrar()
    reg.register(request(contact(A, expires=600), call_id=b"old", cseq=100))
    out = reg.register(request(contact(A, expires=900), call_id=b"new", cseq=1))
    assert out.status == 200
    (b,) = reg.bindings
    assert (b.call_id, b.cseq, out.contacts[0].expires) == (b"new", 1, 900)


def test_new_contact_with_old_cseq_is_fine() -> None:
    # Only a binding with the same Call-ID and a CSeq >= the request's blocks an update.
    reg = Registrar()
    reg.register(request(contact(A), cseq=5))
    assert reg.register(request(contact(B), cseq=1)).status == 200
    assert reg.uris() == [A, B]


@pytest.mark.parametrize("cseq", [-1, 2**31])
def test_cseq_out_of_range_is_400(cseq: int) -> None:
    assert Registrar().register(request(contact(A), cseq=cseq)).status == 400


@pytest.mark.parametrize(("header", "param"), [(-1, None), (None, -5)])
def test_negative_expires_is_400(header: int | None, param: int | None) -> None:
    assert Registrar().register(request(contact(A, expires=param), expires=header)).status == 400


# -- RFC 5626 instance / reg-id --


def test_same_instance_and_reg_id_replaces_the_flow() -> None:
    reg = Registrar()
    reg.register(request(contact(A, instance=INSTANCE, reg_id=1), call_id=b"boot-1"))
    reg.register(request(contact(C), call_id=b"other-device"))
    # The UA reboots: new Call-ID, new address, same instance and reg-id.
    out = reg.register(request(contact(B, instance=INSTANCE, reg_id=1), call_id=b"boot-2"))
    assert out.status == 200
    assert reg.uris() == [B, C]
    assert reg.bindings[0].call_id == b"boot-2"
    assert (reg.bindings[0].instance, reg.bindings[0].reg_id) == (INSTANCE, 1)


def test_instance_comparison_ignores_quotes_brackets_and_case() -> None:
    reg = Registrar()
    reg.register(request(contact(A, instance=INSTANCE, reg_id=1), call_id=b"1"))
    other_spelling = b"<URN:UUID:00000000-0000-1000-8000-000a95a0e128>"
    reg.register(request(contact(B, instance=other_spelling, reg_id=1), call_id=b"2"))
    assert reg.uris() == [B]


def test_other_reg_id_is_another_flow() -> None:
    reg = Registrar()
    reg.register(request(contact(A, instance=INSTANCE, reg_id=1), call_id=b"1"))
    reg.register(request(contact(B, instance=INSTANCE, reg_id=2), call_id=b"2"))
    assert reg.uris() == [A, B]


def test_other_instance_same_reg_id_is_another_flow() -> None:
    reg = Registrar()
    reg.register(request(contact(A, instance=INSTANCE, reg_id=1), call_id=b"1"))
    reg.register(request(contact(B, instance=b'"<urn:uuid:1-2-3>"', reg_id=1), call_id=b"2"))
    assert reg.uris() == [A, B]


def test_flow_removed_by_instance_even_with_another_uri() -> None:
    reg = Registrar()
    reg.register(request(contact(A, instance=INSTANCE, reg_id=1), cseq=1))
    out = reg.register(request(contact(B, expires=0, instance=INSTANCE, reg_id=1), cseq=2))
    assert (out.status, out.bindings) == (200, ())


def test_flow_refresh_respects_cseq_order() -> None:
    reg = Registrar()
    reg.register(request(contact(A, instance=INSTANCE, reg_id=1), cseq=7))
    out = reg.register(request(contact(B, instance=INSTANCE, reg_id=1), cseq=7))
    assert out.status == 500
    assert reg.uris() == [A]


def test_plain_contact_does_not_match_a_flow_binding() -> None:
    reg = Registrar()
    reg.register(request(contact(A, instance=INSTANCE, reg_id=1), call_id=b"1"))
    reg.register(request(contact(A), call_id=b"2"))
    assert [(b.contact, b.reg_id) for b in reg.bindings] == [(A, 1), (A, None)]


def test_two_flows_in_one_register_is_400() -> None:
    out = Registrar().register(
        request(contact(A, instance=INSTANCE, reg_id=1), contact(B, instance=INSTANCE, reg_id=2))
    )
    assert out.status == 400


def test_reg_id_without_instance_is_ignored() -> None:
    reg = Registrar()
    reg.register(request(contact(A, reg_id=1), call_id=b"1"))
    reg.register(request(contact(A, reg_id=2), call_id=b"2"))
    assert [(b.contact, b.reg_id) for b in reg.bindings] == [(A, None)]


def test_instance_without_reg_id_matches_by_instance() -> None:
    # RFC 5627 clients (instance, no reg-id): a new Contact URI from the same device (an
    # IPv6 privacy address that changed) replaces its binding instead of adding one.
    reg = Registrar()
    reg.register(request(contact(A, instance=INSTANCE), call_id=b"1"))
    reg.register(request(contact(B, instance=INSTANCE), call_id=b"2"))
    assert reg.uris() == [B]
    reg.register(request(contact(A, instance=INSTANCE), call_id=b"3"))
    assert reg.uris() == [A]
    assert reg.bindings[0].call_id == b"3"
    # Another instance is another device; a plain contact with the same URI still matches
    # (a phone that drops +sip.instance when it unregisters).
    reg.register(request(contact(B, instance=b'"<urn:uuid:other>"'), call_id=b"4"))
    assert sorted(reg.uris()) == sorted([A, B])
    reg.register(request(contact(A, expires=0), call_id=b"3", cseq=2))
    assert reg.uris() == [B]


@pytest.mark.parametrize("reg_id", [0, 2**31])
def test_reg_id_out_of_range_is_400(reg_id: int) -> None:
    out = Registrar().register(request(contact(A, instance=INSTANCE, reg_id=reg_id)))
    assert out.status == 400


# -- policy and URI comparison --


@pytest.mark.parametrize(
    ("low", "high", "default"), [(-1, 10, 5), (10, 5, 5), (10, 100, 5), (10, 100, 101)]
)
def test_policy_is_checked(low: int, high: int, default: int) -> None:
    with pytest.raises(ValueError, match="registrar policy"):
        RegistrarPolicy(min_expires=low, max_expires=high, default_expires=default)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (b"sip:alice@host", b"sip:alice@host", True),
        (b"sip:alice@HOST.example", b"SIP:alice@host.EXAMPLE", True),
        (b"sip:alice@host", b"sip:ALICE@host", False),
        (b"sip:alice@host", b"sips:alice@host", False),
        (b"sip:alice@host:5060", b"sip:alice@host", False),
        (b"sip:alice@host:5060", b"sip:alice@host:5070", False),
        (b"sip:alice@[2001:DB8:0:0::1]:5060", b"sip:alice@[2001:db8::1]:5060", True),
        (b"sip:alice@[::ffff:192.0.2.1]", b"sip:alice@[::FFFF:c000:201]", True),
        (b"sip:alice@[2001:db8::1]", b"sip:alice@[2001:db8::2]", False),
        (b"sip:a@h;transport=tcp;ob", b"sip:a@h;OB;Transport=TCP", True),
        (b"sip:a@h;transport=tcp", b"sip:a@h;transport=udp", False),
        (b"sip:a@h?subject=x", b"sip:a@h", True),
        (b"sip:a:secret@h", b"sip:a@h", False),
        (b"sip:h.example", b"sip:H.EXAMPLE", True),
        (b"sip:a@bad host", b"sip:a@BAD HOST", True),  # unparsable host: lower-case text
    ],
)
def test_same_contact(a: bytes, b: bytes, same: bool) -> None:
    assert same_contact(a, b) is same
    assert same_contact(b, a) is same


def test_outcome_ok_property() -> None:
    reg = Registrar()
    assert reg.register(request(contact(A))).ok
    assert not reg.register(request(contact(A, expires=5), cseq=2)).ok


def test_source_address_is_kept_exactly() -> None:
    scoped = ip_address("fe80::1%eth0")
    req = RegisterRequest(
        aor=AOR,
        contacts=(contact(A),),
        wildcard=False,
        expires=None,
        call_id=b"c",
        cseq=1,
        source_ip=scoped,
        source_port=5060,
        transport="tcp",
        listener="tcp:[fe80::2]:5060",
    )
    (b,) = process_register((), req, POLICY, 0.0).bindings
    assert b.received_ip == scoped
    assert isinstance(b.received_ip, IPv6Address)
    assert b.received_ip.scope_id == "eth0"


# -- retransmissions (REGISTER has no server transaction: the registrar recognises them) --


def test_a_retransmission_gets_the_same_200_and_changes_nothing() -> None:
    reg = Registrar()
    first = reg.register(request(contact(A, expires=900), contact(B), cseq=7))
    reg.advance(0.5)  # T1: the client retransmits the same request
    again = reg.register(request(contact(A, expires=900), contact(B), cseq=7))
    assert (again.status, again.changed, again.replayed) == (200, False, True)
    assert again.retransmission
    assert again.bindings == first.bindings  # kept as stored: expiry not moved
    assert [c.binding.contact for c in again.contacts] == [
        c.binding.contact for c in first.contacts
    ]
    assert [c.expires for c in again.contacts] == [900, 3600]  # what is left, rounded


def test_the_retransmission_window_is_timer_f() -> None:
    """64*T1 after the original, a client has given up on it: the same CSeq again is no
    retransmission, and step 7 fails it."""
    reg = Registrar()
    reg.register(request(contact(A), cseq=7))
    reg.advance(31.9)
    assert reg.register(request(contact(A), cseq=7)).retransmission
    reg.advance(0.2)
    out = reg.register(request(contact(A), cseq=7))
    assert (out.status, out.replayed) == (500, False)


@pytest.mark.parametrize(
    "changed",
    [
        {"expires": 600},
        {"q": 0.5},
        {"instance": INSTANCE},
        {"path": (b"<sip:other.example.net;lr>",)},
        {"source_ip": IPv6Address("2001:db8::66")},
        {"source_port": 40001},
        {"transport": "tcp"},
        {"listener": "udp:[2001:db8::2]:5060"},
        {"user_agent": b"forger/1.0"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_the_same_cseq_with_anything_else_changed_is_500(changed: dict[str, object]) -> None:
    """A request reusing the Call-ID and CSeq of a stored binding but not repeating its
    original (a forged "retransmission" from elsewhere, with another Path or expiry) is
    out of order (§10.3 step 7): 500, nothing changed."""
    reg = Registrar()
    reg.register(request(contact(A), cseq=7))
    stored = reg.bindings
    spec = contact(A, expires=changed.get("expires"), q=changed.get("q"),  # type: ignore[arg-type]
                   instance=changed.get("instance"))  # type: ignore[arg-type]  # fmt: skip
    facts = {k: v for k, v in changed.items() if k not in ("expires", "q", "instance")}
    out = reg.register(replace(request(spec, cseq=7), **facts))
    assert (out.status, out.replayed, out.changed) == (500, False, False)
    assert reg.bindings == stored


def test_a_forged_retransmission_with_another_contact_is_a_new_request() -> None:
    """Same Call-ID and CSeq, another Contact: not the original (its binding does not
    match), so it is applied as §10.3 says for a contact not bound yet; the stored
    binding is not taken as confirmed by it."""
    reg = Registrar()
    reg.register(request(contact(A), cseq=7))
    out = reg.register(request(contact(C), cseq=7))
    assert (out.status, out.replayed, out.changed) == (200, False, True)
    assert reg.uris() == [A, C]


def test_a_lower_cseq_still_fails_even_when_everything_else_repeats() -> None:
    reg = Registrar()
    reg.register(request(contact(A), cseq=7))
    out = reg.register(request(contact(A), cseq=6))
    assert (out.status, out.replayed) == (500, False)


def test_a_retransmitted_removal_finds_nothing_left_and_succeeds() -> None:
    reg = Registrar()
    reg.register(request(contact(A), cseq=1))
    assert reg.register(request(contact(A, expires=0), cseq=2)).ok
    again = reg.register(request(contact(A, expires=0), cseq=2))
    assert (again.status, again.changed, again.replayed, again.bindings) == (200, False, False, ())


def test_bindings_from_before_registered_at_never_count_as_retransmitted() -> None:
    """Bindings stored without the registration time (older versions) cannot be dated:
    the same CSeq again fails as step 7 says."""
    reg = Registrar()
    reg.register(request(contact(A), cseq=7))
    reg.bindings = tuple(replace(b, registered_at=None) for b in reg.bindings)
    assert reg.register(request(contact(A), cseq=7)).status == 500
