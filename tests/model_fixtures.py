"""Fixtures that build and activate a tiny model (filled in with the starter model work)."""
