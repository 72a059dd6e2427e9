"""A CA's rate limit reaches the retry schedule: the adapter against a scripted ACME server on
loopback that answers new-account or new-order with `429 rateLimited` and a Retry-After (pebble,
the suite's real CA, has no rate limits to hit)."""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from time import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from docker_manager.adapters.acme import AcmeAccounts, AcmeClient
from docker_manager.errors import AcmeError


class ScriptedCa(ThreadingHTTPServer):
    limited: str = "newOrder"  # the resource that answers 429
    retry_after: str = "3600"


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
        names = ("newNonce", "newAccount", "newOrder", "revokeCert", "keyChange")
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
