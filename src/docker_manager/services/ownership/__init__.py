"""Which Docker objects this service created: the record, and the one-time adoption."""
