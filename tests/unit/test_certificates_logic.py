"""Certificates' pure rules: when to renew, when to try again, which pair is acceptable, the site
options in a site file's header, the challenge board, the HTTPS fields of requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import ValidationError

from docker_manager.adapters.nginx import Nginx, NginxPaths
from docker_manager.adapters.site_header import SiteTls, TlsChange, Upstream, parse_header
from docker_manager.errors import CertificateInvalid
from docker_manager.schemas.deploys import DeployRequest
from docker_manager.schemas.sites import SignDomainRequest
from docker_manager.services.certificates.challenges import ChallengeBoard
from docker_manager.services.certificates.files import check_pair, covers, install_changes, repair_pair
from docker_manager.services.certificates.policy import is_due, next_attempt, renew_at
from docker_manager.services.certificates.store import CertificateRecord

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NOWHERE = Path("/nonexistent/nginx")


def test_renewal_at_a_third_left_but_never_earlier_than_30_days() -> None:
    start = NOW
    assert renew_at(start, start + timedelta(days=90)) == start + timedelta(days=60)
    assert renew_at(start, start + timedelta(days=6)) == start + timedelta(days=4)
    # A one-year certificate: 30 days before its end, not 122.
    assert renew_at(start, start + timedelta(days=365)) == start + timedelta(days=335)


def test_retries_back_off_capped_and_respect_retry_after() -> None:
    waits = [(next_attempt(n, NOW, first=60, longest=3600) - NOW).total_seconds() for n in range(1, 10)]
    assert 60 <= waits[0] <= 75 and 120 <= waits[1] <= 150
    assert all(wait <= 3600 for wait in waits) and waits[-1] >= 3600 * 0.99
    # The CA's Retry-After wins, even beyond the cap.
    later = next_attempt(1, NOW, first=60, longest=3600, retry_after=7200)
    assert (later - NOW).total_seconds() == 7200


def test_what_the_renewal_loop_orders() -> None:
    valid = CertificateRecord(domain="a.example.com", source="acme", status="valid", renew_at=NOW)
    assert is_due(valid, NOW) and not is_due(valid, NOW - timedelta(seconds=1))
    assert not is_due(valid.with_(source="custom"), NOW)  # a certificate given by hand: never
    failed = valid.with_(status="error", next_attempt_at=NOW + timedelta(minutes=5))
    assert not is_due(failed, NOW) and is_due(failed, NOW + timedelta(minutes=5))
    assert not is_due(failed.with_(permanent=True), NOW + timedelta(days=1))  # until asked again
    expired = valid.with_(not_after=NOW)
    assert expired.shown_status(NOW) == "expired" and valid.shown_status(NOW) == "valid"


def _pair(names: list[str], *, days: int = 30, start: datetime = NOW) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "none")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
    certificate = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate.public_bytes(serialization.Encoding.PEM), key_pem


def test_a_pair_given_by_hand() -> None:
    chain, key = _pair(["shop.example.com"])
    facts = check_pair("shop.example.com", chain, key, NOW + timedelta(days=1))
    assert facts.sans == ["shop.example.com"]
    _, other_key = _pair(["shop.example.com"])
    with pytest.raises(CertificateInvalid, match="does not match"):
        check_pair("shop.example.com", chain, other_key, NOW + timedelta(days=1))
    with pytest.raises(CertificateInvalid, match="do not cover"):
        check_pair("other.example.com", chain, key, NOW + timedelta(days=1))
    with pytest.raises(CertificateInvalid, match="expired"):
        check_pair("shop.example.com", chain, key, NOW + timedelta(days=31))
    with pytest.raises(CertificateInvalid, match="not valid before"):
        check_pair("shop.example.com", chain, key, NOW - timedelta(days=1))
    with pytest.raises(CertificateInvalid, match="does not parse"):
        check_pair("shop.example.com", b"-----BEGIN CERTIFICATE-----\nxx\n", key, NOW)


def test_a_pair_cut_in_the_middle_of_an_install_is_put_back(tmp_path: Path) -> None:
    """A crash between writing the new key and the new certificate: the previous pair returns."""
    old_chain, old_key = _pair(["shop.example.com"])
    new_chain, new_key = _pair(["shop.example.com"])
    (tmp_path / "shop.example.com.crt").write_bytes(old_chain)
    (tmp_path / "shop.example.com.key").write_bytes(old_key)
    assert not repair_pair(tmp_path, "shop.example.com")  # a matching pair: left alone
    for change in install_changes(tmp_path, "shop.example.com", new_chain, new_key)[:3]:
        assert change.content is not None  # the previous pair, then the new key: then the crash
        change.path.write_bytes(change.content)
    assert repair_pair(tmp_path, "shop.example.com")
    assert (tmp_path / "shop.example.com.key").read_bytes() == old_key
    assert (tmp_path / "shop.example.com.crt").read_bytes() == old_chain
    assert (tmp_path / "shop.example.com.key").stat().st_mode & 0o777 == 0o600
    # A symlink in the folder is never read through.
    (tmp_path / "other.example.com.crt").symlink_to(tmp_path / "shop.example.com.crt")
    (tmp_path / "other.example.com.key").symlink_to("/etc/shadow")
    assert not repair_pair(tmp_path, "other.example.com")
    previous = [
        c
        for c in install_changes(tmp_path, "other.example.com", new_chain, new_key)
        if ".previous" in c.path.name
    ]
    assert previous == []


def test_wildcards_cover_one_label() -> None:
    assert covers(["*.example.com"], "shop.example.com")
    assert not covers(["*.example.com"], "a.shop.example.com")
    assert not covers(["*.example.com"], "example.com")
    assert covers(["example.com", "www.example.com"], "www.example.com")


def _nginx() -> Nginx:
    paths = NginxPaths("nginx", None, None, pid_file=NOWHERE, error_log=NOWHERE)
    return Nginx(paths, listen="127.0.0.1:8080", tls_listen="127.0.0.1:8443", cert_dir=None)


def test_site_tls_options_survive_the_header() -> None:
    nginx = _nginx()
    text = nginx.render(
        ident="shop",
        domain="shop.example.com",
        upstream=Upstream("127.0.0.1", 18080),
        app_id="shop",
        tls=SiteTls(mode="off", hsts=600),
    )
    header = parse_header(text)
    assert header is not None and header.tls == SiteTls(mode="off", hsts=600)
    plain = parse_header(
        nginx.render(ident="x", domain="x.example.com", upstream=Upstream("127.0.0.1", 1), app_id="x")
    )
    assert plain is not None and plain.tls == SiteTls()  # files written before #26 read as auto


def test_https_only_sites_never_proxy_in_clear() -> None:
    nginx = _nginx()
    text = nginx.render(
        ident="self",
        domain="manager.example.com",
        upstream=Upstream("127.0.0.1", 8002, kind="host"),
        app_id=None,
        tls=SiteTls(mode="only"),
    )
    assert "return 503" in text and "proxy_pass http://dm_upstream_self" not in text
    header = parse_header(text)
    assert header is not None and header.tls.mode == "only" and header.upstream.kind == "host"


def test_a_request_changes_only_what_it_names() -> None:
    current = SiteTls(mode="auto", hsts=600)
    assert TlsChange(hsts=0).applied_to(current) == SiteTls(mode="auto", hsts=0)
    assert TlsChange(mode="off").applied_to(current) == SiteTls(mode="off", hsts=600)
    assert TlsChange().applied_to(current) == current


def test_https_fields_are_validated() -> None:
    with pytest.raises(ValidationError):
        SignDomainRequest(domain="a.example.com", tls="on")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SignDomainRequest(domain="a.example.com", hsts_max_age=-1)
    with pytest.raises(ValidationError):
        SignDomainRequest(domain="a.example.com", hsts_max_age=10**9)
    with pytest.raises(ValidationError, match="give the domain"):
        DeployRequest(image="web:1", hsts_max_age=60)
    assert DeployRequest(image="web:1", domain="a.example.com", tls="off").tls == "off"
    # The route's first version took a bool.
    assert (
        DeployRequest.model_validate({"image": "w:1", "domain": "a.example.com", "tls": True}).tls == "auto"
    )
    assert DeployRequest.model_validate({"image": "w:1", "tls": False}).tls is None


def test_the_challenge_board_answers_only_tokens_it_holds() -> None:
    board = ChallengeBoard()
    board.publish("abc_DEF-123", "abc_DEF-123.thumb")
    assert board.answer("abc_DEF-123") == "abc_DEF-123.thumb"
    for token in ("", "../etc/passwd", "abc DEF", "x" * 257, "abc_DEF-123/"):
        assert board.answer(token) is None
    board.withdraw("abc_DEF-123")
    assert board.answer("abc_DEF-123") is None
