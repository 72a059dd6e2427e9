"""Table definitions (SQLAlchemy Core). Schema changes go through an alembic migration too."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    # sha256 of the whole token; the token itself is never stored.
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    # The first characters of the token, so an operator can tell tokens apart in `token list`.
    sa.Column("prefix", sa.String(16), nullable=False),
    sa.Column("scopes", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    # The apps the token is limited to, comma-separated (`shop,shop-*`); NULL: not limited.
    sa.Column("apps", sa.String(2000), nullable=True),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("stage", sa.String(40), nullable=True),
    sa.Column("app_id", sa.String(64), nullable=True),
    sa.Column("result", sa.JSON, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # Where the task's files live (build.log, build.info.json...), if it has any.
    sa.Column("files_dir", sa.String(1024), nullable=True),
    # The process that ran it: tasks of an earlier process still "running" were interrupted.
    sa.Column("boot_id", sa.String(32), nullable=False),
    # The request that started it (X-Request-ID): ties an answer, its task and its audit entry.
    sa.Column("request_id", sa.String(64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_tasks_created", "created_at", "id"),
    sa.Index("ix_tasks_status", "status"),
    sa.Index("ix_tasks_app", "app_id"),
)

task_events = sa.Table(
    "task_events",
    metadata,
    sa.Column("task_id", sa.String(64), sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("stage", sa.String(40), nullable=True),
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("data", sa.JSON, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("task_id", sa.String(64), nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    # pending, sent or dead (given up on).
    sa.Column("state", sa.String(8), nullable=False),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_outbox_state", "state", "id"),
)

health_checks = sa.Table(
    "health_checks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    # The task folder whose build.info.json gets the result.
    sa.Column("folder", sa.String(1024), nullable=False),
    sa.Column("container_id", sa.String(80), nullable=False),
    sa.Column("host_port", sa.Integer, nullable=True),
    sa.Column("path", sa.String(512), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Docker objects this service created (see `ownership.py`): ownership is decided here, not by labels.
owned_objects = sa.Table(
    "owned_objects",
    metadata,
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("ref", sa.String(200), primary_key=True),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("app_id", sa.String(64), nullable=True),
    sa.Column("task_id", sa.String(64), nullable=True),
    sa.Column("host_level", sa.Boolean, nullable=False, default=False),
    sa.Column("created_by", sa.String(32), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Small facts about this installation (e.g. that labelled objects of an earlier version were adopted).
service_meta = sa.Table(
    "service_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# Every successful deploy of an app (see `services/releases`): what is needed to run it again.
releases = sa.Table(
    "releases",
    metadata,
    sa.Column("app_id", sa.String(64), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # deploy, localrun, run, pipeline, update_port, rollback, imported
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("task_id", sa.String(64), nullable=True),
    # The build (or other) task whose folder holds the artefact, when not `task_id` itself.
    sa.Column("origin_task_id", sa.String(64), nullable=True),
    sa.Column("image_id", sa.String(80), nullable=False),
    sa.Column("tag", sa.Text, nullable=True),
    sa.Column("container_id", sa.String(80), nullable=True),
    sa.Column("container_name", sa.String(255), nullable=True),
    sa.Column("host_port", sa.Integer, nullable=True),
    # The engine create body without env values (they are in `env_sealed`, encrypted).
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("env_sealed", sa.Text, nullable=True),
    sa.Column("artefact", sa.String(1024), nullable=True),
    sa.Column("health", sa.JSON, nullable=True),
    sa.Column("restored_from", sa.Integer, nullable=True),
    sa.Column("deployed_by", sa.String(32), nullable=True),
    sa.Column("deployed_by_name", sa.String(100), nullable=True),
    # Set when retention removed its container, image and artefact.
    sa.Column("pruned_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_releases_task", "task_id"),
)

# Every state-changing request and every refused authentication (see `audit.py`). Append-only.
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("token_id", sa.String(32), nullable=True),
    sa.Column("token_name", sa.String(100), nullable=True),
    sa.Column("scopes", sa.String(200), nullable=True),
    sa.Column("client", sa.String(64), nullable=True),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("route", sa.String(200), nullable=False),
    sa.Column("app_id", sa.String(64), nullable=True),
    sa.Column("target", sa.JSON, nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("error_code", sa.String(40), nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False),
    sa.Index("ix_audit_ts", "ts", "id"),
    sa.Index("ix_audit_token", "token_id"),
    sa.Index("ix_audit_app", "app_id"),
)

# Dashboard sessions (see `ui/session.py`): a cookie names one; logging out ends it here.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("token_id", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
)

# One row per domain this service holds a certificate for, or tries to (see `services/certificates`).
# The files are in DM_NGINX_CERT_DIR; this is what an operator sees and the renewal loop decides on.
certificates = sa.Table(
    "certificates",
    metadata,
    sa.Column("domain", sa.String(253), primary_key=True),
    sa.Column("source", sa.String(8), nullable=False),  # acme, custom
    sa.Column("status", sa.String(16), nullable=False),  # pending, valid, renewing, error, expired
    sa.Column("not_before", sa.DateTime(timezone=True), nullable=True),
    sa.Column("not_after", sa.DateTime(timezone=True), nullable=True),
    sa.Column("serial", sa.String(64), nullable=True),
    sa.Column("issuer", sa.String(500), nullable=True),
    sa.Column("sans", sa.JSON, nullable=True),
    sa.Column("renew_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error_type", sa.String(64), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    # Set with a permanent error: no retry until someone asks again.
    sa.Column("permanent", sa.Boolean, nullable=False, default=False),
    sa.Column("failures", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("task_id", sa.String(64), nullable=True),
    sa.Column("directory", sa.String(500), nullable=True),  # the ACME directory that issued it
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
