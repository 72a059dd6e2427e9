"""Looking at tasks: status, pages, cancel, live events and log files."""
