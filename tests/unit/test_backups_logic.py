"""Backups' pure logic: the sealed stream at its chunk boundaries, the names an archive may hold,
the settings copied into it without secrets, and site headers read back with nothing wider than
the grammar the service writes (a restored header is rendered into nginx again)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from docker_manager.adapters.backup_cipher import CHUNK, OpeningReader, SealedStreamError, SealingWriter
from docker_manager.adapters.site_header import parse_header
from docker_manager.config import Settings
from docker_manager.services.backups.archive import storable
from docker_manager.services.backups.options import public_settings

PASSPHRASE = b"a long enough passphrase"


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 7])
def test_a_sealed_stream_opens_whole_at_every_boundary_and_refuses_a_cut(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    sealed = io.BytesIO()
    writer = SealingWriter(sealed, PASSPHRASE)
    writer.write(data[:size])
    writer.close()
    raw = sealed.getvalue()
    assert OpeningReader(io.BytesIO(raw), PASSPHRASE).read() == data[:size]
    with pytest.raises(SealedStreamError):
        OpeningReader(io.BytesIO(raw[:-1]), PASSPHRASE).read()
    with pytest.raises(SealedStreamError):
        OpeningReader(io.BytesIO(raw + b"x"), PASSPHRASE).read()
    with pytest.raises(SealedStreamError, match="wrong passphrase"):
        OpeningReader(io.BytesIO(raw), b"another passphrase").read()


def test_an_archive_holds_only_the_names_a_backup_writes() -> None:
    for name in ("database/docker-manager.db", "keys/release-key", "acme/a1b2/account.json",
                 "sites/0/shop.conf", "certificates/shop.example.com.key", "settings.json"):  # fmt: skip
        assert storable(name), name
    for name in ("../etc/passwd", "/etc/passwd", "acme/../x", "acme/.hidden.tmp", "keys/other",
                 "certificates/my site.crt", "sites/0/../x.conf", "database/x.db", "acme/" + "a" * 101,
                 "acme/a\nb"):  # fmt: skip
        assert not storable(name), name


def test_the_settings_in_an_archive_keep_no_secret(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url="postgresql+asyncpg://dm:pa/ss@db:5432/dm?password=hunter2xx",
        log_stream_endpoint="https://u:LOGPASS@logs.example.com/in?token=LOGTOKEN",
        auth_header={"Authorization": "Bearer HEADERSECRET"},
        admin_token="dm_ADMINSECRET",
        swarm_registry_password="REGISTRYSECRET",
    )
    text = str(public_settings(settings))
    for secret in (
        "pa/ss",
        "hunter2xx",
        "LOGPASS",
        "LOGTOKEN",
        "HEADERSECRET",
        "ADMINSECRET",
        "REGISTRYSECRET",
    ):
        assert secret not in text, secret
    assert public_settings(settings)["database_url"] == "postgresql+asyncpg://db:5432/dm"


def test_a_site_header_with_a_value_wider_than_its_grammar_is_not_read() -> None:
    good = (
        "# managed-by=docker-manager app_id=shop domain=shop.example.com port=8080 upstream=127.0.0.1:8080"
        " kind=managed\n"
    )
    assert parse_header(good) is not None
    for bad, fixed in (
        ("domain=~.", "domain=shop.example.com"),  # a regex server_name that catches every Host
        ("domain=a/../../x.example.com", "domain=shop.example.com"),
        ("upstream=evil;include", "upstream=127.0.0.1:8080"),
        ("upstream=example.org:80", "upstream=127.0.0.1:8080"),
        ("port=99999", "port=8080"),
        ("app_id=a;b", "app_id=shop"),
        ("kind=managed x=1", "kind=managed"),  # (a field it does not know: the whole line is refused)
    ):
        assert parse_header(good.replace(fixed, bad)) is None, bad
