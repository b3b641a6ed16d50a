# A request handler's way to say "answer this error" (RFC 8489 §6.3.1.1 error responses).
"""Refuse: the STUN error a request handler answers with."""

from __future__ import annotations


class Refuse(Exception):  # noqa: N818 (a control-flow signal, not an error of ours)
    """Raised inside a request handler: answer ``code`` (signed like any answer)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason
