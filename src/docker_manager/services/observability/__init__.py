"""What watches the service: the audit log, the metrics port, SIGHUP."""
