"""The engine's nftables rules (MSS clamp, shared-address SNAT) and the uplink sysctl record."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv6Address, IPv6Network
from pathlib import Path

import pytest

from rtc64.io import clat_engine
from rtc64.io.clat_engine import ClatConfig, EngineError, mss_ruleset, shared_ruleset


def config(tmp_path: Path, **kw: object) -> ClatConfig:
    base: dict[str, object] = {
        "slot": 0,
        "uplink": "eth0",
        "namespace": "rtc64-clat0",
        "host_veth": "r64clat0",
        "ns_veth": "r64clatp0",
        "macvlan": "r64clatv0",
        "tun": "r64clatt0",
        "host_v4": IPv4Address("192.0.0.1"),
        "clat_v4": IPv4Address("192.0.0.0"),
        "clat_v6": IPv6Address("fdc1:a764:464::64"),
        "plat": IPv6Network("64:ff9b::/96"),
        "router": IPv6Address("fe80::1"),
        "mtu": 1260,
        "workdir": tmp_path,
        "shared": IPv6Address("2001:db8::9"),
    }
    base.update(kw)
    return ClatConfig(**base)  # type: ignore[arg-type]


def test_mss_is_clamped_to_the_ipv4_mtu_minus_40(tmp_path: Path) -> None:
    cfg = config(tmp_path, mtu=1400)
    assert cfg.mss == 1360
    rules = mss_ruleset(cfg.mss)
    assert "hook forward" in rules
    assert "tcp flags syn tcp option maxseg size > 1360 tcp option maxseg size set 1360" in rules


@pytest.mark.parametrize("limit", [True, False])
def test_shared_rules_snat_only_the_internal_address_and_admit_only_its_flows(
    tmp_path: Path, limit: bool
) -> None:
    rules = shared_ruleset(config(tmp_path), limit)
    assert rules.startswith("table ip6 rtc64-clat0 {")
    assert 'oifname "eth0" ip6 saddr fdc1:a764:464::64 counter snat to 2001:db8::9' in rules
    assert 'iifname "r64clat0" oifname != "eth0" drop' in rules
    assert 'iifname "r64clat0" ip6 saddr != fdc1:a764:464::64 drop' in rules
    assert 'oifname "r64clat0" ct state != { established, related } drop' in rules
    assert ('iifname "eth0" oifname != "r64clat0" drop' in rules) is limit


def test_uplink_forwarding_is_recorded_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    for name in ("all", "eth0"):
        (conf / name).mkdir(parents=True)
        (conf / name / "forwarding").write_text("0\n")
    (conf / "eth0" / "force_forwarding").write_text("0\n")
    monkeypatch.setattr(clat_engine, "PROC_IPV6_CONF", conf)
    work = tmp_path / "work"
    work.mkdir()
    cfg = config(work)
    assert clat_engine.enable_uplink_forwarding(cfg) is True
    assert (conf / "eth0" / "force_forwarding").read_text() == "1\n"
    assert json.loads((work / "forwarding0.json").read_text())["uplink"] == "eth0"
    assert clat_engine.restore_forwarding(work) == ["force_forwarding=0 on eth0"]
    assert (conf / "eth0" / "force_forwarding").read_text() == "0\n"
    assert not list(work.glob("forwarding*"))
    # a host that forwards already: nothing touched, nothing recorded
    (conf / "all" / "forwarding").write_text("1\n")
    assert clat_engine.enable_uplink_forwarding(cfg) is False
    assert not list(work.glob("forwarding*"))
    # a kernel without force_forwarding and forwarding off: a clear refusal
    (conf / "all" / "forwarding").write_text("0\n")
    (conf / "eth0" / "force_forwarding").unlink()
    with pytest.raises(EngineError, match="force_forwarding"):
        clat_engine.enable_uplink_forwarding(cfg)


def test_a_tampered_record_never_writes_outside_the_sysctl_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clat_engine, "PROC_IPV6_CONF", tmp_path / "conf")
    (tmp_path / "forwarding0.json").write_text(json.dumps({"uplink": "../x", "previous": "0"}))
    (tmp_path / "forwarding1.json").write_text(json.dumps({"uplink": "e", "previous": "7"}))
    (tmp_path / "forwarding2.json").write_text("not json")
    assert clat_engine.restore_forwarding(tmp_path) == []
    assert not list(tmp_path.glob("forwarding*"))


def test_without_nft_there_are_no_tables_to_remove(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    assert clat_engine.host_tables("rtc64-clat") == []
    assert clat_engine.remove_table("rtc64-clat0") == []
