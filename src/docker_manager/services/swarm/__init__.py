"""Docker Swarm: the cluster this host's engine belongs to (status, init, join, its nodes)."""

from docker_manager.services.swarm.service import SwarmService

__all__ = ["SwarmService"]
