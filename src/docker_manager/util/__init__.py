"""Small helpers with no knowledge of Docker, HTTP or tasks."""
