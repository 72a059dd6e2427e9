"""Health checks after a deploy: wait, probe the container, record the verdict."""
