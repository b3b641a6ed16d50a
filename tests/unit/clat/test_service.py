"""The CLAT daemon's reconciliation, with a fake engine and fake netlink snapshots."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv6Address, IPv6Interface, IPv6Network
from pathlib import Path

import pytest

from rtc64.clat import service as service_mod
from rtc64.clat.addressing import INTERNAL_V6
from rtc64.clat.dhcp4 import V6Only
from rtc64.clat.service import RETRY_AFTER, ClatService, ClatSettings, read_status
from rtc64.io import clat_engine, netlink
from rtc64.io.clat_engine import ClatConfig, Counters
from rtc64.net.pref64 import Pref64Option

P1 = IPv6Network("fd64:64:64::/96")
P2 = IPv6Network("2001:db8:64::/96")


@dataclass
class FakeEngine:
    name: str = "fake"
    started: list[ClatConfig] = field(default_factory=list)
    stopped: list[ClatConfig] = field(default_factory=list)
    fail: list[Exception] = field(default_factory=list)
    dead: bool = False

    def start(self, cfg: ClatConfig) -> None:
        if self.fail:
            raise self.fail.pop(0)
        self.started.append(cfg)

    def stop(self, cfg: ClatConfig) -> None:
        self.stopped.append(cfg)

    def alive(self, cfg: ClatConfig) -> bool:
        return not self.dead

    def counters(self, cfg: ClatConfig) -> Counters | None:
        return Counters(1, 2, 3, 4)


def link(index: int, name: str, *, v4: tuple[str, ...] = (), up: bool = True) -> netlink.LinkInfo:
    v6 = IPv6Interface(f"fd00:{index}::2/64")
    return netlink.LinkInfo(
        index=index,
        name=name,
        up=up,
        loopback=False,
        mtu=1500,
        kind="veth",
        ipv4=tuple(IPv4Interface(a) for a in v4),
        ipv4_default=False,
        ipv6=(v6,),
        ipv6_all=((v6, 0x80),),
        router=IPv6Address(f"fd00:{index}::1"),
    )


@pytest.fixture
def links(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[netlink.LinkInfo]]:
    current: list[netlink.LinkInfo] = [link(2, "eth0")]
    monkeypatch.setattr(netlink, "snapshot", lambda: list(current))
    yield current


def make(tmp_path: Path, engine: FakeEngine, **kw: object) -> ClatService:
    settings = ClatSettings(state_dir=tmp_path, **kw)  # type: ignore[arg-type]
    return ClatService(settings, engine, logging.getLogger("test.clat"))


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_pref64_starts_a_change_restarts_withdrawal_stops(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    engine = FakeEngine()
    svc = make(tmp_path, engine)

    async def go() -> None:
        await svc.refresh(0)
        assert engine.started == []
        svc.pref64_message(2, [Pref64Option(P1, 1800)], 1)
        await svc.refresh(1)
        (cfg,) = engine.started
        assert cfg.plat == P1 and str(cfg.host_v4) == "192.0.0.1" and cfg.uplink == "eth0"
        assert cfg.clat_v6 in IPv6Network("fd00:2::/64") and cfg.namespace == "rtc64-clat0"
        await svc.refresh(2)  # nothing changed: idempotent
        assert len(engine.started) == 1
        svc.pref64_message(2, [Pref64Option(P2, 1800)], 3)
        await svc.refresh(3)
        assert [c.plat for c in engine.started] == [P1, P2] and engine.stopped[-1].plat == P1
        svc.pref64_message(2, [Pref64Option(P2, 0), Pref64Option(P1, 0)], 4)
        await svc.refresh(4)
        assert svc.instances == {}
        status = svc.status()["links"][0]
        assert status["state"] == "off" and status["reason"].startswith("no NAT64")

    run(go())


def test_two_links_two_slots_and_the_range_holds_four(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    engine = FakeEngine()
    svc = make(tmp_path, engine, prefix=P1, mtu=1400)
    links[:] = [link(i, f"eth{i}") for i in range(2, 7)]
    links[1] = dataclasses.replace(links[1], mtu=1280)  # the IPv6 minimum
    run(svc.refresh(0))
    assert sorted(c.mtu for c in engine.started) == [1260, 1400, 1400, 1400]
    assert sorted(str(c.host_v4) for c in engine.started) == [
        "192.0.0.1",
        "192.0.0.3",
        "192.0.0.5",
        "192.0.0.7",
    ]
    assert len({c.namespace for c in engine.started}) == 4
    assert len(svc.instances) == 4  # the fifth link: 192.0.0.0/29 is full


def test_ipv4_on_the_link_and_a_foreign_clat_turn_it_off(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    engine = FakeEngine()
    svc = make(tmp_path, engine, prefix=P1)

    async def go() -> None:
        await svc.refresh(0)
        assert len(svc.instances) == 1
        links[0] = link(2, "eth0", v4=("10.1.2.3/24",))
        await svc.refresh(1)
        assert svc.instances == {} and svc.status()["links"][0]["detail"].startswith("IPv4 add")
        links[0] = link(2, "eth0", v4=("192.0.0.5/32",))  # NetworkManager-style CLAT
        await svc.refresh(2)
        entry = svc.status()["links"][0]
        assert entry["reason"] == "another CLAT is active on the link"
        assert "192.0.0.5" in entry["detail"]

    run(go())


def test_dad_failure_moves_to_another_address(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    engine = FakeEngine(fail=[clat_engine.DadError("DAD failed")])
    svc = make(tmp_path, engine, prefix=P1)
    run(svc.refresh(0))
    (cfg,) = engine.started
    assert svc.instances[2].attempt == 1
    first = service_mod.clat_address(IPv6Network("fd00:2::/64"), "eth0", svc.instances[2].slot)
    assert cfg.clat_v6 != first


def test_engine_failure_is_not_retried_in_a_loop(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    engine = FakeEngine(fail=[clat_engine.EngineError("tayga exited 1")])
    svc = make(tmp_path, engine, prefix=P1)

    async def go() -> None:
        await svc.refresh(0)
        assert svc.status()["links"][0]["state"] == "failed"
        await svc.refresh(1)  # a netlink wake-up soon after: no retry storm
        assert engine.started == []
        await svc.refresh(RETRY_AFTER + 1)
        assert len(engine.started) == 1

    run(go())


def test_dead_translator_is_restarted(tmp_path: Path, links: list[netlink.LinkInfo]) -> None:
    engine = FakeEngine()
    svc = make(tmp_path, engine, prefix=P1)

    async def go() -> None:
        await svc.refresh(0)
        engine.dead = True
        await svc.refresh(10)
        assert len(engine.started) == 2

    run(go())


def test_forged_options_are_counted_and_other_links_ignored(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    svc = make(tmp_path, FakeEngine())
    run(svc.refresh(0))
    svc.pref64_message(2, [Pref64Option(IPv6Network("fd64::/80"), 600)], 1)
    svc.pref64_message(99, [Pref64Option(P1, 600)], 1)  # a link we do not follow
    assert svc.dropped_options == 1
    assert svc.links[2].current_prefix(1) is None


def test_our_own_links_and_unlisted_interfaces_are_not_uplinks(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    links[:] = [link(2, "eth0"), link(3, "r64clat0"), link(4, "wlan0")]
    svc = make(tmp_path, FakeEngine(), prefix=P1, interfaces=("eth0",))
    run(svc.refresh(0))
    assert set(svc.links) == {2}


def test_status_file_is_live_only_while_the_daemon_runs(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    svc = make(tmp_path, FakeEngine(), prefix=P1)
    run(svc.refresh(0))
    status = read_status(tmp_path)
    assert status is not None and status["links"][0]["counters"]["to_clat_packets"] == 1
    (tmp_path / "status.json").write_text('{"pid": 999999999, "links": []}')
    assert read_status(tmp_path) is None
    (tmp_path / "status.json").write_text("not json")
    assert read_status(tmp_path) is None


def test_renumbering_restarts_link_down_stops_link_gone_stops(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    engine = FakeEngine()
    svc = make(tmp_path, engine, prefix=P1)

    async def go() -> None:
        await svc.refresh(0)
        renumbered = IPv6Interface("fd00:99::2/64")
        links[0] = dataclasses.replace(links[0], ipv6=(renumbered,))
        await svc.refresh(1)
        assert [c.clat_v6 in IPv6Network("fd00:99::/64") for c in engine.started] == [False, True]
        links[0] = dataclasses.replace(links[0], up=False)
        await svc.refresh(2)
        assert svc.instances == {} and svc.status()["links"][0]["reason"] == "link down"
        links[0] = dataclasses.replace(links[0], up=True)
        await svc.refresh(3)
        assert len(svc.instances) == 1
        links.clear()
        await svc.refresh(4)
        assert svc.instances == {} and svc.links == {} and svc.status()["links"] == []

    run(go())


def test_router_solicitations_three_four_seconds_apart_while_wanted() -> None:
    sol = service_mod.Solicitations(0.0)
    assert sol.due(0.0, wanted=True) and sol.next == 4.0
    assert not sol.due(3.9, wanted=True)
    assert sol.due(4.0, wanted=True) and sol.due(8.0, wanted=True)
    assert sol.next is None and not sol.due(100.0, wanted=True)
    quiet = service_mod.Solicitations(0.0)
    assert not quiet.due(0.0, wanted=False) and quiet.next is None


def test_dns64_timeout_keeps_the_prefix_an_empty_answer_drops_it(
    tmp_path: Path, links: list[netlink.LinkInfo], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtc64.io.nat64 import Dns64  # noqa: PLC0415
    from rtc64.net.rfc3263 import Status  # noqa: PLC0415

    answers = [
        Dns64(Status.NOERROR, (IPv6Address("fd64:64:64::c000:aa"),), (P1,), 300),
        Dns64(Status.TIMEOUT, (), (), 0),
        Dns64(Status.NOERROR, (), (), 300),
    ]

    async def fake(resolver: object) -> Dns64:
        return answers.pop(0)

    monkeypatch.setattr(service_mod, "rfc7050", fake)
    engine = FakeEngine()
    svc = make(tmp_path, engine)

    async def go() -> None:
        for _ in range(3):
            await svc._ask_dns64(svc.resolver)  # type: ignore[arg-type]
            yield_ = svc.status()["links"]
            states.append(yield_[0]["state"] if yield_ else None)

    states: list[str | None] = []
    run(svc.refresh(0))  # no resolver yet: no query of its own
    svc.resolver = object()  # type: ignore[assignment]
    run(go())
    assert states == ["running", "running", "off"]
    assert [c.plat for c in engine.started] == [P1]


def test_a_128_only_link_gets_a_shared_clat_and_its_status_says_so(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    engine = FakeEngine()
    svc = make(tmp_path, engine, prefix=P1)
    lease = IPv6Interface("2001:db8:5::77/128")
    links[0] = dataclasses.replace(links[0], ipv6=(lease,), ipv6_all=((lease, 0x80),))
    run(svc.refresh(0))
    (cfg,) = engine.started
    assert cfg.shared == lease.ip and cfg.clat_v6 in INTERNAL_V6
    entry = svc.status()["links"][0]
    assert entry["state"] == "running" and entry["clat_ipv6"] == str(lease.ip)
    assert entry["address_policy"].startswith(f"shared (internal {cfg.clat_v6}")
    assert f"ip6 {cfg.namespace}" in entry["address_policy"]


def test_option_108_from_the_dhcp_probe_outweighs_ipv4_on_the_link_until_it_lapses(
    tmp_path: Path, links: list[netlink.LinkInfo]
) -> None:
    engine = FakeEngine()
    svc = make(tmp_path, engine, prefix=P1)
    links[0] = link(2, "eth0", v4=("10.99.0.50/24",))

    async def go() -> None:
        await svc.refresh(0)
        assert svc.instances == {}
        now = asyncio.get_running_loop().time()
        svc.dhcp_event(2, V6Only(1800.0, None))
        assert svc.wake.is_set()
        await svc.refresh(now)
        assert len(svc.instances) == 1
        svc.links[2].handle_timer(now + 1801 + service_mod.DHCP_GRACE)
        await svc.refresh(now + 1801 + service_mod.DHCP_GRACE)
        assert svc.instances == {}  # no renewal came: the link's IPv4 counts again

    run(go())
