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
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/vendor/%2e%2e/%2e%2e/config.py"):
        response = await client.get(path)
        assert response.status_code in (401, 404), path
        assert "import" not in response.text  # never a source file
    licence = await client.get("/static/vendor/swagger-ui-5.35.0/LICENSE")
    assert licence.status_code == 200 and "Apache License" in licence.text
