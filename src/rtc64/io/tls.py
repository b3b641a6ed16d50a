# Rules: SIP over TLS (RFC 3261 §26.2, RFC 5630) and WSS (RFC 7118) use a configured PEM
# certificate chain and key, or a self-signed certificate generated once into the data dir
# and reused on later starts, so its SHA-256 fingerprint (RFC 4572 §5 form) stays stable
# for peers that pin it. Private keys are written 0600. TLS 1.2 is the minimum.
# Outbound (RFC 5922, RFC 5923 §6): the server's chain is verified against the system CAs
# or the configured bundle; its identity must be the SIP domain the request is sent to
# (``sip.tls_identity``), checked before any byte is written. Verification is off only
# globally or for listed names (labs), and says so in the log.
# Mutual TLS (RFC 5923 connection reuse between servers): listeners given client CAs ask
# each client for a certificate without requiring one (a client without one still
# connects; one whose certificate does not verify is refused in the handshake); the client
# side may present the gateway's own certificate.
"""TLS contexts: server identity (configured or self-signed) and outbound client contexts."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import logging
import os
import secrets
import socket
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rtc64.errors import ConfigError
from rtc64.net.address import IPAddress
from rtc64.sip import tls_identity

CERT_FILE = "sip-tls-cert.pem"
KEY_FILE = "sip-tls-key.pem"
VALIDITY = datetime.timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class TlsIdentity:
    """A server context and what identifies it."""

    context: ssl.SSLContext
    cert_path: Path
    fingerprint: str
    """SHA-256 of the DER certificate, ``AB:CD:...`` (RFC 4572 §5)."""
    generated: bool
    """True when the certificate is our self-signed one."""


def fingerprint(der: bytes) -> str:
    """The SHA-256 fingerprint of a DER certificate as upper-case hex pairs joined by colons."""
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def pem_fingerprint(path: Path) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return fingerprint(cert.public_bytes(serialization.Encoding.DER))


def server_identity(
    data_dir: Path,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    *,
    addresses: Iterable[IPAddress] = (),
    log: logging.Logger | None = None,
    client_ca: Path | None = None,
) -> TlsIdentity:
    """The server context from ``cert_file``/``key_file``, or from a self-signed certificate
    in ``data_dir`` (created on first use, with ``addresses`` in its subjectAltName).
    ``client_ca``: ask clients for a certificate (optional) verified against these CAs."""
    generated = cert_file is None
    if cert_file is None:
        if key_file is not None:
            raise ConfigError("sip.tls_key", str(key_file), "empty unless sip.tls_cert is set")
        cert_file, key_file = ensure_self_signed(data_dir, addresses=addresses, log=log)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        key = "sip.tls_cert" if not generated else "general.data_dir"
        raise ConfigError(
            key, str(cert_file), f"a readable PEM certificate and key ({exc})"
        ) from exc
    if client_ca is not None:
        request_client_certificates(context, client_ca)
    fp = pem_fingerprint(cert_file)
    if log is not None:
        kind = "self-signed" if generated else "configured"
        log.info("TLS certificate %s (%s), SHA-256 %s", cert_file, kind, fp)
    return TlsIdentity(context, cert_file, fp, generated)


def ensure_self_signed(
    data_dir: Path,
    *,
    addresses: Iterable[IPAddress] = (),
    log: logging.Logger | None = None,
) -> tuple[Path, Path]:
    """Paths of the self-signed certificate and key in ``data_dir``; generate them if
    missing or expired. An existing valid pair is reused as it is."""
    cert_path, key_path = data_dir / CERT_FILE, data_dir / KEY_FILE
    now = datetime.datetime.now(datetime.UTC)
    if cert_path.exists() and key_path.exists():
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if cert.not_valid_after_utc > now + datetime.timedelta(days=1):
            return cert_path, key_path
        if log is not None:
            log.warning("self-signed TLS certificate %s expired; generating a new one", cert_path)
    data_dir.mkdir(parents=True, exist_ok=True)
    cert_pem, key_pem = _generate(now, addresses)
    _write(key_path, key_pem, 0o600)
    _write(cert_path, cert_pem, 0o644)
    if log is not None:
        log.info("generated self-signed TLS certificate %s", cert_path)
    return cert_path, key_path


def _generate(now: datetime.datetime, addresses: Iterable[IPAddress]) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname() or "localhost"
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    alt: list[x509.GeneralName] = [x509.DNSName(host)]
    if host != "localhost":
        alt.append(x509.DNSName("localhost"))
    ips = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    ips += [a for a in addresses if not a.is_unspecified and a not in ips]
    alt += [x509.IPAddress(ip) for ip in ips]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def request_client_certificates(context: ssl.SSLContext, client_ca: Path) -> None:
    """Make a server ``context`` ask for (not require) a client certificate that must
    chain to ``client_ca``; ``ConfigError`` naming ``sip.tls_client_ca`` if unreadable."""
    try:
        context.load_verify_locations(cafile=client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "sip.tls_client_ca", str(client_ca), f"a readable PEM file of CA certificates ({exc})"
        ) from exc
    context.verify_mode = ssl.CERT_OPTIONAL


def client_context(cafile: Path | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """A context for outbound TLS: system CAs (or ``cafile`` alone), hostname checked.

    ``verify=False`` accepts any certificate: only for peers pinned by fingerprint, or
    names an operator exempted (``TlsClientPolicy``). Raises ``ConfigError`` naming
    ``sip.tls_ca_file`` when that file cannot be read as PEM certificates.
    """
    try:
        context = ssl.create_default_context(cafile=cafile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            "sip.tls_ca_file", str(cafile), f"a readable PEM file of CA certificates ({exc})"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class TlsClientPolicy:
    """How outbound TLS connections are checked, per server name (RFC 5922).

    ``name`` is the SIP domain of the target (or its IP literal). Verified names get a
    context that checks the chain against the system CAs, or ``cafile`` alone when given,
    and ``check_peer`` then compares the certificate with the name. Names in
    ``no_verify`` (exact, case-insensitive), or every name when ``verify`` is False, get
    a context that accepts any certificate. ``context`` replaces the verifying context
    (tests trust one certificate that way).
    """

    def __init__(
        self,
        *,
        verify: bool = True,
        cafile: Path | None = None,
        no_verify: Iterable[str] = (),
        context: ssl.SSLContext | None = None,
        certificate: tuple[Path, Path] | None = None,
    ) -> None:
        self.certificate = certificate
        """(chain, key) presented to servers that ask (mutual TLS, RFC 5923)."""
        self.verify = verify
        self.no_verify = frozenset(tls_identity.normalise(n) for n in no_verify)
        self._verifying = context
        self._cafile = cafile
        self._open: ssl.SSLContext | None = None
        if verify and context is None:
            self._verifying = self._new_verifying()
        elif context is not None:
            self._present(context)

    def verifies(self, name: str) -> bool:
        """Whether a connection for ``name`` checks the server's certificate."""
        return self.verify and tls_identity.normalise(name) not in self.no_verify

    def context_for(self, name: str) -> ssl.SSLContext:
        """The context to open a connection for ``name`` with."""
        if self.verifies(name):
            if self._verifying is None:
                self._verifying = self._new_verifying()
            return self._verifying
        if self._open is None:
            self._open = client_context(verify=False)
            self._present(self._open)
        return self._open

    def _present(self, context: ssl.SSLContext) -> None:
        if self.certificate is None:
            return
        chain, key = self.certificate
        try:
            context.load_cert_chain(chain, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                "sip.tls_cert", str(chain), f"a readable PEM certificate and key ({exc})"
            ) from exc

    def _new_verifying(self) -> ssl.SSLContext:
        # The chain is verified here; the name by ``check_peer`` (RFC 5922 also accepts a
        # sip: URI entry and refuses wildcards, which OpenSSL's host check does not).
        context = client_context(self._cafile)
        context.check_hostname = False
        self._present(context)
        return context

    def check_peer(self, name: str, peercert: Mapping[str, object] | None) -> str | None:
        """Why the verified certificate ``peercert`` is refused for ``name``, or None."""
        if not self.verifies(name):
            return None
        if tls_identity.peercert_matches(name, peercert):
            return None
        shown = sorted(tls_identity.identities(_san(peercert), _cns(peercert)))
        names = ", ".join(ascii(n)[1:-1][:64] for n in shown[:4]) or "nothing"
        more = f" and {len(shown) - 4} more" if len(shown) > 4 else ""
        return f"certificate does not name {name} (it names {names}{more})"


def _san(peercert: Mapping[str, object] | None) -> list[tuple[str, str]]:
    raw = (peercert or {}).get("subjectAltName", ())
    return [(str(k), str(v)) for k, v in raw] if isinstance(raw, tuple | list) else []


def _cns(peercert: Mapping[str, object] | None) -> list[str]:
    subject = (peercert or {}).get("subject", ())
    if not isinstance(subject, tuple | list):
        return []
    return [str(v) for rdn in subject for k, v in rdn if k == "commonName"]
