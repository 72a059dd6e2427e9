"""Automatic HTTPS against a real ACME CA (Debian's pebble, its DNS answering 127.0.0.1 for every
name), a private nginx and a server process: issue through a deploy, the chain, the redirect that
spares the challenge path, renewal under HTTPS clients, a switch under TLS, failures of every kind,
certificates given by hand, and who may do what."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
from cryptography import x509

from docker_manager.errors import SelfCheckFailed
from docker_manager.services.certificates.challenges import ChallengeBoard
from tests.harness import (
    BASE_IMAGE,
    NginxServer,
    Pebble,
    ServiceProcess,
    free_port,
    nginx,
    pebble,
    service_process,
)

pytestmark = pytest.mark.docker

VALIDITY = 30  # seconds: pebble's certificates here, so that renewals come within a test
BLOCKED = "blocked.example.com"  # pebble refuses it by policy (a permanent error)
PUBLIC = "manager.example.com"  # DM_PUBLIC_DOMAIN: the service itself behind nginx


@dataclass
class Lab:
    service: ServiceProcess
    nginx: NginxServer
    pebble: Pebble
    tls_port: int
    contexts: Path
    cert_dir: Path
    root: Path
    env: dict[str, str]

    def api(self, method: str, path: str, **kwargs: Any) -> httpx2.Response:
        kwargs.setdefault("headers", self.service.headers)
        return httpx2.request(method, f"{self.service.url}{path}", timeout=60, **kwargs)

    def certificate(self, domain: str) -> dict[str, Any]:
        answer = self.api("GET", f"/certificates/{domain}")
        return dict(answer.json()) if answer.status_code == 200 else {}

    def wait_status(self, domain: str, wanted: set[str], timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            record = self.certificate(domain)
            if record.get("status") in wanted:
                return record
            assert time.monotonic() < deadline, f"{domain}: {record}"
            time.sleep(0.2)

    def deploy(self, app: str, text: str, domain: str, **options: Any) -> dict[str, Any]:
        folder = self.contexts / f"{app}-{text}"
        folder.mkdir(exist_ok=True)
        (folder / "Dockerfile").write_text(
            f"FROM {BASE_IMAGE}\nRUN mkdir -p /www && echo {text} > /www/index.html\n"
            'CMD ["httpd", "-f", "-p", "80", "-h", "/www"]\n'
        )
        body = {"context": folder.name, "domain": domain, **options}
        started = self.api("POST", f"/apps/{app}/deploy", json=body)
        assert started.status_code == 202, started.text
        return self.wait_task(started.json()["task_id"])

    def wait_task(self, task: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            status = self.api("GET", f"/tasks/status/{task}").json()
            if status["status"] not in ("queued", "running"):
                assert status["status"] == "completed", status
                return dict(status)
            assert time.monotonic() < deadline
            time.sleep(0.1)

    def https(self, domain: str, path: str = "/") -> httpx2.Response:
        """A request as a browser makes it: the name in SNI and Host, the chain verified."""
        context = ssl.create_default_context(cafile=str(self.pebble.chain_roots()))
        transport = httpx2.HTTPTransport(verify=context)
        with httpx2.Client(transport=transport, timeout=10) as client:
            return client.get(
                f"https://127.0.0.1:{self.tls_port}{path}",
                headers={"Host": domain},
                extensions={"sni_hostname": domain},
            )

    def http(self, domain: str, path: str = "/") -> httpx2.Response:
        return httpx2.get(f"http://127.0.0.1:{self.nginx.port}{path}", headers={"Host": domain}, timeout=10)

    def served_serial(self, domain: str) -> str:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with (
            socket.create_connection(("127.0.0.1", self.tls_port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=domain) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return format(x509.load_der_x509_certificate(der).serial_number, "x")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, base_image: str) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("certs")
    contexts, cert_dir = root / "contexts", root / "certs"
    contexts.mkdir()
    cert_dir.mkdir(mode=0o700)
    with (
        nginx(root / "nginx") as web,
        pebble(root / "pebble", http_port=web.port, validity_seconds=VALIDITY, blocked=(BLOCKED,)) as ca,
    ):
        tls_port = free_port()
        env = {
            **web.env(),
            "DM_CONTEXT_ROOTS": json.dumps([str(contexts)]),
            "DM_SWITCH_DRAIN_SECONDS": "0",
            "DM_SWITCH_STOP_TIMEOUT": "1",
            "DM_NGINX_CERT_DIR": str(cert_dir),
            "DM_NGINX_TLS_LISTEN": f"127.0.0.1:{tls_port}",
            "DM_ACME_ENABLED": "true",
            "DM_ACME_DIRECTORY": ca.directory,
            "DM_ACME_CA_BUNDLE": str(ca.ca_bundle),
            "DM_ACME_EMAIL": "ops@example.com",
            "DM_ACME_SELF_CHECK_ADDRESS": f"127.0.0.1:{web.port}",
            "DM_ACME_RENEW_CHECK_SECONDS": "1",
            "DM_ACME_RETRY_MIN_SECONDS": "2",
            "DM_ACME_RETRY_MAX_SECONDS": "8",
            "DM_PUBLIC_DOMAIN": PUBLIC,
        }
        with service_process(root / "data", stderr=root / "server.log", **env) as service:
            yield Lab(service, web, ca, tls_port, contexts, cert_dir, root, env)


def nginx_valid(lab: Lab) -> None:
    checked = subprocess.run(
        ["nginx", "-t", "-p", str(lab.nginx.prefix), "-c", str(lab.nginx.conf)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stderr


def test_a_deploy_with_a_domain_gets_https(lab: Lab, unique: str) -> None:
    domain = f"{unique}.example.com"
    lab.deploy(unique, "one", domain)
    # The site serves HTTP at once; the certificate follows.
    record = lab.wait_status(domain, {"valid", "error"})
    assert record["status"] == "valid", record
    assert record["source"] == "acme" and record["sans"] == [domain] and record["last_error"] is None
    assert (
        datetime.fromisoformat(record["not_after"])
        > datetime.now(UTC)
        > datetime.fromisoformat(record["not_before"])
    )
    page = lab.https(domain)
    assert page.status_code == 200 and page.text.strip() == "one"
    assert lab.served_serial(domain) == record["serial"]
    # The chain verifies against pebble's root and intermediate.
    chain = (lab.cert_dir / f"{domain}.crt").read_text()
    checked = subprocess.run(
        ["openssl", "verify", "-CAfile", str(lab.pebble.chain_roots()), "-untrusted",
         str(lab.cert_dir / f"{domain}.crt"), str(lab.cert_dir / f"{domain}.crt")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0 and chain.count("BEGIN CERTIFICATE") >= 2, checked.stdout + checked.stderr
    assert (lab.cert_dir / f"{domain}.key").stat().st_mode & 0o777 == 0o600
    # Port 80: everything redirects to HTTPS but the challenge path (answered, here a 404).
    redirect = lab.http(domain, "/some/page?x=1")
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"https://{domain}/some/page?x=1"
    challenge = lab.http(domain, "/.well-known/acme-challenge/unknown-token")
    assert challenge.status_code == 404
    # The order is in the audit log, whoever started it (here: the site being signed).
    audit = lab.api("GET", "/audit", params={"limit": 200}).json()["entries"]
    orders = [e for e in audit if e["route"] == "certificate order" and e["target"].get("domain") == domain]
    assert orders and orders[0]["status"] == 200 and orders[0]["target"]["task_id"] == record["task_id"]
    # Its end is a metric (the one an operator alerts on).
    scraped = lab.api("GET", "/metrics").text
    gauge = f'dm_certificate_not_after_seconds{{domain="{domain}"}}'
    assert gauge in scraped and 'dm_certificate_orders_total{result="issued"}' in scraped
    # An unknown name on the TLS port: the handshake is refused, no certificate of another site.
    with pytest.raises(ssl.SSLError):
        lab.served_serial(f"nobody-{unique}.example.com")
    nginx_valid(lab)


def test_tls_off_then_auto_with_hsts_kept_across_deploys(lab: Lab, unique: str) -> None:
    domain = f"{unique}-opts.example.com"
    refused = lab.api("POST", f"/apps/{unique}/deploy", json={"image": BASE_IMAGE, "tls": "off"})
    assert refused.status_code == 422 and "give the domain" in refused.text
    lab.deploy(unique, "plain", domain, tls="off")
    time.sleep(2)  # a few renewal checks: no certificate is ordered for a site with TLS off
    assert lab.api("GET", f"/certificates/{domain}").status_code == 404
    page = lab.http(domain, "/")
    assert page.status_code == 200 and page.text.strip() == "plain"
    lab.deploy(unique, "secure", domain, tls="auto", hsts_max_age=600)
    lab.wait_status(domain, {"valid"})
    answer = lab.https(domain)
    assert answer.text.strip() == "secure" and answer.headers["strict-transport-security"] == "max-age=600"
    # A deploy that says nothing of TLS keeps the site's options and its certificate.
    record = lab.certificate(domain)
    done = lab.deploy(unique, "third", domain)
    answer = lab.https(domain)
    assert answer.text.strip() == "third" and answer.headers["strict-transport-security"] == "max-age=600"
    assert lab.served_serial(domain) == record["serial"]
    # sign-domain turns TLS off for the site: port 80 serves again, no redirect.
    container = done["result"]["container_id"]
    signed = lab.api(
        "POST",
        "/nginx/sign-domain",
        json={"domain": domain, "app_id": unique, "new_container": container, "tls": "off"},
    )
    assert signed.status_code == 200, signed.text
    plain = lab.http(domain, "/")
    assert plain.status_code == 200 and plain.text.strip() == "third"
    with pytest.raises(ssl.SSLError):
        lab.served_serial(domain)
    nginx_valid(lab)


@dataclass
class HttpsLoop:
    """Keep-alive HTTPS clients that never retry: every answer and every serial seen counted."""

    lab: Lab
    domain: str
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    # An idle keep-alive connection nginx closed at a reload (one per certificate installed): the
    # request was never read, so any client may send it again (RFC 9110 9.2.2; browsers do).
    closed_idle: list[str] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> HttpsLoop:
        roots = str(self.lab.pebble.chain_roots())
        for _ in range(3):
            thread = threading.Thread(target=self._run, args=(roots,), daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _run(self, roots: str) -> None:
        context = ssl.create_default_context(cafile=roots)
        transport = httpx2.HTTPTransport(verify=context)
        with httpx2.Client(transport=transport, timeout=5) as client:
            while not self.stop.is_set():
                try:
                    answer = client.get(
                        f"https://127.0.0.1:{self.lab.tls_port}/",
                        headers={"Host": self.domain},
                        extensions={"sni_hostname": self.domain},
                    )
                    self.answers.append(answer.text.strip())
                    if answer.status_code != 200:
                        self.failures.append(f"HTTP {answer.status_code}")
                except httpx2.RemoteProtocolError as exc:
                    if "without sending a response" not in str(exc):
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                    self.closed_idle.append(str(exc))
                except httpx2.HTTPError as exc:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)


def test_renewal_and_a_switch_under_https_clients(lab: Lab, unique: str) -> None:
    """A renewal (a third of the 30 s left) and a deploy of a new version, while HTTPS clients
    loop: no request fails, the renewal brings a new serial, the switch keeps the certificate."""
    domain = f"{unique}-renew.example.com"
    lab.deploy(unique, "one", domain)
    first = lab.wait_status(domain, {"valid"})
    with HttpsLoop(lab, domain) as loop:
        time.sleep(1)
        lab.deploy(unique, "two", domain)  # a switch between containers: same certificate
        assert lab.served_serial(domain) == first["serial"]
        deadline = time.monotonic() + VALIDITY
        while lab.certificate(domain)["serial"] == first["serial"]:
            assert time.monotonic() < deadline, lab.certificate(domain)
            time.sleep(0.5)
        renewed = lab.wait_status(domain, {"valid"})
        time.sleep(1)
    assert renewed["serial"] != first["serial"] and lab.served_serial(domain) == renewed["serial"]
    assert loop.failures == [], loop.failures[:5]
    assert len(loop.closed_idle) <= len(loop.answers) // 100, loop.closed_idle[:5]
    assert len(loop.answers) > 100 and set(loop.answers) == {"one", "two"}
    assert (lab.cert_dir / f"{domain}.crt.previous").exists()  # kept for an undo by hand
    nginx_valid(lab)


def test_a_domain_that_does_not_point_here(lab: Lab, unique: str) -> None:
    """The CA's validation reaches another address: error with its reason, a next attempt later
    (backoff), the site still on HTTP, nginx valid."""
    domain = f"{unique}-away.example.com"
    lab.pebble.resolve(domain, "127.0.0.2")
    lab.deploy(unique, "away", domain)
    record = lab.wait_status(domain, {"error"})
    assert record["last_error"]["type"] in ("connection", "unauthorized", "incorrectResponse"), record
    assert record["permanent_error"] is (record["last_error"]["type"] == "unauthorized")
    assert record["serial"] is None and not (lab.cert_dir / f"{domain}.crt").exists()
    if not record["permanent_error"]:
        assert datetime.fromisoformat(record["next_attempt_at"]) > datetime.now(UTC)
    page = lab.http(domain)
    assert page.status_code == 200 and page.text.strip() == "away"  # still served, on HTTP
    nginx_valid(lab)


def test_the_self_check_spares_the_ca(lab: Lab, unique: str) -> None:
    """A name that does not resolve, or that reaches an nginx that does not answer our probe: the
    self-check fails before any order is placed."""
    board = ChallengeBoard()
    with pytest.raises(SelfCheckFailed, match="does not resolve"):
        asyncio.run(board.self_check(f"{unique}.invalid", None, timeout=5))
    elsewhere = f"{unique}-elsewhere.example.com"
    with pytest.raises(SelfCheckFailed, match="does not reach this nginx"):
        asyncio.run(board.self_check(elsewhere, f"127.0.0.1:{lab.nginx.port}", timeout=5))
    assert board.answer("anything") is None  # the probe was withdrawn
    # A name that resolves to this host's own network: no request is made on a caller's word.
    with pytest.raises(SelfCheckFailed, match="private address"):
        asyncio.run(board.self_check("localhost", None, timeout=5))


def test_a_blocked_domain_is_a_permanent_error(lab: Lab, unique: str) -> None:
    lab.deploy(unique, "blocked", BLOCKED)
    record = lab.wait_status(BLOCKED, {"error"})
    assert record["last_error"]["type"] == "rejectedIdentifier" and record["permanent_error"] is True
    assert record["next_attempt_at"] is None
    time.sleep(3)  # a few renewal checks: none orders again for it
    later = lab.certificate(BLOCKED)
    assert (later["task_id"], later["status"]) == (record["task_id"], "error")
    assert lab.http(BLOCKED).text.strip() == "blocked"


def test_bad_names_and_who_may_ask(lab: Lab, unique: str) -> None:
    for name, status in (("*.example.com", 422), ("1.2.3.4", 422), ("a..b", 422), ("x.example.com.", 422)):
        refused = lab.api("POST", f"/certificates/{name}/issue")
        assert refused.status_code == status, (name, refused.text)
    made = lab.api("POST", "/auth/tokens", json={"name": "ops", "scopes": ["read", "operate"]})
    operator = {"Authorization": f"Bearer {made.json()['token']}"}
    reader_made = lab.api("POST", "/auth/tokens", json={"name": "ro", "scopes": ["read"]})
    reader = {"Authorization": f"Bearer {reader_made.json()['token']}"}
    domain = f"{unique}-who.example.com"
    assert lab.api("GET", "/certificates", headers=reader).status_code == 200
    assert lab.api("POST", f"/certificates/{domain}/issue", headers=reader).status_code == 403
    # No site serves it: an admin's to ask for.
    nobody = lab.api("POST", f"/certificates/{domain}/issue", headers=operator)
    assert nobody.status_code == 403, nobody.text
    upload = lab.api(
        "PUT",
        f"/certificates/{domain}",
        headers=operator,
        json={"certificate_pem": "x", "private_key_pem": "y"},
    )
    assert upload.status_code == 403 and upload.json()["code"] == "insufficient_scope"
    assert lab.api("DELETE", f"/certificates/{domain}", headers=operator).status_code == 403
    # Its own app's site: it may; a valid certificate is renewed only when forced.
    lab.deploy(unique, "who", domain)
    lab.wait_status(domain, {"valid"})
    again = lab.api("POST", f"/certificates/{domain}/issue", headers=operator)
    assert again.status_code == 409, again.text
    forced = lab.api("POST", f"/certificates/{domain}/issue", params={"force": "true"}, headers=operator)
    assert forced.status_code == 202, forced.text
    assert lab.api("GET", f"/tasks/status/{forced.json()['task_id']}").json()["task_type"] == "certificate"


def _self_signed(workdir: Path, name: str, san: str, days: int = 30) -> tuple[str, str]:
    key, cert = workdir / f"{name}.key", workdir / f"{name}.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", str(days), "-subj", f"/CN={san}",
         "-addext", f"subjectAltName=DNS:{san}"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert.read_text(), key.read_text()


def test_a_certificate_given_by_hand(lab: Lab, unique: str, tmp_path: Path) -> None:
    domain = f"{unique}-custom.example.com"
    certificate, key = _self_signed(tmp_path, "good", domain)
    _, other_key = _self_signed(tmp_path, "other", domain)
    wrong_name, wrong_name_key = _self_signed(tmp_path, "wrong", f"elsewhere-{unique}.example.com")
    for body, reason in (
        ({"certificate_pem": certificate, "private_key_pem": other_key}, "does not match"),
        ({"certificate_pem": wrong_name, "private_key_pem": wrong_name_key}, "do not cover"),
        ({"certificate_pem": "not a certificate", "private_key_pem": key}, "does not parse"),
        ({"certificate_pem": certificate, "private_key_pem": "not a key"}, "does not parse"),
    ):
        refused = lab.api("PUT", f"/certificates/{domain}", json=body)
        assert refused.status_code == 422 and refused.json()["code"] == "certificate_invalid", refused.text
        assert reason in refused.json()["detail"]
        assert not (lab.cert_dir / f"{domain}.crt").exists()
    lab.deploy(unique, "custom", domain)  # its certificate task starts; the upload comes first or after
    lab.wait_status(domain, {"valid", "error"})
    given = lab.api(
        "PUT", f"/certificates/{domain}", json={"certificate_pem": certificate, "private_key_pem": key}
    )
    assert given.status_code == 200, given.text
    record = given.json()
    assert record["source"] == "custom" and record["status"] == "valid" and record["renew_at"] is None
    assert lab.served_serial(domain) == record["serial"]
    # Not replaced by ACME unless asked, and only by an admin.
    assert lab.api("POST", f"/certificates/{domain}/issue").status_code == 409
    made = lab.api("POST", "/auth/tokens", json={"name": f"ops-{unique}", "scopes": ["read", "operate"]})
    operator = {"Authorization": f"Bearer {made.json()['token']}"}
    forced = lab.api("POST", f"/certificates/{domain}/issue", params={"force": "true"}, headers=operator)
    assert forced.status_code == 403, forced.text
    # Removed: the site back on HTTP, the files gone (the previous pair too).
    deleted = lab.api("DELETE", f"/certificates/{domain}")
    assert deleted.status_code == 200, deleted.text
    assert not [p.name for p in lab.cert_dir.iterdir() if p.name.startswith(domain)]
    assert lab.http(domain).text.strip() == "custom"
    assert lab.api("GET", f"/certificates/{domain}").status_code == 404
    # Both changes are in the audit log, naming the domain; the key is nowhere in it.
    audit = lab.api("GET", "/audit", params={"limit": 200})
    changes = {
        (e["method"], e["status"])
        for e in audit.json()["entries"]
        if e["route"] == "/certificates/{domain}" and e["target"].get("domain") == domain
    }
    assert {("PUT", 200), ("PUT", 422), ("DELETE", 200)} <= changes, changes
    assert "PRIVATE KEY" not in audit.text
    # It stays so: the next deploy orders nothing (the site says tls off until told otherwise).
    lab.deploy(unique, "custom-again", domain)
    time.sleep(2)
    assert lab.api("GET", f"/certificates/{domain}").status_code == 404
    assert lab.http(domain).text.strip() == "custom-again"
    nginx_valid(lab)


def test_a_pair_put_in_the_folder_by_hand_is_kept(lab: Lab, unique: str, tmp_path: Path) -> None:
    """A pair already in DM_NGINX_CERT_DIR (by hand, certbot) is never replaced by an order."""
    domain = f"{unique}-placed.example.com"
    certificate, key = _self_signed(tmp_path, "placed", domain)
    (lab.cert_dir / f"{domain}.crt").write_text(certificate)
    (lab.cert_dir / f"{domain}.key").write_text(key)
    (lab.cert_dir / f"{domain}.key").chmod(0o600)
    lab.deploy(unique, "placed", domain)
    record = lab.certificate(domain)
    assert record["source"] == "custom" and record["status"] == "valid" and record["task_id"] is None
    assert lab.served_serial(domain) == record["serial"]
    assert (lab.cert_dir / f"{domain}.crt").read_text() == certificate


def test_a_domain_no_site_serves_and_forced_orders(lab: Lab, unique: str) -> None:
    """An admin may order for a domain with no site (its challenge answered by the defaults file);
    an operator's forced orders are spaced out (CAs limit duplicates)."""
    bare = f"{unique}-bare.example.com"
    asked = lab.api("POST", f"/certificates/{bare}/issue")
    assert asked.status_code == 202, asked.text
    record = lab.wait_status(bare, {"valid", "error"})
    assert record["status"] == "valid" and record["served_by_site"] is False, record
    assert (lab.cert_dir / f"{bare}.crt").exists()
    # The record is valid before its task ends; the defaults file is rewritten as the task ends.
    lab.wait_task(asked.json()["task_id"])
    defaults = (lab.nginx.sites / "_docker-manager.conf").read_text()
    assert bare not in defaults  # answered only while its order ran
    domain = f"{unique}-twice.example.com"
    lab.deploy(unique, "twice", domain)
    lab.wait_status(domain, {"valid"})
    made = lab.api("POST", "/auth/tokens", json={"name": f"ops2-{unique}", "scopes": ["read", "operate"]})
    operator = {"Authorization": f"Bearer {made.json()['token']}"}
    params = {"force": "true"}
    first = lab.api("POST", f"/certificates/{domain}/issue", params=params, headers=operator)
    assert first.status_code == 202, first.text
    lab.wait_task(first.json()["task_id"])  # (the record stays valid while a renewal runs)
    second = lab.api("POST", f"/certificates/{domain}/issue", params=params, headers=operator)
    assert second.status_code == 429 and int(second.headers["retry-after"]) > 3000, second.text
    assert lab.api("POST", f"/certificates/{domain}/issue", params=params).status_code == 202  # admin


def test_the_service_itself_on_https(lab: Lab, unique: str) -> None:
    """DM_PUBLIC_DOMAIN: the API and the dashboard through nginx, HTTPS only, an admin's site."""
    deadline = time.monotonic() + 60
    while not any(site["domain"] == PUBLIC for site in lab.api("GET", "/nginx/sites").json()):
        assert time.monotonic() < deadline, "the public site was not written"
        time.sleep(0.2)
    site = next(site for site in lab.api("GET", "/nginx/sites").json() if site["domain"] == PUBLIC)
    assert (site["kind"], site["tls"], site["app_id"]) == ("host", "only", None), site
    record = lab.wait_status(PUBLIC, {"valid"})
    assert lab.served_serial(PUBLIC) == record["serial"]
    token = {"Authorization": f"Bearer {lab.service.token}"}
    assert lab.https(PUBLIC, "/healthz").json()["status"] == "ok"
    context = ssl.create_default_context(cafile=str(lab.pebble.chain_roots()))
    with httpx2.Client(transport=httpx2.HTTPTransport(verify=context), timeout=10) as client:
        url, sni = f"https://127.0.0.1:{lab.tls_port}", {"sni_hostname": PUBLIC}
        whoami = client.get(f"{url}/auth/whoami", headers={"Host": PUBLIC, **token}, extensions=sni)
        assert whoami.status_code == 200 and "admin" in whoami.json()["scopes"], whoami.text
        login = client.post(
            f"{url}/ui/login",
            data={"token": lab.service.token},
            headers={"Host": PUBLIC, "Origin": f"https://{PUBLIC}"},
            extensions=sni,
        )
        assert login.status_code == 303 and "secure" in login.headers["set-cookie"].lower(), login.headers
    # Port 80: the API is never answered in clear; the challenge path still is.
    assert lab.http(PUBLIC, "/auth/whoami").status_code == 301
    assert lab.http(PUBLIC, "/.well-known/acme-challenge/x").status_code == 404
    # An operate token cannot take the domain, nor order or drop its certificate.
    made = lab.api("POST", "/auth/tokens", json={"name": f"ops-{unique}", "scopes": ["read", "operate"]})
    operator = {"Authorization": f"Bearer {made.json()['token']}"}
    taken = lab.api("POST", "/apps/x/deploy", headers=operator, json={"image": BASE_IMAGE, "domain": PUBLIC})
    assert taken.status_code in (403, 409), taken.text
    assert lab.api("POST", f"/certificates/{PUBLIC}/issue", headers=operator).status_code == 403


def test_the_terminal_and_the_dashboard_show_and_renew(lab: Lab, unique: str, tmp_path: Path) -> None:
    domain = f"{unique}-seen.example.com"
    lab.deploy(unique, "seen", domain)
    first = lab.wait_status(domain, {"valid"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("DM_")}
    env |= {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path), "TERM": "dumb"}
    env |= {"DM_URL": lab.service.url, "DM_TOKEN": lab.service.token}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "docker_manager", "certs", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)

    listed = cli()
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(domain))
    assert row.split()[1:3] == ["valid", "acme"], listed.stdout
    as_json = json.loads(cli("--json").stdout)
    assert any(record["domain"] == domain and record["serial"] == first["serial"] for record in as_json)
    refused = cli("issue", domain)  # valid: only when forced
    assert refused.returncode == 1 and "force" in refused.stderr
    renewed = cli("issue", domain, "--force", "--json")
    assert renewed.returncode == 0, renewed.stderr
    second = lab.certificate(domain)
    assert second["serial"] != first["serial"] and lab.served_serial(domain) == second["serial"]
    # The dashboard's Sites page: the site on HTTPS, its certificate, a Renew button that works.
    with httpx2.Client(base_url=lab.service.url, timeout=30, headers={"Origin": lab.service.url}) as browser:
        browser.post("/ui/login", data={"token": lab.service.token})
        page = browser.get("/ui/sites").text
        table = page.split('id="certificates"', 1)[1].split("</table>", 1)[0]
        assert domain in table and 'class="badge valid"' in table and "Renew" in table
        assert 'class="badge https"' in page
        csrf = re.search(r'name="csrf" value="([^"]+)"', page)
        assert csrf is not None
        asked = browser.post(
            "/ui/certificates/issue", data={"csrf": csrf[1], "domain": domain, "force": "true"}
        )
        assert asked.status_code == 303 and asked.headers["location"].startswith("/ui/tasks/certificate-")
    deadline = time.monotonic() + 60
    while (third := lab.certificate(domain))["serial"] == second["serial"] or third["status"] != "valid":
        assert time.monotonic() < deadline, third
        time.sleep(0.3)
    assert lab.served_serial(domain) == third["serial"]


def test_the_ca_down_restarted_and_the_service_restarted(lab: Lab, unique: str) -> None:
    """A CA that is down: a clear error, the old certificate still served. A CA that restarted (our
    account gone) and rejects a third of the nonces: the account is registered again and the
    order goes through. This service restarted: no new order for a valid certificate."""
    domain = f"{unique}-ca.example.com"
    lab.deploy(unique, "ca", domain)
    first = lab.wait_status(domain, {"valid"})
    lab.pebble.stop()
    try:
        down = lab.api("POST", f"/certificates/{domain}/issue", params={"force": "true"})
        assert down.status_code == 202
        record = lab.wait_status(domain, {"error"})
        assert record["last_error"]["type"] == "connection" and record["permanent_error"] is False
        assert lab.served_serial(domain) == first["serial"]
    finally:
        lab.pebble.start(nonce_reject_percent=30)
    again = lab.api("POST", f"/certificates/{domain}/issue", params={"force": "true"})
    # (409: the renewal loop's retry of the failed order, seconds apart here, runs already)
    assert again.status_code == 202 or again.json()["code"] == "conflict", again.text
    record = lab.wait_status(domain, {"valid"})
    assert record["serial"] != first["serial"] and lab.served_serial(domain) == record["serial"]
    # This service restarted (last in this file: the module's service is replaced by a new one).
    lab.service.process.terminate()
    lab.service.process.wait(timeout=30)
    port = int(lab.service.url.rsplit(":", 1)[1])
    data, log = lab.root / "data", lab.root / "server.log"
    with service_process(data, log, port=port, token=lab.service.token, **lab.env) as again_up:
        time.sleep(4)  # a few renewal checks (other tests' domains renew meanwhile: 30 s lives)
        after = lab.certificate(domain)
        assert (after["serial"], after["task_id"], after["status"]) == (
            record["serial"],
            record["task_id"],
            "valid",
        )
        assert lab.https(domain).text.strip() == "ca"
        # Killed in the middle of an order: after the next start the task has an end, and the
        # record, the files and what nginx serves agree.
        cut = lab.api("POST", f"/certificates/{domain}/issue", params={"force": "true"})
        assert cut.status_code == 202, cut.text
        time.sleep(0.5)
        again_up.process.kill()
        again_up.process.wait(timeout=30)
    with service_process(data, log, port=port, token=lab.service.token, **lab.env):
        status = lab.api("GET", f"/tasks/status/{cut.json()['task_id']}").json()
        assert status["status"] not in ("queued", "running"), status
        final = lab.wait_status(domain, {"valid"})
        assert lab.served_serial(domain) == final["serial"]
        nginx_valid(lab)
