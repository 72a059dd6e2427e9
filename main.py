"""Compatibility entry point: `uvicorn main:app --port 8002` (the original Quick Start) still works.

Settings come from `DM_*` environment variables and `config.json`; see README.md.
"""

from docker_manager.app import create_app

app = create_app()
