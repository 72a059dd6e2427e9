"""`/docs` works on a host without internet: every file the page loads is served by the service."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx2


async def test_docs_load_nothing_from_off_host(client: httpx2.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page.text)
    assert len(assets) >= 3  # the script, the stylesheet, the icon
    for url in assets:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{url} points off-host"
        served = await client.get(url)  # no token: the page must load before anyone logs in
        assert served.status_code == 200, url
        assert len(served.content) > 0
    assert "openapi.json" in page.text
    schema = await client.get("/openapi.json")
    assert schema.status_code == 200 and "/docker/build-stream" in schema.json()["paths"]


async def test_static_files_never_leave_their_folder(client: httpx2.AsyncClient) -> None:
    # The client folds a plain `..` itself (/app.py: no such public path, 401); encoded dots reach
    # the static files, which refuse to leave their folder (404).
    for path, expected in (
        ("/static/../app.py", 401),
        ("/static/%2e%2e/app.py", 404),
        ("/static/vendor/%2e%2e/%2e%2e/config.py", 404),
    ):
        response = await client.get(path)
        assert response.status_code == expected, path
        assert "import" not in response.text  # never a source file
    licence = await client.get("/static/vendor/swagger-ui-5.35.0/LICENSE")
    assert licence.status_code == 200 and "Apache License" in licence.text
