# The plumbing a TURN client connection and an RFC 6062 peer connection share once
# ConnectionBind has spliced them (RFC 6062 §5.4): raw bytes both ways, flow control
# forwarded, the end of one ending the other.
#
# Rules:
# - ``Splice`` is what one end calls on the other: ``write`` (each end's own accounting),
#   ``eof`` after the last byte, ``pause``/``resume`` its reading, ``close``.
# - ``SplicedStream`` implements the transport side of it for both ends: nothing is done
#   on a closed end or one without a transport; ``close`` closes once.
# - When its own writing backs up (``pause_writing``), an end pauses its partner's
#   reading, and resumes it after; when its connection is lost, its partner is closed.
"""The shared half of a spliced TURN stream connection (client or RFC 6062 peer)."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Splice(Protocol):
    """The other end of a spliced connection: ``write`` to it, ``eof`` after the last
    byte, ``pause``/``resume`` its reading (flow control), ``close``."""

    def write(self, data: bytes) -> None: ...

    def eof(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def close(self) -> None: ...


class SplicedStream(asyncio.Protocol):
    """A stream connection that may be spliced to a ``partner`` (see the module rules).
    Subclasses set ``transport`` in ``connection_made`` and call ``unsplice`` from
    ``connection_lost``."""

    transport: asyncio.Transport | None
    partner: Splice | None
    closed: bool

    # --- flow control and the end, forwarded to the partner -------------------------------

    def pause_writing(self) -> None:
        if self.partner is not None:
            self.partner.pause()

    def resume_writing(self) -> None:
        if self.partner is not None:
            self.partner.resume()

    def unsplice(self) -> None:
        """This connection is gone: closed, and so is its partner."""
        self.closed = True
        partner, self.partner = self.partner, None
        if partner is not None:
            partner.close()

    # --- Splice, seen from the partner ------------------------------------------------------

    def eof(self) -> None:
        transport = self.transport
        if transport is not None and not self.closed and transport.can_write_eof():
            transport.write_eof()

    def pause(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
