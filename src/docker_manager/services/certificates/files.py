"""Certificates as files and facts: new keys, what a chain says, what a hand-made pair must satisfy,
and what nginx serves for a name (a TLS handshake with SNI). Everything here blocks."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from docker_manager.adapters.nginx import FileChange, certificate_files
from docker_manager.errors import CertificateInvalid
from docker_manager.util.files import write_atomic

KEY_MODE = 0o600
CERT_MODE = 0o644
PREVIOUS = ".previous"  # the pair before the last install, kept for an undo by hand


@dataclass(frozen=True)
class CertificateFacts:
    not_before: datetime
    not_after: datetime
    serial: str  # hexadecimal, lower case, as CAs show it
    issuer: str
    sans: list[str]


def new_key_pem() -> bytes:
    """A certificate key: ECDSA P-256 (what Let's Encrypt issues by default), PKCS#8 PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def facts_of(chain_pem: bytes) -> CertificateFacts:
    """What the first certificate of a PEM chain says (CertificateInvalid when it does not parse)."""
    chain = _chain(chain_pem)
    leaf = chain[0]
    return CertificateFacts(
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        serial=format(leaf.serial_number, "x"),
        issuer=leaf.issuer.rfc4514_string()[:500],
        sans=_sans(leaf),
    )


def check_pair(domain: str, chain_pem: bytes, key_pem: bytes, now: datetime) -> CertificateFacts:
    """A certificate given by hand: its chain parses, its key matches, it names `domain` and it
    is valid now. CertificateInvalid says which rule it breaks."""
    facts = facts_of(chain_pem)
    leaf = _chain(chain_pem)[0]
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise CertificateInvalid(
            "the private key does not parse (PEM, unencrypted)", field="private_key_pem"
        ) from exc
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise CertificateInvalid("the private key must be RSA or ECDSA", field="private_key_pem")
    if _public_der(key.public_key()) != _public_der(leaf.public_key()):
        raise CertificateInvalid("the private key does not match the certificate", field="private_key_pem")
    if not covers(facts.sans, domain):
        raise CertificateInvalid(
            f"the certificate's names ({', '.join(facts.sans) or 'none'}) do not cover {domain}",
            field="certificate_pem",
        )
    if facts.not_after <= now:
        raise CertificateInvalid(
            f"the certificate expired on {facts.not_after.isoformat()}", field="certificate_pem"
        )
    if facts.not_before > now:
        raise CertificateInvalid(
            f"the certificate is not valid before {facts.not_before.isoformat()}", field="certificate_pem"
        )
    return facts


def covers(sans: list[str], domain: str) -> bool:
    """Whether a certificate's DNS names cover `domain` (a `*.` name covers one label)."""
    for name in sans:
        if name == domain:
            return True
        if name.startswith("*.") and "." in domain and domain.split(".", 1)[1] == name[2:]:
            return True
    return False


def install_changes(
    cert_dir: Path, domain: str, chain_pem: bytes | None, key_pem: bytes | None
) -> list[FileChange]:
    """The files of a new pair (None: the pair removed), the current pair kept as `.previous`."""
    cert, key = certificate_files(cert_dir, domain)
    changes = []
    for path, mode in ((key, KEY_MODE), (cert, CERT_MODE)):
        current = read_own(path)
        if current is not None:
            changes.append(FileChange(path.with_name(path.name + PREVIOUS), current, mode))
    # The key first: for a moment the old certificate and the new key would not match, but nginx
    # reads them only at the reload that follows, under the same lock.
    changes.append(FileChange(key, key_pem, KEY_MODE))
    changes.append(FileChange(cert, chain_pem, CERT_MODE))
    return changes


def removal_changes(cert_dir: Path, domain: str) -> list[FileChange]:
    """The pair removed, and the previous pair with it (a deleted key is not kept anywhere)."""
    cert, key = certificate_files(cert_dir, domain)
    paths = (cert, key, *(path.with_name(path.name + PREVIOUS) for path in (cert, key)))
    return [FileChange(path, None) for path in paths if path.exists() or path.is_symlink()]


def pair_on_disk(cert_dir: Path, domain: str) -> CertificateFacts | None:
    """What a matching pair in the cert dir says (regular files or symlinks to them: certbot's
    layout), else None."""
    cert, key = certificate_files(cert_dir, domain)
    try:
        chain, key_pem = cert.read_bytes(), key.read_bytes()
    except OSError:
        return None
    if not _pair_matches(chain, key_pem):
        return None
    try:
        return facts_of(chain)
    except CertificateInvalid:
        return None


def read_own(path: Path) -> bytes | None:
    """A file of the cert dir as it is, never through a symlink (a link there could point anywhere
    on the host); None when it is missing or a link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        return handle.read(1 << 20)


def repair_pair(cert_dir: Path, domain: str) -> bool:
    """After a crash in the middle of an install: a key that does not match its certificate (nginx
    would refuse every later reload) is replaced, with the certificate, by the previous pair when
    that one matches. True when it did."""
    cert, key = certificate_files(cert_dir, domain)
    chain, key_pem = read_own(cert), read_own(key)
    if chain is None or key_pem is None or _pair_matches(chain, key_pem):
        return False
    old_cert, old_key = (path.with_name(path.name + PREVIOUS) for path in (cert, key))
    chain, key_pem = read_own(old_cert), read_own(old_key)
    if chain is None or key_pem is None or not _pair_matches(chain, key_pem):
        return False
    write_atomic(key, key_pem, mode=KEY_MODE)
    write_atomic(cert, chain, mode=CERT_MODE)
    return True


def _pair_matches(chain_pem: bytes, key_pem: bytes) -> bool:
    try:
        leaf = x509.load_pem_x509_certificates(chain_pem)[0]
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, IndexError):
        return False
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return False
    return _public_der(key.public_key()) == _public_der(leaf.public_key())


def _public_der(key: object) -> bytes:
    assert isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey))
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def served_serial(address: str, domain: str, timeout: float = 5.0) -> str | None:
    """The serial of the certificate nginx serves for `domain` (SNI) at `address`, else None."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # (what is served is compared by serial, not trusted)
    try:
        with (
            socket.create_connection((host, int(port)), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return format(x509.load_der_x509_certificate(der).serial_number, "x") if der else None


def is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _chain(chain_pem: bytes) -> list[x509.Certificate]:
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError as exc:
        raise CertificateInvalid(
            "the certificate chain does not parse (PEM)", field="certificate_pem"
        ) from exc
    if not chain:
        raise CertificateInvalid("no certificate in the PEM", field="certificate_pem")
    return chain


def _sans(leaf: x509.Certificate) -> list[str]:
    try:
        names = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    except x509.ExtensionNotFound:
        return []
    assert isinstance(names, x509.SubjectAlternativeName)
    return [str(name).lower() for name in names.get_values_for_type(x509.DNSName)]
