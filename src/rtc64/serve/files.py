"""What ``rtc64 serve`` reads and writes in its data directory before anything listens: the
store (checked), the digest authenticator, and the TLS identities of SIP and TURN
(configured certificates, else the self-signed one made once and kept)."""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rtc64.config import Config, data_dir_error, realm_of
from rtc64.errors import ConfigError
from rtc64.gateway.auth import Authenticator
from rtc64.gateway.location.backends import open_store, parse_store_url
from rtc64.gateway.location.store import Store
from rtc64.io import tls
from rtc64.net.endpoint import ListenSpec, Transport
from rtc64.settings import (
    digest_algorithms,
)

if TYPE_CHECKING:
    pass


def authenticator(
    cfg: Config, store: Store, secret: bytes, log: logging.Logger, worker: int | None = None
) -> Authenticator:
    """Digest authentication and failure blocking from ``auth.*`` and the trusted networks
    (``worker``: a SIP worker's index, in its nonces; earlier nonces are stale to it)."""
    auth = cfg.auth
    return Authenticator(
        realm=realm_of(cfg),
        users=auth.users,
        store=store,
        trusted=cfg.sip.trusted_networks,
        nonce_lifetime=auth.nonce_lifetime,
        max_failures=auth.max_failures,
        block_seconds=auth.block_seconds,
        log=log.getChild("auth"),
        algorithms=digest_algorithms(auth),
        secret=secret,
        worker=worker,
        started=float("-inf") if worker is None else time.time(),
    )


@contextlib.contextmanager
def data_files(data_dir: Path, elsewhere: str = "general.data_dir") -> Iterator[None]:
    """Turn a failure to read or write a file of the data directory (the secret, the
    generated certificate) into the one-line ``ConfigError`` naming that file; a file
    outside ``data_dir`` is reported under the key ``elsewhere``."""
    try:
        yield
    except OSError as exc:
        if exc.filename is None:
            raise
        problem = exc.strerror or type(exc).__name__
        expected = f"a readable, writable file ({problem})"
        if Path(exc.filename).resolve().is_relative_to(data_dir.resolve()):
            raise data_dir_error(exc.filename, expected) from None
        raise ConfigError(elsewhere, str(exc.filename), expected) from None


async def open_checked_store(cfg: Config, *, shared: bool = False) -> Store:
    """``open_store`` after ``prepare_data_dir``; a directory where the SQLite file should
    be is a one-line ``ConfigError`` rather than SQLite's "unable to open database file".
    ``shared``: SIP workers write it too."""
    data_dir = cfg.prepare_data_dir()
    url = cfg.store.url
    path = parse_store_url(url, data_dir).path
    if path is not None and path.exists() and not path.is_file():
        key = "store.url" if url != "sqlite" else "general.data_dir"
        raise ConfigError(key, str(path), "an SQLite database file (something else is in the way)")
    with data_files(data_dir, elsewhere="store.url"):
        return await open_store(url, data_dir, shared=shared)


def turn_tls(cfg: Config, data_dir: Path, log: logging.Logger) -> ssl.SSLContext | None:
    """The certificate of TURN's TLS listeners (``turn.tls_cert``/``turn.tls_key``, else
    the gateway's self-signed one)."""
    if not any(s.transport is Transport.TLS for s in cfg.turn.listen):
        return None
    turn = cfg.turn
    cert, key = turn.tls_cert, turn.tls_key
    return tls_context(data_dir, turn.listen, cert, key, "turn.tls_cert", log=log)


def server_tls(cfg: Config, data_dir: Path, log: logging.Logger) -> ssl.SSLContext | None:
    """The certificate for TLS/WSS listeners (configured, or self-signed and kept)."""
    if not any(s.transport.secure for s in cfg.sip.listen):
        return None
    sip = cfg.sip
    cert, key = sip.tls_cert, sip.tls_key
    context = tls_context(data_dir, sip.listen, cert, key, "sip.tls_cert", log=log)
    if sip.tls_verify_clients and sip.tls_client_ca:
        tls.request_client_certificates(context, Path(sip.tls_client_ca).expanduser())
        log.info("TLS listeners ask for client certificates (CAs %s)", sip.tls_client_ca)
    return context


def client_certificate(cfg: Config, data_dir: Path) -> tuple[Path, Path] | None:
    """What outbound TLS presents (``sip.tls_alias``): the configured certificate, else
    the gateway's self-signed one."""
    sip = cfg.sip
    if not sip.tls_alias:
        return None
    if sip.tls_cert:
        key = sip.tls_key or sip.tls_cert
        return Path(sip.tls_cert).expanduser(), Path(key).expanduser()
    addresses = [s.address for s in sip.listen if not s.address.is_unspecified]
    with data_files(data_dir, elsewhere="sip.tls_cert"):
        return tls.ensure_self_signed(data_dir, addresses=addresses)


def tls_context(
    data_dir: Path,
    specs: Sequence[ListenSpec],
    cert: str,
    key: str,
    elsewhere: str,
    *,
    log: logging.Logger,
) -> ssl.SSLContext:
    """A server context from the configured certificate, else the data directory's
    self-signed one (made once, naming the listeners' specific addresses)."""
    with data_files(data_dir, elsewhere=elsewhere):
        identity = tls.server_identity(
            data_dir,
            Path(cert).expanduser() if cert else None,
            Path(key).expanduser() if key else None,
            addresses=[s.address for s in specs if not s.address.is_unspecified],
            log=log,
        )
    return identity.context
