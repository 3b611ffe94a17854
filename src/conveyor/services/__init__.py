"""Use cases: create, lookup, cancel, restart; authentication and permissions."""
