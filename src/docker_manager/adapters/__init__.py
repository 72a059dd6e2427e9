"""Adapters: the outside world (the Docker engine, SFTP, nginx, the kernel's rules, git, webhooks,
HTTP probes), each behind the calls the services need and the service's one error tree."""
