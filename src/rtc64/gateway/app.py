"""The gateway service started by ``rtc64 serve``: composes the configured components and
runs until stopped. Components arrive issue by issue; each is started here in order and
stopped in reverse order."""

from __future__ import annotations

import asyncio
import logging

from rtc64 import __version__
from rtc64.config import Config


async def serve(config: Config, stop: asyncio.Event, log: logging.Logger) -> int:
    """Start the gateway on ``config``, wait for ``stop``, then shut down. Returns 0."""
    log.info("rtc64 %s starting", __version__)
    source = str(config.source) if config.source else "embedded defaults"
    log.info("configuration from %s", source)
    for key, value in config.describe():
        log.info("config %s = %s", key, value)
    log.info("SIP service not available yet in this build; waiting for SIGINT/SIGTERM")
    await stop.wait()
    log.info("rtc64 stopping")
    return 0
