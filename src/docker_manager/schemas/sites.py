"""Bodies of the nginx and traffic-switching routes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from docker_manager.adapters.site_header import DOMAIN_RE
from docker_manager.schemas.common import AppId, ContainerRef, HttpPath, ResponseModel, StrictModel, TaskId


def _lower(value: Any) -> Any:
    # Lower-cased, never stripped: "a.com\r\n" is refused, not repaired.
    return value.lower() if isinstance(value, str) else value


def _domain(value: str) -> str:
    if len(value) > 253 or not DOMAIN_RE.fullmatch(value):
        raise ValueError("not a domain name (lower-case letters, digits, dashes and dots; '*.' only first)")
    return value


Domain = Annotated[str, BeforeValidator(_lower), AfterValidator(_domain)]
Port = Annotated[int, Field(ge=1, le=65535)]
ConfDir = Annotated[
    str, Field(max_length=4096, description="One of DM_NGINX_CONF_DIRS (default: the first).")
]


HSTS_MAX = 2 * 365 * 86400  # two years: what the HSTS preload list asks for


class SiteTlsFields(StrictModel):
    """A site's HTTPS options; left out, a site keeps the ones it has (a new one: auto, no HSTS)."""

    tls: Literal["auto", "off"] | None = Field(
        None,
        description='"auto": HTTPS once a certificate for the domain is there (issued by the service '
        'when DM_ACME_ENABLED), port 80 then redirects; "off": plain HTTP only.',
    )
    hsts_max_age: int | None = Field(
        None, ge=0, le=HSTS_MAX, description="Strict-Transport-Security max-age on HTTPS (0: no header)."
    )


class SiteCreateRequest(SiteTlsFields):
    domain: Domain
    port: Port = Field(description="Host port of a container this service manages (admin: any free port).")
    app_id: AppId | None = Field(None, description="Names the file `{app_id}.conf` (default: the domain).")
    conf_dir: ConfDir | None = None


class SiteDeleteRequest(StrictModel):
    domain: Domain
    conf_dir: ConfDir | None = None


class HealthGate(StrictModel):
    health_path: HttpPath = Field("/", description="Path the new container must answer before the switch.")
    expected_status: int | None = Field(None, ge=100, le=599, description="Default: any status below 500.")
    health_timeout: float = Field(10.0, ge=0.5, le=300, description="Seconds to wait for a good answer.")
    drain_seconds: float | None = Field(None, ge=0, le=300, description="Wait before stopping the old one.")


class SignDomainRequest(HealthGate, SiteTlsFields):
    domain: Domain
    conf_dir: ConfDir | None = None
    app_id: AppId | None = None
    new_container: ContainerRef | None = None
    old_container: ContainerRef | None = None
    port: Port | None = Field(
        None,
        description="A host port the new container publishes, or one of its own ports (reached on its "
        "bridge address). Default: its first published port, else the one localrun recorded, else 80.",
    )
    task_id: TaskId | None = Field(
        None, description="Fills app_id, new_container and port from build.info.json."
    )
    old_task_id: TaskId | None = Field(
        None, description="The old container is the one this task's build.info.json records."
    )


class UpdatePortRequest(HealthGate):
    task_id: TaskId
    new_port: Port
    domain: Domain
    conf_dir: ConfDir | None = None


class NginxReload(ResponseModel):
    status: str = Field(description='"reloaded" once the new target is live (the original\'s word).')
    tested: bool
    verified: bool
    mechanism: str = Field(
        "reload", description='"nat": the kernel moved new connections; "reload": nginx was reloaded.'
    )
    nginx_reloaded: bool = Field(True, description="Whether nginx itself was reloaded.")


class SiteResult(ResponseModel):
    status: str
    path: str
    domain: str
    port: int
    upstream_managed: bool = Field(description="Whether a container of this service publishes the port.")
    upstream_container: dict[str, str] | None = Field(description="That container's id and name.")
    nginx_reload: NginxReload


class SiteDeleted(ResponseModel):
    status: str
    paths: list[str]
    domain: str
    nginx_reload: NginxReload


class OldContainer(ResponseModel):
    status: str
    id: str
    drained_seconds: float | None = None
    removed: bool | None = None
    error: str | None = None


class SignDomainResult(ResponseModel):
    stage: str = Field(description="signing_domain")
    status: str = Field(description="completed")
    domain: str
    app_id: str
    conf_path: str
    port: int
    upstream_host: str
    upstream: str = Field(description="host:port nginx sends the requests to.")
    new_container: str
    nginx_reload: NginxReload
    old_stop: OldContainer | None


class UpdatePortContainer(ResponseModel):
    id: str
    name: str
    status: str | None


class UpdatePortResult(ResponseModel):
    stage: str = Field(description="update_port")
    status: str = Field(description="completed")
    task_id: str
    app_id: str
    domain: str
    conf_path: str
    new_port: int
    container: UpdatePortContainer
    old_container: OldContainer | None
    stop: dict[str, str | None] | None = Field(description="The original's: {status: stopped} or an error.")
    remove: dict[str, str | None] | None = Field(description="The original's: {status: removed} or an error.")
    nginx_reload: NginxReload
    release: int | None = Field(None, description="The app's release the moved container became.")


class SiteView(BaseModel):
    domain: str
    app_id: str | None
    conf_path: str
    upstream: str = Field(description="host:port nginx sends the requests to, or `down`.")
    port: int
    container: str | None = Field(description="The container a bridge-address site follows.")
    kind: str = Field(description="managed, or host (an admin's: admin-only to change).")
    tls: str = Field(
        "auto",
        description="auto (HTTPS when a certificate is there), off, or only (this service's own site).",
    )
    hsts_max_age: int = Field(0, description="Strict-Transport-Security max-age (0: none).")
    https: bool = Field(False, description="Whether the site file serves HTTPS now.")
