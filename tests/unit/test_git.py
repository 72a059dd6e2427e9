"""Clone URLs: checked before git runs, and never shown with their credentials."""

from __future__ import annotations

from pathlib import Path

import pytest

from docker_manager.adapters.git import check_repo_url, redact_credentials, shown_url
from docker_manager.errors import InvalidInput, PathNotAllowed


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "fd::3",
        "--upload-pack=touch /tmp/pwned",
        "-oProxyCommand=x",
        "ssh://-oProxyCommand=x/y",
        "https://github.com/o/r x",
        "https://github.com/o/r\n",
        "git://github.com/o/r",
        "http://github.com/o/r",
        "/srv/repos/site",  # no local roots configured
        "file:///srv/repos/site",
        "",
        "github.com/o/r",
    ],
)
def test_hostile_or_unlisted_urls_are_refused(url: str) -> None:
    with pytest.raises((InvalidInput, PathNotAllowed)):
        check_repo_url(url, schemes=["https"], local_roots=[])


def test_local_repositories_are_confined_after_decoding(tmp_path: Path) -> None:
    root = tmp_path / "repos"
    (root / "site").mkdir(parents=True)
    assert check_repo_url(str(root / "site"), schemes=["https"], local_roots=[root]) == (
        f"file://{root / 'site'}",
        "file",
    )
    for url in (
        f"file://{root}/%2e%2e/etc",
        f"file://{root}/%2E%2E%2Fetc",
        f"file://{root}/%252e%252e/etc",
        f"{root}/../etc",
        f"file://otherhost{root}/site",
    ):
        with pytest.raises((InvalidInput, PathNotAllowed)):
            check_repo_url(url, schemes=["https"], local_roots=[root])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://ghp_SECRET@github.com/o/r", "https://github.com/o/r"),
        ("https://user:pa@ss@git.example.com:8443/r.git", "https://git.example.com:8443/r.git"),
        ("https://github.com/o/r?access_token=SECRET#frag", "https://github.com/o/r"),
    ],
)
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert shown_url(url) == shown
    assert "SECRET" not in redact_credentials(f"fatal: unable to access '{url}'", ["SECRET"])
    assert "pa@ss" not in redact_credentials(f"remote: {url}")


def test_credentials_go_to_git_as_a_header_not_in_its_arguments() -> None:
    from docker_manager.adapters.git import _credentials_apart

    url, env = _credentials_apart("https://ci%40corp:s3cr%2Ft@git.example.com/o/r.git", {"HOME": "/h"})
    assert url == "https://git.example.com/o/r.git"
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    import base64

    assert env["GIT_CONFIG_VALUE_0"] == "Authorization: Basic " + base64.b64encode(b"ci@corp:s3cr/t").decode()
    plain = "https://git.example.com/o/r.git"
    assert _credentials_apart(plain, {}) == (plain, {})
    assert _credentials_apart("ssh://git@host/o/r", {}) == ("ssh://git@host/o/r", {})
