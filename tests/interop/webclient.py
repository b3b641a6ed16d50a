"""The web console/API of a gateway in the lab, reached from inside a lab host with curl
(the test process lives outside the namespaces), and the config that turns it on."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tests.interop.lab import Host

TOKEN = "interop-full-token-0123456789"
TURN_TOKEN = "interop-turn-token-0123456789"
ADMIN_PASSWORD = "interop admin password"


def web_config(listen: str, *, token: str = TOKEN, turn_token: str = TURN_TOKEN) -> str:
    return f'[web]\nlisten = "{listen}"\ntoken = "{token}"\nturn_token = "{turn_token}"\n'


def set_admin_password(host: Host, data_dir: Path, password: str = ADMIN_PASSWORD) -> None:
    """``rtc64 admin set-password`` with the password on stdin, as an operator runs it."""
    import subprocess  # noqa: PLC0415

    proc = subprocess.run(
        ["ip", "netns", "exec", host.ns, sys.executable, "-m", "rtc64.cli", "--data-dir",
         str(data_dir), "admin", "set-password"],
        input=password + "\n", capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (data_dir / "web-admin.json").exists()


class Web:
    """HTTP requests to ``base`` (e.g. ``http://[fd00:64:6::1]:8064``) from ``host``."""

    def __init__(self, host: Host, base: str, workdir: Path, *, insecure: bool = False) -> None:
        self.host = host
        self.base = base
        self.insecure = insecure  # the gateway's self-signed certificate
        self.jar = workdir / "cookies.txt"

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        token: str | None = TOKEN,
        body: Any = None,
        headers: dict[str, str] | None = None,
        cookies: bool = False,
    ) -> tuple[int, str]:
        """(status, body text)."""
        argv = ["curl", "-sg", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method]
        if self.insecure:
            argv.append("-k")
        if token:
            argv += ["-H", f"Authorization: Bearer {token}"]
        for k, v in (headers or {}).items():
            argv += ["-H", f"{k}: {v}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data-binary", json.dumps(body)]
        if cookies:
            argv += ["-b", str(self.jar), "-c", str(self.jar)]
        proc = self.host.run(*argv, self.base + path, check=False)
        text, _, code = proc.stdout.rpartition("\n")
        return int(code or 0), text

    def json(self, path: str, **kw: Any) -> Any:
        status, text = self.request(path, **kw)
        assert status == 200, f"{path}: {status} {text}"
        return json.loads(text)

    def wait_up(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.request("/api/session", token=None)[0] == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"web console not answering at {self.base}")

    def wait_for(self, path: str, check: Any, timeout: float = 20.0) -> Any:
        """Poll ``path`` until ``check(body)`` is true; returns that body."""
        deadline = time.monotonic() + timeout
        body = None
        while time.monotonic() < deadline:
            body = self.json(path)
            if check(body):
                return body
            time.sleep(0.3)
        raise AssertionError(f"{path}: condition not met, last body {body}")


def metric_samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def register(host: Host, work: Path, local: str, remote: str, user: str = "alice") -> None:
    """REGISTER ``user``@example.net from ``host`` with SIPp (port 5090); retried while a
    just-started gateway sheds load (503 Retry-After is its right on a busy machine)."""
    from tests.interop.peers import Sipp  # noqa: PLC0415

    for attempt in range(6):
        d = work / f"reg{attempt}"
        d.mkdir()
        reg = Sipp(
            host, d, f"register{attempt}", "register.xml", local=local, port=5090,
            remote=remote, keys={"domain": "example.net", "expires": "300"}, extra=["-s", user],
        )  # fmt: skip
        if reg.wait() == 0:
            return
        if "503 Service Unavailable" not in reg.messages():
            raise AssertionError(reg.messages())
        time.sleep(1.0)
    raise AssertionError("REGISTER kept getting 503")
