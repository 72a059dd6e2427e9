"""Images: list, remove, tag, prune, by this service's record."""
