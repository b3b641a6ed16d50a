"""Report rendering: the versioned JSON document, plain text, the self-contained HTML."""

from __future__ import annotations

import json

from rtc64.probe import report
from rtc64.probe.verdict import Aspect, Check, Report, Status, TargetReport

HOSTILE = '<script>alert("x")</script>'


def sample() -> Report:
    checks = (
        Check(
            "sip.options",
            Status.PASS,
            "sip.answered",
            "ok",
            family=4,
            aspect=Aspect.SIGNALLING,
            group="o",
            reach=True,
        ),
        Check(
            "sip.options",
            Status.FAIL,
            "net.timeout",
            f"no answer {HOSTILE}",
            family=6,
            aspect=Aspect.SIGNALLING,
            group="o",
            reach=True,
            evidence={"server": HOSTILE, "raw": b"\xffbytes", "list": (1, 2)},
        ),
    )
    return Report(
        (TargetReport("sip:example.net", "sip", checks),), "2026-12-07T07:00:00+00:00", 1.5
    )


def test_json_document_has_the_documented_fields() -> None:
    doc = json.loads(report.dumps(sample()))
    assert doc["schema"] == "rtc64-probe/1.0"
    assert doc["exit_code"] == 1
    target = doc["targets"][0]
    assert target["matrix"]["signalling"] == {
        "ipv6-only": "fail",
        "dual-stack": "warn",
        "nat64": "warn",
    }
    assert target["score"] == 25  # (0 * 2 + 50 + 50) / 4
    check = target["checks"][1]
    assert set(check) == {
        "id",
        "status",
        "reason",
        "family",
        "aspect",
        "message",
        "hint",
        "evidence",
    }
    assert check["hint"]  # the reason's default hint
    assert check["evidence"]["raw"] == "\ufffdbytes"
    assert check["evidence"]["list"] == [1, 2]


def test_html_is_self_contained_and_escaped() -> None:
    page = report.to_html(sample())
    assert HOSTILE not in page
    assert "&lt;script&gt;" in page
    assert "<link" not in page and "src=" not in page  # nothing fetched from elsewhere
    assert 'class="fail"' in page


def test_text_lists_failures_with_hints_and_the_matrix() -> None:
    out = report.text(sample())
    assert "[FAIL] sip.options IPv6" in out
    assert "hint:" in out
    assert "ipv6-only" in out and "exit code 1" in out


def test_terminal_text_carries_no_control_characters_from_a_target() -> None:
    evil = "\x1b]0;pwned\x07\x1b[2J 401 Unauthorized\r\n"
    check = Check("sip.register", Status.FAIL, "sip.register-failed", f"REGISTER: {evil}")
    line = report.check_line(check)
    assert "\x1b" not in line and "\x07" not in line and "\r" not in line
    assert "401 Unauthorized" in line
