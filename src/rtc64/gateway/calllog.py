# One log line per registration change and per call event, for operators (Kamailio's
# acc/ul logs, rtpengine's call lines).
#
# Rules:
# - Registrations (logger ``rtc64.proxy.registrar``): a new contact, a removed contact (expires=0,
#   wildcard, replaced) and an expired one at info; a refresh of an existing contact at
#   debug. Fields: event, aor, contact, family, transport, source, expires.
# - Calls (logger ``rtc64.proxy.calls``): set-up (the INVITE forwarded), answered (its first
#   2xx), ended (BYE and who sent it, a final failure status, cancel, media timeout) with
#   duration. Fields: event, call_id, from, to, caller_family, caller_transport, source,
#   callee_family, callee_transport, callee, relay, status, reason, duration, talk.
# - Every field is passed as ``extra``: ``--log-format json`` shows them as JSON members,
#   the text format as key=value after the sentence.
# - The lines' fields are built only when the logger writes info lines (the call itself is
#   remembered either way, for the console's snapshot).
# - Memory is bounded: at most ``MAX_CALLS`` calls are remembered; the oldest is dropped.
"""Registration and call event log lines with structured fields."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from rtc64.gateway.location.bindings import ROW_EXPIRES_AT, Binding, BindingRow
from rtc64.gateway.location.deadlines import Deadlines
from rtc64.gateway.location.registrar import same_contact
from rtc64.gateway.stats import CallParty, CallView
from rtc64.net.address import Family, IPAddress, family_of
from rtc64.net.endpoint import Flow, Transport
from rtc64.sip.message import Request
from rtc64.sip.uri import format_uri

MAX_CALLS = 100_000


def _family(address: IPAddress | None) -> str:
    return "" if address is None else family_of(address).label


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters (terminal escapes, CR) shown as ``\\xNN``; peers
    write what ends up in the log. Newlines and tabs stay."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _text(value: bytes) -> str:
    return printable(value.decode("utf-8", "replace"))


def _aor(uri: object) -> str:
    try:
        return _text(format_uri(uri))  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        return printable(str(uri))


# --- registrations ---------------------------------------------------------------------


def _binding_fields(event: str, b: Binding) -> dict[str, object]:
    return {
        "event": event,
        "aor": b.aor,
        "contact": _text(b.contact),
        "family": _family(b.received_ip),
        "transport": b.transport,
        "source": "" if b.received_ip is None else f"{b.received_ip}:{b.received_port}",
        "user_agent": _text(b.user_agent),
    }


def log_registration(
    log: logging.Logger,
    before: Sequence[Binding],
    after: Sequence[Binding],
    now: float,
) -> None:
    """Log what a REGISTER changed for one AOR: new, refreshed and removed contacts."""
    if not log.isEnabledFor(logging.INFO):
        return  # nothing below would be written: build no fields
    old = list(before)
    for b in after:
        match = next((o for o in old if same_contact(o.contact, b.contact)), None)
        if match is not None:
            old.remove(match)
        expires = max(0, round(b.expires_at - now))
        fields = {**_binding_fields("refresh" if match else "register", b), "expires": expires}
        level = logging.DEBUG if match else logging.INFO
        what = "refreshed" if match else "registered"
        log.log(level, "%s %s: %s via %s %s", b.aor, what, fields["contact"],
                b.transport, fields["source"], extra=fields)  # fmt: skip
    for o in old:
        fields = _binding_fields("unregister", o)
        log.info("%s unregistered: %s", o.aor, fields["contact"], extra=fields)


def log_expired(log: logging.Logger, bindings: Sequence[Binding]) -> None:
    """Log contacts the registrar removed because they expired."""
    for b in bindings:
        fields = _binding_fields("expired", b)
        log.info("%s expired: %s", b.aor, fields["contact"], extra=fields)


class Lookup(Protocol):
    async def lookup(self, aor: str, now: float) -> list[Binding]: ...


class RegistrationLog:
    """Registration lines, and the contacts registered here watched until they expire
    (the store only counts what it removes). A contact another gateway refreshed in a
    shared store is not reported as expired: the store is asked before each line.
    Watched contacts are rows (untracked by the collector) with their expiry in a heap:
    a sweep touches only the contacts whose time has come."""

    def __init__(self, log: logging.Logger) -> None:
        self.log = log
        self._watched: dict[tuple[str, bytes], BindingRow] = {}
        self._deadlines: Deadlines[tuple[str, bytes]] = Deadlines()

    def __len__(self) -> int:
        return len(self._watched)

    def _watch(self, b: Binding) -> None:
        key = (b.aor, b.contact)
        self._watched[key] = b.to_row()
        self._deadlines.schedule(key, b.expires_at)

    def changed(self, before: Sequence[Binding], after: Sequence[Binding], now: float) -> None:
        """A REGISTER changed an AOR: log it, watch what is left."""
        log_registration(self.log, before, after, now)
        for b in before:
            self._watched.pop((b.aor, b.contact), None)
        for b in after:
            self._watch(b)

    async def sweep(self, store: Lookup, now: float) -> int:
        """Log the watched contacts whose time is up and that the store no longer has."""
        due: list[Binding] = []
        for key in self._deadlines.due(now):
            row = self._watched.get(key)
            if row is None:
                continue
            if row[ROW_EXPIRES_AT] > now:  # refreshed since: watch until its new time
                self._deadlines.schedule(key, row[ROW_EXPIRES_AT])
                continue
            del self._watched[key]
            due.append(Binding.from_row(row))
        expired: list[Binding] = []
        live: dict[str, list[Binding]] = {}
        for b in due:
            if b.aor not in live:
                live[b.aor] = await store.lookup(b.aor, now)
            again = next((x for x in live[b.aor] if same_contact(x.contact, b.contact)), None)
            if again is None:
                expired.append(b)
            else:
                self._watch(again)
        log_expired(self.log, expired)
        return len(expired)


# --- calls -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    """One call from set-up to end, as received: the texts for log lines and views are
    written when first asked for (never, for a call nobody looks at below info level)."""

    raw_id: bytes
    caller_uri: object
    callee_uri: object
    caller_transport: Transport | None
    caller_at: tuple[IPAddress, int] | None
    started: float
    answered: float | None = None
    callee_transport: Transport | None = None
    callee_at: tuple[IPAddress, int] | None = None
    relay: bool = False
    texts: tuple[str, str, str] | None = None  # call_id, caller, callee once written

    def _texts(self) -> tuple[str, str, str]:
        texts = self.texts
        if texts is None:
            texts = self.texts = (
                _text(self.raw_id),
                _aor(self.caller_uri),
                _aor(self.callee_uri),
            )
        return texts

    @property
    def call_id(self) -> str:
        return self._texts()[0]

    @property
    def caller(self) -> str:
        return self._texts()[1]

    @property
    def callee(self) -> str:
        return self._texts()[2]

    @property
    def caller_family(self) -> str:
        return "" if self.caller_at is None else _family(self.caller_at[0])

    @property
    def caller_transport_name(self) -> str:
        return "" if self.caller_transport is None else self.caller_transport.value

    @property
    def source(self) -> str:
        at = self.caller_at
        return "" if at is None else f"{at[0]}:{at[1]}"

    @property
    def callee_family(self) -> str:
        return "" if self.callee_at is None else _family(self.callee_at[0])

    @property
    def callee_transport_name(self) -> str:
        return "" if self.callee_transport is None else self.callee_transport.value

    @property
    def callee_address(self) -> str:
        at = self.callee_at
        return "" if at is None else f"{at[0]}:{at[1]}"


class CallLog:
    """Remembers calls from set-up to end and logs one line at each step."""

    def __init__(
        self,
        log: logging.Logger,
        clock: Callable[[], float],
        relayed: Callable[[bytes], bool] = lambda _: False,
    ) -> None:
        self.log = log
        self.clock = clock
        self.relayed = relayed
        self._calls: dict[bytes, _Call] = {}

    def __len__(self) -> int:
        return len(self._calls)

    def setup(self, req: Request, flow: Flow | None) -> None:
        """An INVITE without To tag is being forwarded (once per Call-ID)."""
        call_id = req.call_id
        if call_id in self._calls:
            return
        if len(self._calls) >= MAX_CALLS:
            del self._calls[next(iter(self._calls))]
        call = _Call(
            raw_id=call_id,
            caller_uri=req.from_.uri,
            callee_uri=req.to.uri,
            caller_transport=None if flow is None else flow.transport,
            caller_at=None if flow is None else flow.remote,
            started=self.clock(),
        )
        self._calls[call_id] = call
        if not self.log.isEnabledFor(logging.INFO):
            return  # remembered for the console and the end line; nothing to write
        fields = self._common("call-setup", call)
        self.log.info("call %s set up: %s -> %s from %s (%s %s)", fields["call_id"],
                      fields["from"], fields["to"], fields["source"], fields["caller_family"],
                      fields["caller_transport"], extra=fields)  # fmt: skip

    def answered(
        self, call_id: bytes, status: int, hop: tuple[Transport, IPAddress, int] | None
    ) -> None:
        """The first 2xx to the INVITE came back from the callee at ``hop``."""
        call = self._calls.get(call_id)
        if call is None or call.answered is not None:
            return
        call.answered = self.clock()
        if hop is not None:
            call.callee_transport = hop[0]
            call.callee_at = (hop[1], hop[2])
        call.relay = call.relay or self.relayed(call_id)
        if not self.log.isEnabledFor(logging.INFO):
            return
        fields = {
            **self._common("call-answered", call),
            "status": status,
            "callee": call.callee_address,
            "callee_family": call.callee_family,
            "callee_transport": call.callee_transport_name,
            "relay": call.relay,
        }
        self.log.info("call %s answered by %s (%s %s), %s", call.call_id, fields["callee"],
                      fields["callee_family"], fields["callee_transport"],
                      "media relayed" if call.relay else "media direct", extra=fields)  # fmt: skip

    def ended(self, call_id: bytes, reason: str, status: int | None = None) -> None:
        """The call is over (``reason``: bye-caller, bye-callee, failed, cancelled,
        media-timeout, ...); forgotten afterwards."""
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        if not self.log.isEnabledFor(logging.INFO):
            return
        now = self.clock()
        duration = round(now - call.started, 3)
        talk = round(now - call.answered, 3) if call.answered is not None else 0.0
        fields = {
            **self._common("call-ended", call),
            "reason": reason,
            "status": status,
            "duration": duration,
            "talk": talk,
            "callee_family": call.callee_family,
            "callee_transport": call.callee_transport_name,
            "relay": call.relay,
        }
        shown = reason if status is None else f"{reason} {status}"
        self.log.info("call %s ended: %s after %.1f s (talk %.1f s)", call.call_id, shown,
                      duration, talk, extra=fields)  # fmt: skip

    def snapshot(self, live: Callable[[bytes], str | None]) -> list[CallView]:
        """The calls remembered whose dialog ``live`` gives a state for (``early`` or
        ``confirmed``; None: gone), oldest first, as read-only views."""
        now = self.clock()
        found: list[CallView] = []
        for raw_id, call in self._calls.items():
            state = live(raw_id)
            if state is None:
                continue
            at = call.caller_at
            caller = CallParty(
                None if at is None else family_of(at[0]), call.caller_transport_name, at
            )
            callee = None
            if call.answered is not None:
                where = call.callee_at
                callee = CallParty(
                    None if where is None else family_of(where[0]),
                    call.callee_transport_name,
                    where,
                )
            found.append(
                CallView(
                    call_id=raw_id,
                    caller_uri=call.caller,
                    callee_uri=call.callee,
                    state=state,
                    age=max(0.0, now - call.started),
                    talk=None if call.answered is None else max(0.0, now - call.answered),
                    caller=caller,
                    callee=callee,
                    relayed=call.relay or self.relayed(raw_id),
                )
            )
        return found

    def families(self) -> dict[str, int]:
        """Calls in progress by caller family (for status summaries)."""
        counts: dict[str, int] = {f.label: 0 for f in Family}
        for call in self._calls.values():
            if call.caller_at is not None:
                counts[family_of(call.caller_at[0]).label] += 1
        return counts

    @staticmethod
    def _common(event: str, call: _Call) -> dict[str, object]:
        return {
            "event": event,
            "call_id": call.call_id,
            "from": call.caller,
            "to": call.callee,
            "caller_family": call.caller_family,
            "caller_transport": call.caller_transport_name,
            "source": call.source,
        }
