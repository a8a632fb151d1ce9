"""The one error type the CLI turns into a one-line message and exit code 2."""


class UsageError(Exception):
    """Bad input from the user: a file, key or value that is not allowed.

    The message must fit on one line and name the file (when there is one), the key and what is
    allowed, e.g. ``suites/x.toml: hparams.trpo.max_kl: must be > 0, got -1``.
    """
