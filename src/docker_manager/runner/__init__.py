"""The task engine: persisted tasks with stages, events, files and a final state.

It knows nothing of Docker: the work is an async function handed a `TaskContext`.
"""

from docker_manager.runner.bus import EventBus
from docker_manager.runner.context import TaskContext
from docker_manager.runner.files import TaskFiles
from docker_manager.runner.follow import follow, is_final
from docker_manager.runner.models import FINAL, LOG, Status, TaskEvent, TaskKind, TaskRecord
from docker_manager.runner.runner import TaskRunner, TaskSpec, new_task_id
from docker_manager.runner.store import StateChange, TaskStore

__all__ = [
    "FINAL",
    "LOG",
    "EventBus",
    "StateChange",
    "Status",
    "TaskContext",
    "TaskEvent",
    "TaskFiles",
    "TaskKind",
    "TaskRecord",
    "TaskRunner",
    "TaskSpec",
    "TaskStore",
    "follow",
    "is_final",
    "new_task_id",
]
