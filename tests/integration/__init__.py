"""Tier 3, the real thing: the Docker engine, nginx, sshd, a registry, Chromium, the service as a
process (`tests.harness`). Every effect is checked where it happens (inspect the container, read
the file, fetch the site). Files are named after the domain they test; every object a test makes is
named with the session prefix and removed at the end."""
