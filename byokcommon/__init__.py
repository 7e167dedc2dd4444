"""Plumbing both services import: settings parsing, mTLS and peer identity, logging with redaction, health, metrics."""
