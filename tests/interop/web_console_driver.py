"""Drives the rtc64 console in headless Chromium (Playwright, Debian's /usr/bin/chromium,
no browser download). Run inside a lab host by tests/interop/test_web_console.py:

    python web_console_driver.py BASE_URL USER PASSWORD OUTDIR

It logs in, opens the calls page, writes OUTDIR/ready, waits for a live call row to
appear (the test starts the call then) and to disappear, visits the other pages, takes a
screenshot at each step and writes what it saw to OUTDIR/result.json. Exit 0 when every
step happened.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
WAIT_MS = 40_000
PROBE_TARGET = "sip:[fd00:64:6::1]"  # the gateway probing its own SIP listener


def main(base: str, user: str, password: str, out: Path) -> int:
    seen: dict[str, Any] = {"console_errors": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            context = browser.new_context(
                ignore_https_errors=True, viewport={"width": 1200, "height": 800}
            )
            page = context.new_page()
            page.on(
                "console",
                lambda m: seen["console_errors"].append(m.text) if m.type == "error" else None,
            )
            page.goto(base + "/")
            page.wait_for_selector("#login:not([hidden])")
            page.screenshot(path=out / "01-login.png")
            page.fill("#user", user)
            page.fill("#password", "wrong password")
            page.click("#login button[type=submit]")
            page.locator("#login-error", has_text="wrong").wait_for()
            seen["wrong_password"] = page.inner_text("#login-error")
            page.fill("#password", password)
            page.click("#login button[type=submit]")
            page.wait_for_selector("#nav:not([hidden])")
            seen["login_form_visible_after_login"] = page.locator("#login").is_visible()
            seen["cookies"] = [
                {k: c[k] for k in ("name", "secure", "httpOnly", "sameSite")}  # type: ignore[literal-required]
                for c in context.cookies()
            ]
            page.click("a[href='#calls']")
            page.wait_for_selector("#page-calls:not([hidden])")
            page.locator("#calls-live", has_text="live: 0").wait_for()
            page.screenshot(path=out / "02-calls-empty.png")
            (out / "ready").write_text("ready")
            row = page.wait_for_selector("#calls-table tbody tr[data-call-id]", timeout=WAIT_MS)
            assert row is not None
            packets = re.compile(r" [1-9][0-9]* pkts")
            page.locator("#calls-table td", has_text=packets).first.wait_for(timeout=WAIT_MS)
            seen["live_call"] = row.inner_text()
            page.screenshot(path=out / "03-call-live.png")
            page.wait_for_selector(
                "#calls-table tbody tr[data-call-id]", state="detached", timeout=WAIT_MS
            )
            page.screenshot(path=out / "04-call-ended.png")
            page.click("a[href='#overview']")
            page.locator("#ov-contacts", has_text=re.compile(r"^[0-9]+$")).wait_for()
            page.wait_for_selector("#chart polyline")
            time.sleep(2.5)  # two more samples on the chart
            seen["overview_contacts"] = page.inner_text("#ov-contacts")
            seen["overview_families"] = page.inner_text("#ov-reg-families")
            page.screenshot(path=out / "05-overview.png", full_page=True)
            page.click("a[href='#registrations']")
            page.wait_for_selector("#reg-table tbody tr")
            seen["registrations"] = page.inner_text("#reg-table tbody")
            page.screenshot(path=out / "06-registrations.png")
            page.click("a[href='#status']")
            page.wait_for_selector("#status-config tbody tr")
            seen["status"] = page.inner_text("#status-config tbody")
            page.click("a[href='#probes']")
            page.wait_for_selector("#page-probes:not([hidden])")
            page.fill("#probe-targets", PROBE_TARGET)
            page.uncheck("#probe-v4")
            page.click("#probe-form button[type=submit]")
            link = page.locator("#probes-table a.probe-report").first
            link.wait_for(timeout=90_000)
            seen["probe_row"] = page.inner_text("#probes-table tbody tr")
            page.screenshot(path=out / "07-probe-runs.png")
            link.click()
            page.wait_for_load_state()
            seen["probe_title"] = page.title()
            seen["probe_text"] = page.inner_text("body")
            page.screenshot(path=out / "08-probe-report.png", full_page=True)
            page.go_back()
            page.wait_for_selector("#nav:not([hidden])")
            page.click("#logout")
            page.wait_for_selector("#login:not([hidden])")
            seen["after_logout"] = context.request.get(base + "/api/calls").status
        finally:
            browser.close()
    (out / "result.json").write_text(json.dumps(seen, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
