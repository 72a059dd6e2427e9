"""The task engine: persisted tasks with stages, events, files and a final state.

It knows nothing of Docker: the work is an async function handed a `TaskContext`.
"""

from docker_manager.tasks.bus import EventBus
from docker_manager.tasks.context import TaskContext
from docker_manager.tasks.files import TaskFiles
from docker_manager.tasks.follow import follow, is_final
from docker_manager.tasks.models import FINAL, LOG, Status, TaskEvent, TaskRecord
from docker_manager.tasks.runner import TaskRunner, TaskSpec, new_task_id
from docker_manager.tasks.store import StateChange, TaskStore

__all__ = [
    "FINAL",
    "LOG",
    "EventBus",
    "StateChange",
    "Status",
    "TaskContext",
    "TaskEvent",
    "TaskFiles",
    "TaskRecord",
    "TaskRunner",
    "TaskSpec",
    "TaskStore",
    "follow",
    "is_final",
    "new_task_id",
]
