"""Apps and releases: recording deploys (`service`), rollback (`rollback`), retention of old
releases and tasks (`retention`), and the table behind them (`store`)."""

from docker_manager.services.releases.retention import RetentionService
from docker_manager.services.releases.rollback import RollbackService
from docker_manager.services.releases.service import ReleaseService
from docker_manager.services.releases.store import Release, ReleaseStore

__all__ = ["Release", "ReleaseService", "ReleaseStore", "RetentionService", "RollbackService"]
