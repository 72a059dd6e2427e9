"""docker-manager: the per-host agent that builds, ships, runs and routes Docker containers."""

__version__ = "0.1.0"
