# Test certificates: one builder for every TLS test (self-signed leaves, a CA and the leaves
# it signs). EC P-256, valid from an hour ago for a day; keys written unencrypted (PKCS#8).
"""Issue short-lived X.509 certificates for tests."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its key, on disk and in memory (to sign further certificates)."""

    cert_path: Path
    key_path: Path
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def san(*entries: str) -> list[x509.GeneralName]:
    """subjectAltName entries from text: ``sip:`` URIs, IP literals, otherwise DNS names."""
    names: list[x509.GeneralName] = []
    for entry in entries:
        if entry.startswith(("sip:", "sips:")):
            names.append(x509.UniformResourceIdentifier(entry))
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(entry)))
        except ValueError:
            names.append(x509.DNSName(entry))
    return names


def issue(
    where: Path,
    stem: str,
    common_name: str,
    *,
    names: Sequence[x509.GeneralName] = (),
    signer: Issued | None = None,
    ca: bool = False,
) -> Issued:
    """Write ``<stem>.pem`` and ``<stem>.key`` under ``where``; self-signed unless ``signer``."""
    where.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(signer.certificate.subject if signer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if ca or signer is not None:
        constraints = x509.BasicConstraints(ca=ca, path_length=None)
        builder = builder.add_extension(constraints, critical=True)
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    certificate = builder.sign(signer.key if signer else key, hashes.SHA256())
    cert_path, key_path = where / f"{stem}.pem", where / f"{stem}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Issued(cert_path, key_path, certificate, key)
