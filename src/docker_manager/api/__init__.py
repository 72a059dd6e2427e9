"""The HTTP layer: routes stay thin, services do the work."""
