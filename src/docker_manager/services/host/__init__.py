"""The host: system information, usage, processes, disk space per root."""
