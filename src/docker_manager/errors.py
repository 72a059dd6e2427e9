"""The service's one exception tree.

Every failure the service reports is one of these; `api.errors` maps them to HTTP in one place,
so the status code and the machine-readable `code` never depend on where the error was raised.

    DockerManagerError                500 internal_error
    ├── BadRequest                    400 bad_request
    │   └── InvalidHost               400 invalid_host
    ├── InvalidInput                  422 invalid_input
    │   ├── ValidationFailed          422 validation_error
    │   ├── BuildFailed               422 build_failed
    │   ├── CommandFailed             422 command_failed
    │   ├── CloneFailed               422 clone_failed
    │   ├── StageFailed               422 pipeline_stage_failed
    │   ├── CertificateInvalid        422 certificate_invalid
    │   └── NginxConfigError          422 nginx_config_invalid
    ├── Unauthorized                  401 unauthorized
    ├── Forbidden                     403 forbidden
    │   ├── InsufficientScope         403 insufficient_scope
    │   ├── AppNotAllowed             403 app_not_allowed
    │   ├── NotManaged                403 not_managed
    │   ├── PathNotAllowed            403 path_not_allowed
    │   └── PolicyViolation           403 policy_violation
    ├── NotFound                      404 not_found
    ├── MethodNotAllowed              405 method_not_allowed
    ├── Conflict                      409 conflict
    │   ├── DeployInProgress          409 deploy_in_progress
    │   ├── PortInUse                 409 port_in_use
    │   ├── UnhealthyContainer        409 unhealthy_container
    │   ├── NotSwarmManager           409 not_a_swarm_manager
    │   ├── RolloutFailed             409 rollout_failed
    │   └── Unsupported               409 unsupported
    ├── PayloadTooLarge               413 payload_too_large
    ├── UnsupportedMediaType          415 unsupported_media_type
    ├── Throttled                     429 too_many_requests
    │   ├── QueueFull                 429 queue_full
    │   ├── TooManyStreams            429 too_many_streams
    │   └── TooManyFailures           429 too_many_failures
    ├── StorageError                  507 storage_error
    │   ├── InsufficientStorage       507 insufficient_storage
    │   └── DiskFull                  507 disk_full
    ├── DatabaseUnavailable           503 database_unavailable
    │   └── DatabaseBusy              503 database_busy
    ├── NginxUnavailable              503 nginx_unavailable
    └── UpstreamError                 502 upstream_error
        ├── EngineError               502 engine_error
        ├── NginxReloadFailed         502 nginx_reload_failed
        ├── SwitchFailed              502 switch_failed
        ├── UploadFailed              502 upload_failed
        ├── AcmeError                 502 acme_error
        │   └── SelfCheckFailed       502 self_check_failed
        ├── EngineUnavailable         503 docker_unavailable
        └── EngineTimeout             504 docker_timeout
"""

from __future__ import annotations

import errno
from typing import Any, ClassVar


class DockerManagerError(Exception):
    """Base of every error the service raises on purpose."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, detail: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "detail": self.detail}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.extra)
        return body


class BadRequest(DockerManagerError):
    """The request itself is malformed (its framing, a header)."""

    status_code = 400
    code = "bad_request"


class InvalidHost(BadRequest):
    """The `Host` header is not one this service answers to (DNS rebinding)."""

    code = "invalid_host"


class InvalidInput(DockerManagerError):
    """The request is well-formed JSON but asks for something impossible or unsafe."""

    status_code = 422
    code = "invalid_input"


class ValidationFailed(InvalidInput):
    """The body, a path or a query parameter does not match its schema (`errors` says where)."""

    code = "validation_error"


class MethodNotAllowed(DockerManagerError):
    """The route exists, not with this method."""

    status_code = 405
    code = "method_not_allowed"


class UnsupportedMediaType(DockerManagerError):
    """The body's media type is not one the route reads."""

    status_code = 415
    code = "unsupported_media_type"


class BuildFailed(InvalidInput):
    """The Dockerfile did not build (a step failed, a base image is missing...)."""

    code = "build_failed"


class Unauthorized(DockerManagerError):
    """No bearer token, or one the service does not know (or expired, or revoked)."""

    status_code = 401
    code = "unauthorized"


class Forbidden(DockerManagerError):
    """The caller is known but may not do this."""

    status_code = 403
    code = "forbidden"


class InsufficientScope(Forbidden):
    """The token lacks the scope the route requires."""

    code = "insufficient_scope"


class AppNotAllowed(Forbidden):
    """The token is limited to some apps, and this route or object is of another (or of none)."""

    code = "app_not_allowed"


class NotManaged(Forbidden):
    """The Docker object was not created by this service; touching it needs `admin`."""

    code = "not_managed"


class PolicyViolation(Forbidden):
    """A container option that gives away the host was asked for without the right to do so."""

    code = "policy_violation"


class NotFound(DockerManagerError):
    """The thing named in the request does not exist."""

    status_code = 404
    code = "not_found"


class Conflict(DockerManagerError):
    """The request clashes with the current state (name taken, object in use...)."""

    status_code = 409
    code = "conflict"


class NotSwarmManager(Conflict):
    """A cluster operation asked of a swarm worker, or of no swarm (the detail names a manager)."""

    code = "not_a_swarm_manager"


class DeployInProgress(Conflict):
    """A deploy of this app is queued or running, and DM_DEPLOY_QUEUE says not to wait."""

    code = "deploy_in_progress"


class PortInUse(Conflict):
    """A host port asked for is already bound."""

    code = "port_in_use"


class Unsupported(Conflict):
    """The target cannot do this (an image without `rm` cannot delete files)."""

    code = "unsupported"


class PayloadTooLarge(DockerManagerError):
    """A body, file or output is larger than the configured cap."""

    status_code = 413
    code = "payload_too_large"


class Throttled(DockerManagerError):
    """A cap on what one caller (or all) may hold at once is reached; retry after `retry_after` s."""

    status_code = 429
    code = "too_many_requests"
    retry_after: int = 10

    def __init__(self, detail: str, *, retry_after: int | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        if retry_after is not None:
            self.retry_after = retry_after


class QueueFull(Throttled):
    """Too many tasks are waiting already; try again later."""

    code = "queue_full"


class TooManyStreams(Throttled):
    """Too many live streams are open (for this token, or in all); close one or retry later."""

    code = "too_many_streams"
    retry_after = 5


class TooManyFailures(Throttled):
    """Too many failed authentications from this address: it waits `retry_after` seconds."""

    code = "too_many_failures"


class StorageError(DockerManagerError):
    """The service could not write its own files (a full or read-only disk)."""

    status_code = 507
    code = "storage_error"


class InsufficientStorage(StorageError):
    """Refused: it would leave less than DM_MIN_FREE_BYTES free (`path`, `needed_bytes`, `free_bytes`)."""

    code = "insufficient_storage"


class DiskFull(StorageError):
    """A disk filled up while the work ran; what it had written was removed (`reason: disk_full`)."""

    code = "disk_full"

    @classmethod
    def from_error(cls, exc: BaseException) -> DiskFull | None:
        """The DiskFull an error means (ENOSPC or EDQUOT, or the engine saying its disk is full)."""
        if isinstance(exc, DiskFull):
            return exc
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            text = exc.strerror or str(exc)
        elif isinstance(exc, DockerManagerError) and any(
            marker in exc.detail.lower() for marker in ("no space left on device", "disk quota exceeded")
        ):
            text = exc.detail
        else:
            return None
        return cls(f"a disk is full: {text}", reason="disk_full")


class DatabaseUnavailable(DockerManagerError):
    """The service's database cannot be reached (PostgreSQL down); retry shortly."""

    status_code = 503
    code = "database_unavailable"


class DatabaseBusy(DatabaseUnavailable):
    """Another process held the database past the wait (a backup, `sqlite3`): retry shortly."""

    code = "database_busy"


class UpstreamError(DockerManagerError):
    """Something the service depends on failed in a way the caller cannot fix."""

    status_code = 502
    code = "upstream_error"


class EngineError(UpstreamError):
    """The Docker engine answered with an error that is not the caller's fault."""

    code = "engine_error"


class EngineUnavailable(UpstreamError):
    """The Docker engine cannot be reached."""

    status_code = 503
    code = "docker_unavailable"


class EngineTimeout(UpstreamError):
    """The Docker engine did not answer in time."""

    status_code = 504
    code = "docker_timeout"


class PathNotAllowed(Forbidden):
    """A path lies outside the directories the service may use."""

    code = "path_not_allowed"


class UnhealthyContainer(Conflict):
    """The new container did not answer HTTP as required, so traffic was not switched."""

    code = "unhealthy_container"


class RolloutFailed(Conflict):
    """A swarm rollout did not converge (rolled back, or past its deadline): the previous serves."""

    code = "rollout_failed"


class CommandFailed(InvalidInput):
    """A host command ran and ended badly (a non-zero exit code, a signal, a timeout)."""

    code = "command_failed"


class NginxUnavailable(DockerManagerError):
    """nginx is not installed, or its master process is not running."""

    status_code = 503
    code = "nginx_unavailable"


class NginxConfigError(InvalidInput):
    """nginx refused the configuration (`nginx -t`): nothing was changed."""

    code = "nginx_config_invalid"


class NginxReloadFailed(UpstreamError):
    """The configuration tested fine but the running nginx did not take it."""

    code = "nginx_reload_failed"


class SwitchFailed(UpstreamError):
    """The kernel rule that moves a site's new connections could not be replaced."""

    code = "switch_failed"


class UploadFailed(UpstreamError):
    """The files could not be delivered to the SFTP server."""

    code = "upload_failed"


class AcmeError(UpstreamError):
    """The ACME CA refused or failed an order: `problem_type` (RFC 8555 §6.7), `permanent` (retrying
    will not help until something changes), `retry_after` (the CA's Retry-After, seconds)."""

    code = "acme_error"


class SelfCheckFailed(AcmeError):
    """A probe through the domain did not reach this nginx: no order was placed."""

    code = "self_check_failed"


class CertificateInvalid(InvalidInput):
    """A certificate given by hand does not fit: key, names, dates or chain."""

    code = "certificate_invalid"


class CloneFailed(InvalidInput):
    """git could not clone the repository (unreachable, refused, too big, too slow)."""

    code = "clone_failed"


class StageFailed(InvalidInput):
    """A pipeline stage failed; the answer's `stage` names it."""

    code = "pipeline_stage_failed"
