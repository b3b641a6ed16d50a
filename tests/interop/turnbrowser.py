"""Headless Chromium (Debian's) driven by Playwright, inside a lab namespace (issue 10).

``Chromium(host, workdir)`` starts ``/usr/bin/chromium`` through a small wrapper that runs it
with ``ip netns exec`` (Playwright keeps its pipe to the browser across the exec), with the
flags LAB-NOTES lists for WebRTC headless, and opens ``pages/turn_webrtc.html``; ``call``
runs one of that page's functions. No browser is ever downloaded (``executable_path``).
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.interop.lab import Host

CHROMIUM = "/usr/bin/chromium"
PAGE = Path(__file__).resolve().parent / "pages" / "turn_webrtc.html"
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    # Host candidates with their addresses, not mDNS names: a peer in another namespace
    # cannot resolve .local names, and the TURN server permits only addresses.
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)


class Chromium:
    """One headless Chromium in ``host`` with the test page open; a context manager."""

    def __init__(self, host: Host, workdir: Path, playwright: Playwright | None = None) -> None:
        """``playwright``: a running instance shared by several browsers (one per thread
        is possible); without it the browser starts and stops its own."""
        self.host, self.workdir = host, workdir
        self._shared = playwright
        self._pw: Playwright | None = None
        self._browser: Browser | None = None
        self.page: Page | None = None
        self.console: list[str] = []

    def __enter__(self) -> Chromium:
        wrapper = self.workdir / f"chromium-{self.host.ns}.sh"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {self.host.ns} {CHROMIUM} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        if self._shared is None:
            self._pw = sync_playwright().start()
        pw = self._shared or self._pw
        assert pw is not None
        try:
            self._browser = pw.chromium.launch(
                executable_path=str(wrapper),
                headless=True,
                args=list(FLAGS),
                env={**os.environ, "HOME": str(self.workdir)},
                timeout=30_000,
            )
            self.page = self._browser.new_page()
            self.page.on("console", lambda msg: self.console.append(msg.text))
            self.page.goto(PAGE.as_uri())
        except BaseException:
            self.close()
            raise
        return self

    def call(self, function: str, *args: Any) -> Any:
        """``window.<function>(...args)`` in the page (awaited when it returns a promise)."""
        assert self.page is not None
        return self.page.evaluate(f"(args) => window.{function}(...args)", list(args))

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
            self._browser = None
        if self._pw is not None:
            self._pw.stop()
            self._pw = None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


Side = tuple[Chromium, str]


def connect(offerer: Side, answerer: Side, *, media: bool = True, timeout: float = 20.0) -> bool:
    """Offer/answer between two sides (two RTCPeerConnections, in one page or two
    browsers), trickling candidates both ways until both data channels are open."""
    (a, a_name), (b, b_name) = offerer, answerer
    a.call("accept", a_name, b.call("answer", b_name, a.call("offer", a_name, media)))
    a_count = b_count = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = a.call("candidatesFrom", a_name, a_count)
        if new:
            b.call("addCandidates", b_name, new)
            a_count += len(new)
        new = b.call("candidatesFrom", b_name, b_count)
        if new:
            a.call("addCandidates", a_name, new)
            b_count += len(new)
        if a.call("isOpen", a_name) and b.call("isOpen", b_name):
            return True
        time.sleep(0.1)
    return False


def exchange(
    sender: Side, receiver: Side, count: int, timeout: float = 10.0
) -> tuple[list[str], list[str]]:
    """``count`` random data-channel messages from sender to receiver: (sent, received)."""
    (a, a_name), (b, b_name) = sender, receiver
    sent: list[str] = a.call("sendMessages", a_name, count)
    deadline = time.monotonic() + timeout
    received: list[str] = []
    while time.monotonic() < deadline:
        received = b.call("received", b_name)
        if len(received) >= count:
            break
        time.sleep(0.1)
    return sent, received


def wait_rtp(
    sender: Side, receiver: Side, timeout: float = 10.0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """getStats() of both sides once audio RTP has been sent and received (or timeout)."""
    (a, a_name), (b, b_name) = sender, receiver
    deadline = time.monotonic() + timeout
    while True:
        ours, theirs = a.call("report", a_name), b.call("report", b_name)
        if (ours["rtpSent"] > 0 and theirs["rtpReceived"] > 0) or time.monotonic() > deadline:
            return ours, theirs
        time.sleep(0.2)
