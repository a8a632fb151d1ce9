"""The one error type the CLI turns into a one-line message and exit code 2, and the check of an
output folder that every command makes before it writes."""

from pathlib import Path


class UsageError(Exception):
    """Bad input from the user: a file, key or value that is not allowed.

    The message must fit on one line and name the file (when there is one), the key and what is
    allowed, e.g. ``suites/x.toml: hparams.trpo.max_kl: must be > 0, got -1``.
    """


def check_output_folder(path: Path, option: str = "--out") -> None:
    """Refuse an output folder that could not be created as one: the path, or the nearest part of
    it that exists, is a file. Checked before anything is written, so a refusal leaves no trace."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option}: {path} exists and is not a folder; give a folder")
    existing = next((parent for parent in path.parents if parent.exists()), None)
    if existing is not None and not existing.is_dir():
        raise UsageError(f"{option}: {path} cannot be a folder, because {existing} is a file")
