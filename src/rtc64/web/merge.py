# Merging what several processes of one gateway report (``web.peers``).
#
# Rules: metrics merge by sample (name and labels, as rendered): summed, except build info
# and uptime (the first process's), loop lag (the largest) and ``_created`` time stamps
# (the earliest). Store-wide figures (registrations, blocks) are rendered by worker 0 only
# (the others' views leave them out), so nothing is counted twice. Lists (calls, TURN
# allocations) are concatenated.
"""Merging metrics expositions and JSON lists of several processes."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence

from rtc64.web.views import Json

_FIRST = frozenset({"rtc64_build_info", "rtc64_uptime_seconds"})
_LARGEST = frozenset({"rtc64_event_loop_lag_seconds"})


def merge_metrics(texts: Sequence[bytes]) -> bytes:
    """Prometheus text expositions of several processes as one (see the rules)."""
    families: dict[str, list[str]] = {}  # family -> its HELP/TYPE lines
    order: list[str] = []
    samples: dict[str, dict[str, float]] = {}  # family -> sample key -> value
    for text in texts:
        family = ""
        for line in text.decode("utf-8", "replace").splitlines():
            if not line:
                continue
            if line.startswith("#"):
                parts = line.split(" ", 3)
                if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                    family = parts[2]
                    if family not in families:
                        families[family] = []
                        order.append(family)
                        samples[family] = {}
                    head = families[family]
                    if len(head) < 2 and line not in head:
                        head.append(line)
                continue
            key, _, raw = line.rpartition(" ")
            try:
                value = float(raw)
            except ValueError:
                continue
            if family not in samples:
                families[family] = []
                order.append(family)
                samples[family] = {}
            seen = samples[family]
            name = key.split("{", 1)[0]
            if key not in seen:
                seen[key] = value
            elif name in _FIRST:
                continue
            elif name in _LARGEST:
                seen[key] = max(seen[key], value)
            elif name.endswith("_created"):
                seen[key] = min(seen[key], value)
            else:
                seen[key] += value
    out: list[str] = []
    for family in order:
        out += families[family]
        out += [f"{key} {_number(v)}" for key, v in samples[family].items()]
    return ("\n".join(out) + "\n").encode()


def _number(value: float) -> str:
    """A sample value as the exposition format writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def reporting(count: int) -> bytes:
    """The gauge telling how many processes the merged figures cover."""
    return (
        "# HELP rtc64_processes_reporting processes whose figures this scrape sums\n"
        "# TYPE rtc64_processes_reporting gauge\n"
        f"rtc64_processes_reporting {count}.0\n"
    ).encode()


def merge_lists(own: Json, others: Sequence[bytes], key: str) -> Json:
    """``own[key]`` (a JSON list) extended with the others' lists under the same key."""
    assert isinstance(own, dict)
    merged = list(own.get(key) or [])
    for body in others:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            merged += list(json.loads(body).get(key) or [])
    return {**own, key: merged}


def _bodies(others: Sequence[bytes], key: str) -> list[Json]:
    found: list[Json] = []
    for body in others:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            found += list(json.loads(body).get(key) or [])
    return found


def call_families_of(others: Sequence[bytes]) -> list[tuple[str, str]]:
    """(caller family, callee family) of each call the others list (``/api/calls``)."""
    out = []
    for call in _bodies(others, "calls"):
        fams = call.get("families") if isinstance(call, dict) else None
        fams = [str(f) for f in fams] if isinstance(fams, list) else []
        out.append((fams[0] if fams else "unknown", fams[1] if len(fams) > 1 else "unknown"))
    return out


def allocations_of(others: Sequence[bytes]) -> int:
    """TURN allocations the others list (``/api/turn``)."""
    return len(_bodies(others, "allocations"))


def add_latest(own: Json, others: Sequence[bytes]) -> Json:
    """``own`` (a history sample) plus the numbers of each other process's latest sample
    (``/api/history``); its time stays."""
    assert isinstance(own, dict)
    merged = dict(own)
    for body in others:
        found = _bodies([body], "samples")
        sample: object = found[-1] if found else None
        if not isinstance(sample, dict):
            continue
        for key, value in sample.items():
            mine = merged.get(key)
            if key != "time" and isinstance(value, int | float) and isinstance(mine, int | float):
                merged[key] = mine + value
    return merged
