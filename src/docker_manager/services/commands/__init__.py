"""Host commands (`/tasks/run-stream`): argv, a work root, a process group, a timeout."""
