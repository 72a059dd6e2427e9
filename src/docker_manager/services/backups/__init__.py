"""Backups of this service's state and their restore onto a host (docs/backups.md)."""

from docker_manager.services.backups.service import BackupService

__all__ = ["BackupService"]
