"""Reliability evidence (see RELIABILITY.md): suites that run against a real dynamod."""
