"""Rendering a probe ``Report``: JSON (versioned schema), plain text, self-contained HTML.

Rules (docs/probe-schema.md): the JSON document carries ``schema`` (``rtc64-probe/1.0``);
fields are only ever added within a major version. Evidence values are made JSON-safe
(addresses as text, bytes as UTF-8 with replacement). The HTML page embeds its style,
needs no network and escapes every value that came from a target.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

from rtc64 import __version__
from rtc64.probe.verdict import (
    SCHEMA_VERSION,
    Check,
    Report,
    Scenario,
    Status,
    TargetReport,
    exit_code,
)

SCHEMA = f"rtc64-probe/{SCHEMA_VERSION}"
SYMBOL = {
    Status.PASS: "ok",
    Status.WARN: "warn",
    Status.FAIL: "FAIL",
    Status.SKIPPED: "-",
    Status.INFO: "info",
}


def _safe(value: object) -> object:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_safe(v) for v in value]
    return str(value)


def check_json(check: Check) -> dict[str, object]:
    return {
        "id": check.id,
        "status": check.status.value,
        "reason": check.reason,
        "family": check.family,
        "aspect": check.aspect.value if check.aspect else None,
        "message": check.message,
        "hint": check.fix,
        "evidence": _safe(check.evidence),
    }


def target_json(target: TargetReport) -> dict[str, object]:
    return {
        "target": target.target,
        "kind": target.kind,
        "error": target.error or None,
        "unreachable": target.unreachable,
        "score": target.score(),
        "matrix": {
            a.value: {s.value: st.value for s, st in row.items()}
            for a, row in target.matrix().items()
        },
        "checks": [check_json(c) for c in target.checks],
    }


def to_json(report: Report) -> dict[str, object]:
    return {
        "schema": SCHEMA,
        "version": __version__,
        "started": report.started,
        "duration": report.duration,
        "exit_code": exit_code(report),
        "options": _safe(report.options),
        "targets": [target_json(t) for t in report.targets],
    }


def dumps(report: Report) -> str:
    return json.dumps(to_json(report), indent=2, ensure_ascii=False)


# ---- plain text -----------------------------------------------------------------------


def matrix_lines(target: TargetReport) -> list[str]:
    rows = [f"  {'':12}" + "".join(f"{s.value:>12}" for s in Scenario)]
    for aspect, row in target.matrix().items():
        rows.append(f"  {aspect.value:12}" + "".join(f"{SYMBOL[row[s]]:>12}" for s in Scenario))
    return rows


_CONTROL = dict.fromkeys((*range(0x20), *range(0x7F, 0xA0)), "?")


def printable(text: str) -> str:
    """``text`` without control characters: a target's words never drive the terminal."""
    return text.translate(_CONTROL)


def check_line(check: Check) -> str:
    fam = f" IPv{check.family}" if check.family else ""
    message = printable(check.message)
    return f"  [{SYMBOL[check.status]:>4}] {check.id}{fam}: {message} ({check.reason})"


def text(report: Report, *, verbose: bool = False) -> str:
    out: list[str] = []
    for target in report.targets:
        score = target.score()
        shown = f"score {score}/100" if score is not None else "no score"
        out.append(f"{printable(target.target)} ({target.kind}): {shown}")
        if target.error:
            out.append(f"  error: {printable(target.error)}")
        for check in target.checks:
            if verbose or check.status is not Status.SKIPPED:
                out.append(check_line(check))
                if check.status in (Status.FAIL, Status.WARN) and check.fix:
                    out.append(f"         hint: {printable(check.fix)}")
        if target.kind != "network":
            out += matrix_lines(target)
        out.append("")
    out.append(f"exit code {exit_code(report)}, {report.duration:g} s")
    return "\n".join(out)


# ---- HTML -----------------------------------------------------------------------------

_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#222;
background:#fafafa;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} .sub{color:#666;margin-top:0}
section{background:#fff;border:1px solid #ddd;border-radius:8px;padding:1em 1.4em;margin:1.4em 0;
box-shadow:0 1px 3px #0001}
h2{font-size:1.25em;margin:.2em 0 .6em} .score{float:right;font-size:1.6em;font-weight:700}
table.matrix{border-collapse:separate;border-spacing:4px;margin:.6em 0 1em}
table.matrix th{font-weight:600;text-align:left;padding:.3em .8em}
table.matrix td{text-align:center;padding:.5em 1.2em;border-radius:6px;font-weight:700;
min-width:6em}
.pass{background:#d8f3dc;color:#1b5e20} .warn{background:#fff3cd;color:#7a5200}
.fail{background:#f8d7da;color:#8a1c25} .skipped{background:#eee;color:#777}
.info{background:#e3ecfa;color:#23446e}
ul.checks{list-style:none;padding:0;margin:0} ul.checks li{border-top:1px solid #eee;
padding:.45em 0} .badge{display:inline-block;min-width:4.2em;text-align:center;
border-radius:4px;padding:0 .4em;margin-right:.6em;font-size:.85em;font-weight:700}
.reason{color:#666;font-family:monospace;font-size:.85em} .hint{color:#444;margin:.2em 0 0 5.4em}
details{margin:.2em 0 0 5.4em} pre{background:#f4f4f4;padding:.6em;overflow:auto;
font-size:.82em;border-radius:4px} .err{color:#8a1c25;font-weight:600}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _matrix_html(target: TargetReport) -> str:
    head = "".join(f"<th>{_e(s.value)}</th>" for s in Scenario)
    rows = []
    for aspect, row in target.matrix().items():
        cells = "".join(f'<td class="{row[s].value}">{_e(row[s].value)}</td>' for s in Scenario)
        rows.append(f"<tr><th>{_e(aspect.value)}</th>{cells}</tr>")
    return f'<table class="matrix"><tr><th></th>{head}</tr>{"".join(rows)}</table>'


def _check_html(check: Check) -> str:
    fam = f" · IPv{check.family}" if check.family else ""
    parts = [
        f'<li><span class="badge {check.status.value}">{_e(check.status.value)}</span>'
        f"<b>{_e(check.id)}</b>{_e(fam)} — {_e(check.message)} "
        f'<span class="reason">{_e(check.reason)}</span>'
    ]
    if check.status in (Status.FAIL, Status.WARN) and check.fix:
        parts.append(f'<div class="hint">Fix: {_e(check.fix)}</div>')
    if check.evidence:
        body = json.dumps(_safe(check.evidence), indent=2, ensure_ascii=False)
        parts.append(f"<details><summary>evidence</summary><pre>{_e(body)}</pre></details>")
    parts.append("</li>")
    return "".join(parts)


_ORDER = {Status.FAIL: 0, Status.WARN: 1, Status.PASS: 2, Status.INFO: 3, Status.SKIPPED: 4}


def _worst_first(checks: tuple[Check, ...]) -> list[Check]:
    """Failures first, then warnings: what a reader must fix is at the top."""
    return sorted(checks, key=lambda c: _ORDER[c.status])


def to_html(report: Report) -> str:
    sections = []
    for target in report.targets:
        score = target.score()
        err = f'<p class="err">error: {_e(target.error)}</p>' if target.error else ""
        checks = "".join(_check_html(c) for c in _worst_first(target.checks))
        counts = " · ".join(
            f'<span class="badge {st.value}">{n} {_e(st.value)}</span>'
            for st in (Status.FAIL, Status.WARN, Status.PASS, Status.SKIPPED, Status.INFO)
            if (n := sum(c.status is st for c in target.checks))
        )
        sections.append(
            f'<section><span class="score" title="IPv6 readiness score">'
            f"{_e(score if score is not None else '-')}<small>/100</small>"
            f"</span><h2>{_e(target.target)} <small>({_e(target.kind)})</small></h2>{err}"
            f"<p>{counts}</p>"
            f"{_matrix_html(target) if target.kind != 'network' else ''}"
            f'<ul class="checks">{checks}</ul></section>'
        )
    code = exit_code(report)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>rtc64 probe report</title>"
        f'<meta name="generator" content="rtc64 {_e(__version__)}"><style>{_CSS}</style></head>'
        f"<body><h1>IPv6 readiness report</h1>"
        f'<p class="sub">rtc64 probe {_e(__version__)} · {_e(report.started)} · '
        f"{_e(report.duration)} s · exit code {code} · schema {_e(SCHEMA)}</p>"
        f"{''.join(sections)}</body></html>\n"
    )
