"""Shared PyTorch core and the algorithms built on it."""
