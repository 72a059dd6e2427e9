"""What `GET /nginx/sites` and the dashboard show of each site: its header, and whether its file
serves HTTPS now (what nginx was given, not a guess from the cert dir)."""

from __future__ import annotations

from pathlib import Path

from docker_manager.adapters.site_header import SiteHeader
from docker_manager.schemas.sites import SiteView


def site_views(sites: list[tuple[Path, SiteHeader]]) -> list[SiteView]:
    """Blocking (reads each file)."""
    return [
        SiteView(
            domain=header.domain,
            app_id=header.app_id,
            conf_path=str(path),
            upstream="down" if header.upstream.down else header.upstream.address,
            port=header.port,
            container=header.upstream.container,
            kind=header.upstream.kind,
            tls=header.tls.mode,
            hsts_max_age=header.tls.hsts,
            https=_serves_tls(path),
        )
        for path, header in sites
    ]


def _serves_tls(path: Path) -> bool:
    try:
        return "ssl_certificate " in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
