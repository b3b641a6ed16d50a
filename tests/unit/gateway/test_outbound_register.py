"""REGISTER glue for RFC 5626/5627: Require/Flow-Timer, GRUUs, 439, 503 max contacts."""

from __future__ import annotations

import asyncio
from ipaddress import IPv6Address
from pathlib import Path

from rtc64.gateway.location import gruu
from rtc64.gateway.location.backends import open_store
from rtc64.gateway.location.register import handle_register
from rtc64.gateway.location.registrar import RegistrarPolicy
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.framing import parse_datagram
from rtc64.sip.message import Request, Response
from rtc64.sip.nameaddr import parse_name_addr
from rtc64.sip.uri import SipUri

NOW = 1_700_000_000.0
SECRET = b"s" * 32
INSTANCE = b'"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
URN = b"urn:uuid:00000000-0000-1000-8000-000A95A0E128"
PHONE = (IPv6Address("2001:db8::20"), 40000)
TCP = Flow(Transport.TCP, (IPv6Address("2001:db8::1"), 5060), PHONE, connection_id=7)
UDP = Flow(Transport.UDP, (IPv6Address("2001:db8::1"), 5060), PHONE)


def register(*lines: bytes, vias: int = 1, cseq: int = 1) -> Request:
    via = b"".join(
        b"Via: SIP/2.0/TCP [2001:db8::%x]:5060;branch=z9hG4bK%d\r\n" % (0x20 + i, cseq)
        for i in range(vias)
    )
    data = (
        b"REGISTER sip:example.net SIP/2.0\r\n"
        + via
        + b"Max-Forwards: 70\r\nFrom: <sip:bob@example.net>;tag=r\r\nTo: <sip:bob@example.net>\r\n"
        b"Call-ID: reg@x\r\nCSeq: %d REGISTER\r\n"
        % cseq
        + b"".join(line + b"\r\n" for line in lines)
        + b"Content-Length: 0\r\n\r\n"
    )
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    return msg


def run(
    tmp_path: Path, *reqs: Request, flow: Flow = TCP, policy: RegistrarPolicy | None = None
) -> list[Response]:
    async def main() -> list[Response]:
        store = await open_store("sqlite", tmp_path / "data")
        try:
            return [
                await handle_register(
                    r,
                    flow,
                    listener="tcp:[2001:db8::1]:5060",
                    store=store,
                    policy=policy or RegistrarPolicy(),
                    now=NOW,
                    gruu_secret=SECRET,
                )
                for r in reqs
            ]
        finally:
            await store.close()

    return asyncio.run(main())


OB_CONTACT = b"Contact: <sip:bob@[2001:db8::20]:40000;transport=tcp;ob>;+sip.instance=%s;reg-id=1"


def test_outbound_200_has_require_flow_timer_and_echoes_the_flow(tmp_path: Path) -> None:
    (resp,) = run(tmp_path, register(OB_CONTACT % INSTANCE, b"Supported: outbound, path"))
    assert resp.status == 200
    assert resp.get(b"require") == b"outbound"
    assert resp.get(b"flow-timer") == b"120"
    assert resp.get(b"supported") == b"gruu, outbound, path"
    (contact,) = resp.get_all(b"contact")
    assert b";+sip.instance=" + INSTANCE in contact and b";reg-id=1" in contact
    assert b"pub-gruu" not in contact  # no Supported: gruu


def test_udp_flow_timer_is_at_most_29(tmp_path: Path) -> None:
    (resp,) = run(tmp_path, register(OB_CONTACT % INSTANCE, b"Supported: outbound"), flow=UDP)
    assert resp.get(b"flow-timer") == b"29"
    (resp,) = run(
        tmp_path, register(OB_CONTACT % INSTANCE), flow=UDP, policy=RegistrarPolicy(flow_timer=0)
    )
    assert resp.get(b"flow-timer") is None
    assert resp.get(b"require") is None  # the UA did not say it supports outbound


def test_plain_register_gets_no_outbound_headers(tmp_path: Path) -> None:
    # pjsip without outbound, through a proxy (two Vias): a normal 200, never 439.
    (resp,) = run(tmp_path, register(b"Contact: <sip:bob@[2001:db8::20]:40000>", vias=2))
    assert resp.status == 200
    assert resp.get(b"require") is None and resp.get(b"flow-timer") is None
    assert resp.get_all(b"contact") == (b"<sip:bob@[2001:db8::20]:40000>;expires=3600",)


def test_439_through_a_first_hop_without_ob(tmp_path: Path) -> None:
    edge = b"Path: <sip:edge.example.net;lr>"
    (resp,) = run(tmp_path, register(OB_CONTACT % INSTANCE, edge, b"Supported: outbound", vias=2))
    assert (resp.status, resp.reason) == (439, b"First Hop Lacks Outbound Support")
    ob_edge = b"Path: <sip:edge.example.net;lr;ob>"
    (resp,) = run(tmp_path, register(OB_CONTACT % INSTANCE, ob_edge, vias=2))
    assert resp.status == 200 and resp.get(b"flow-timer") == b"120"


def test_gruus_in_the_200_name_the_instance(tmp_path: Path) -> None:
    req = register(OB_CONTACT % INSTANCE, b"Supported: gruu, outbound")
    (resp,) = run(tmp_path, req)
    (value,) = resp.get_all(b"contact")
    contact = parse_name_addr(value, "Contact")
    pub = contact.param(b"pub-gruu")
    temp = contact.param(b"temp-gruu")
    assert pub == b'"sip:bob@example.net;gr=' + URN + b'"'
    assert temp is not None and temp.startswith(b'"sip:tgruu.') and temp.endswith(b';gr"')
    temp_uri = parse_name_addr(b"<" + temp.strip(b'"') + b">", "t").uri
    assert isinstance(temp_uri, SipUri)
    assert gruu.gruu_instance(SECRET, temp_uri) == gruu.GruuTarget(
        "sip:bob@example.net", URN, gruu.call_tag(b"reg@x")
    )
    assert b"bob" not in temp  # the temporary GRUU does not reveal the AOR
    # A second REGISTER hands out another temporary GRUU for the same instance.
    (again,) = run(tmp_path, register(OB_CONTACT % INSTANCE, b"Supported: gruu", cseq=2))
    assert parse_name_addr(again.get_all(b"contact")[0], "c").param(b"temp-gruu") != temp


def test_too_many_contacts_is_503_with_retry_after(tmp_path: Path) -> None:
    policy = RegistrarPolicy(max_contacts=1)
    first = register(b"Contact: <sip:bob@[2001:db8::20]:40000>;expires=300")
    second = register(b"Contact: <sip:bob@[2001:db8::21]:40000>", cseq=2)
    ok, refused = run(tmp_path, first, second, policy=policy)
    assert ok.status == 200
    assert refused.status == 503 and refused.get(b"retry-after") == b"300"
    assert b"too many" in refused.reason


def test_register_to_a_gruu_is_403(tmp_path: Path) -> None:
    data = (
        b"REGISTER sip:example.net SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP [2001:db8::20]:5060;branch=z9hG4bKg\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:bob@example.net>;tag=r\r\n"
        b"To: <sip:bob@example.net;gr=urn:uuid:1>\r\nCall-ID: g@x\r\nCSeq: 1 REGISTER\r\n"
        b"Contact: <sip:bob@[2001:db8::20]:40000>\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_datagram(data)
    assert isinstance(msg, Request)
    (resp,) = run(tmp_path, msg)
    assert (resp.status, resp.reason) == (403, b"Forbidden: a GRUU is not an address-of-record")
