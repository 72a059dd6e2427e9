"""The domains: one package per domain (the same word as its routes, schemas, tests and docs page),
each with its own options. They orchestrate adapters and know nothing of HTTP or the dashboard;
`runtime.py` builds them."""
