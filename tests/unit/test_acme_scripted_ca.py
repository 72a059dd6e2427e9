"""What pebble 2.4 (the suite's real CA) cannot show, against a scripted ACME server on loopback:
a rate limit (`429 rateLimited` with a Retry-After on new-account or new-order) reaching the retry
schedule, and renewal information (ARI, RFC 9773) moving a certificate's renewal forward."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from docker_manager.adapters.acme import AcmeAccounts, AcmeClient
from docker_manager.config import Settings
from docker_manager.db import Database
from docker_manager.errors import AcmeError
from docker_manager.services.certificates.options import CertificateOptions
from docker_manager.services.certificates.policy import is_due, renew_at, with_suggestion
from docker_manager.services.certificates.renewal_info import RenewalInfo
from docker_manager.services.certificates.store import CertificateRecord, CertificateStore


class ScriptedCa(ThreadingHTTPServer):
    limited: str = "newOrder"  # the resource that answers 429
    retry_after: str = "3600"
    window: tuple[datetime, datetime] | None = None  # ARI's suggested window (None: no ARI)
    asked: list[str]


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedCa

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, status: int, body: dict[str, object] | None, **headers: str) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Replay-Nonce", base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode())
        self.send_header("Content-Length", str(len(data)))
        kind = "application/problem+json" if status >= 400 else "application/json"
        self.send_header("Content-Type", kind)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        base = f"http://127.0.0.1:{self.server.server_address[1]}"
        window = self.server.window
        if self.path.startswith("/renewalInfo/") and window is not None:
            self.server.asked.append(self.path)
            suggested = {"start": window[0].isoformat(), "end": window[1].isoformat()}
            self._answer(200, {"suggestedWindow": suggested}, Retry_After="7200")
            return
        names = ["newNonce", "newAccount", "newOrder", "revokeCert", "keyChange"]
        names += ["renewalInfo"] if window is not None else []
        self._answer(200, {name: f"{base}/{name}" for name in names})

    def do_HEAD(self) -> None:
        self._answer(200, None)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        resource = self.path.strip("/")
        if resource == self.server.limited:
            problem = {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many orders"}
            self._answer(429, problem, Retry_After=self.server.retry_after)
        elif resource == "newAccount":
            base = f"http://127.0.0.1:{self.server.server_address[1]}"
            self._answer(201, {"status": "valid"}, Location=f"{base}/account/1")
        else:
            self._answer(404, {"type": "urn:ietf:params:acme:error:malformed", "detail": "not here"})


@pytest.fixture
def ca() -> Iterator[ScriptedCa]:
    server = ScriptedCa(("127.0.0.1", 0), _Handler)
    server.asked = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def _client(ca: ScriptedCa, tmp_path: Path) -> AcmeClient:
    directory = f"http://127.0.0.1:{ca.server_address[1]}/directory"
    return AcmeClient(directory, AcmeAccounts(tmp_path / "acme"), email=None, ca_bundle=None, timeout=5)


def _key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize("limited", ["newOrder", "newAccount"])
def test_a_rate_limit_carries_the_cas_retry_after(ca: ScriptedCa, tmp_path: Path, limited: str) -> None:
    ca.limited = limited
    with pytest.raises(AcmeError) as refused:
        _client(ca, tmp_path).place_order("shop.example.test", _key_pem())
    assert refused.value.extra["problem_type"] == "rateLimited", refused.value.detail
    assert refused.value.extra["permanent"] is False
    assert refused.value.extra["retry_after"] == 3600.0


def test_a_retry_after_given_as_a_date(ca: ScriptedCa, tmp_path: Path) -> None:
    ca.retry_after = formatdate(time() + 7200, usegmt=True)
    with pytest.raises(AcmeError) as refused:
        _client(ca, tmp_path).place_order("shop.example.test", _key_pem())
    assert 7100 < refused.value.extra["retry_after"] <= 7200


def _issued(tmp_path: Path, domain: str) -> tuple[bytes, datetime, datetime]:
    """A certificate as a CA issues it (with the authority key identifier ARI names it by)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    not_before, not_after = now - timedelta(days=1), now + timedelta(days=89)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "scripted CA")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM), not_before, not_after


def test_renewal_information_moves_a_renewal_forward_and_says_when_to_ask_again(
    ca: ScriptedCa, tmp_path: Path
) -> None:
    domain = "shop.example.test"
    pem, not_before, not_after = _issued(tmp_path, domain)
    client = _client(ca, tmp_path)
    # A CA without renewal information: nothing suggested, asked again in six hours.
    suggested, ask_again = client.renewal_window(pem)
    assert suggested is None and abs((ask_again - datetime.now(UTC)).total_seconds() - 6 * 3600) < 60
    # A CA that wants it renewed now (say, it must revoke early): a moment in its window.
    start = datetime.now(UTC) - timedelta(hours=1)
    ca.window = (start, start + timedelta(minutes=30))
    suggested, ask_again = client.renewal_window(pem)
    assert suggested is not None and ca.window[0] <= suggested <= ca.window[1]
    assert abs((ask_again - datetime.now(UTC)).total_seconds() - 7200) < 60
    assert len(ca.asked) == 1 and ca.asked[0].count(".") == 1  # (`<key id>.<serial>`)

    # Through the service's store: the record's renewal moves, and is then due.
    async def through_the_store() -> tuple[list[str], list[str], CertificateRecord | None]:
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'certs.db'}")
        await db.open()
        try:
            store = CertificateStore(db.engine)
            lifetime_rule = renew_at(not_before, not_after)
            await store.put(
                CertificateRecord(
                    domain, "acme", "valid", not_before=not_before, not_after=not_after,
                    renew_at=lifetime_rule, directory=client.directory_url,
                )
            )  # fmt: skip
            cert_dir = tmp_path / "certs"
            cert_dir.mkdir()
            (cert_dir / f"{domain}.crt").write_bytes(pem)
            options = replace(_options(tmp_path), cert_dir=cert_dir, directory_url=client.directory_url)
            info = RenewalInfo(acme=client, store=store, options=options)
            moved = await info.check()
            again = await info.check()  # (not before the CA's Retry-After)
            return moved, again, await store.get(domain)
        finally:
            await db.engine.dispose()

    moved, again, record = asyncio.run(through_the_store())
    assert moved == [domain] and again == [] and len(ca.asked) == 2
    assert record is not None and record.renew_at is not None and record.renew_at <= datetime.now(UTC)
    assert is_due(record, datetime.now(UTC))
    # A later suggestion never delays the lifetime rule.
    assert with_suggestion(record, record.renew_at + timedelta(days=1)) is record


def _options(tmp_path: Path) -> CertificateOptions:
    return CertificateOptions.of(Settings(data_dir=tmp_path / "data", nginx_conf_dirs=[tmp_path / "sites"]))
