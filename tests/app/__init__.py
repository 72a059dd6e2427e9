"""Tier 2, the app in-process: the FastAPI app with its real database and middleware, driven
through ASGI (`tests.harness.started_app`). No container is made; the engine may be asked (a route
walk, `/healthz`). Files are named after the domain or module they test. The ones marked
`postgres` run a second time against PostgreSQL (`scripts/test.sh`)."""
