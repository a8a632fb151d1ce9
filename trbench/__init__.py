"""trbench: comparative benchmarking of trust-region policy optimisation."""

__version__ = "0.1.0"
