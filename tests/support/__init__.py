"""Helpers that start the real components the tests talk to (OpenBao, PostgreSQL databases, certificates)."""
