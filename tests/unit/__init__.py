"""Tier 1, pure: the logic alone. No network, no processes, no Docker engine, no database server
(a SQLite file in a temporary folder at most); fakes may stand in for what the logic is handed.
Files are named after the module they test. They run in seconds."""
