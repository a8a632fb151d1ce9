"""Importable algorithms for tests that need a run to fail in a known way."""
