"""The remote client: `docker-manager login|deploy|logs|rollback|...` against a running service.

`config` (named contexts in ~/.config/docker-manager/config.toml, mode 0600), `api` (HTTP calls
and the errors a person can act on), `follow` (a task's events, resumed across dropped
connections), `views` (a live view on a terminal, plain lines elsewhere) and `commands` (typer).
"""
