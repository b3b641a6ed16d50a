"""``rtc64 serve`` learns the CLAT addresses from ``rtc64 clat``'s status at start-up."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from rtc64 import config
from rtc64.serve import Gateway

LINK = {
    "interface": "eth0",
    "state": "running",
    "ipv4": "192.0.0.1",
    "clat_ipv6": "2001:db8:1::77",
    "policy": "dedicated",
    "prefix": "64:ff9b::/96",
    "prefix_source": "pref64",
    "engine": "tayga",
}


def test_the_gateway_reads_the_clat_state_dir_and_its_media_bridge_uses_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "clat"
    state.mkdir()
    (state / "status.json").write_text(json.dumps({"pid": os.getpid(), "links": [LINK]}))
    cfg = config.load(
        None,
        {
            "sip.listen": ["udp:127.0.0.1:0"],
            "general.data_dir": str(tmp_path / "data"),
            "media.addresses": ["127.0.0.1"],
            "nat64.clat_state_dir": str(state),
            "turn.enabled": False,  # no default ports: other tests run at the same time
            "web.enabled": False,
        },
    )
    caplog.set_level(logging.INFO)

    async def main() -> None:
        gw = Gateway(cfg, logging.getLogger("rtc64.test"))
        await gw.start()
        try:
            assert gw.media is not None
            assert gw.media.unusable() == {IPv4Address("192.0.0.1"), IPv6Address("2001:db8:1::77")}
        finally:
            await gw.stop()

    asyncio.run(main())
    assert "CLAT addresses never used for media (rtc64 clat): eth0: 192.0.0.1" in caplog.text


def test_the_state_dir_key_names_itself_when_wrong() -> None:
    with pytest.raises(config.ConfigError, match=r"nat64\.clat_state_dir"):
        config.load(None, {"nat64.clat_state_dir": 7})
