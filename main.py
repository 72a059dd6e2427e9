"""Compatibility entry point: `uvicorn main:app --port 8002` (the original Quick Start) still works.

Settings come from `DM_*` environment variables and `config.json`; see README.md.
"""

from docker_manager.app import create_app
from docker_manager.config import Settings
from docker_manager.logs import configure_logging

settings = Settings()
if settings.log_format == "json":
    configure_logging("json")  # else uvicorn's own text logging stays as it was
app = create_app(settings)
