"""Atomic file writes: every file a command leaves behind is complete or absent."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def json_text(data: Any) -> str:
    """The JSON text trbench writes: indented, keys in their order, numpy scalars as numbers."""
    return json.dumps(data, indent=2, sort_keys=False, default=json_default) + "\n"


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json_text(data))


def json_default(value: Any) -> Any:
    """numpy and torch scalars as Python numbers, sets and tuples as lists."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def is_temporary_file(name: str) -> bool:
    """The temporary file of an unfinished atomic write (``.NAME.*.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def remove_temporary_files(folder: Path) -> None:
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
