"""docs/probe-schema.md lists every reason code (monitoring matches on them)."""

from __future__ import annotations

from pathlib import Path

from rtc64.probe.reasons import REASONS
from rtc64.probe.report import SCHEMA

DOC = Path(__file__).resolve().parents[3] / "docs" / "probe-schema.md"


def test_every_reason_code_is_documented() -> None:
    text = DOC.read_text()
    missing = [code for code in REASONS if f"`{code}`" not in text]
    assert not missing


def test_the_documented_schema_version_is_the_one_written() -> None:
    assert f'"schema": "{SCHEMA}"' in DOC.read_text()
