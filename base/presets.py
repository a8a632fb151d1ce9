"""The shipped reproduction presets: suite files under ``suites/presets/`` and
``suites/reproduction/``, named by their suite name (``baselines-mujoco1m``), their file name
without ``.toml`` (``baselines_mujoco1m``), or given as a path.

`trbench reproduce PRESET` runs a preset and `trbench report --reference PRESET` compares with its
published numbers; both look the name up here, so a preset is known by the same names to both.
The lookup is about data files, not code, so it lives in base, below the two layers that use it:
the suites package is located with :func:`importlib.util.find_spec`, which finds its folder
without running any of its code, and the files are read as plain TOML.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path

from .errors import UsageError

SUITES_PACKAGE = "trbench.suites"
PRESET_FOLDERS = ("presets", "reproduction")
NOT_PRESETS = ("variants.toml",)  # the built-in variants, not a grid


def preset_folders() -> list[Path]:
    spec = importlib.util.find_spec(SUITES_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{SUITES_PACKAGE} is not installed, so there are no presets to look up")
    root = Path(next(iter(spec.submodule_search_locations)))
    return [root / folder for folder in PRESET_FOLDERS]


def suite_name(path: Path, option: str) -> str:
    """The `name` a suite file gives its suite, else its file name without ``.toml``; a
    UsageError naming ``option`` when the file cannot be read as TOML."""
    try:
        data = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{option}: {path}: malformed TOML: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{option}: {path}: malformed TOML: {str(exc).splitlines()[0]}") from None
    except OSError as exc:
        raise UsageError(f"{option}: {path}: cannot read suite file: {exc.strerror or exc}") from None
    return str(data.get("name", path.stem))


def available_presets() -> dict[str, Path]:
    """Suite name -> file of every shipped preset (a file that does not parse is no preset)."""
    presets = {}
    for folder in preset_folders():
        for path in sorted(folder.glob("*.toml")):
            if path.name in NOT_PRESETS:
                continue
            try:
                presets[suite_name(path, "preset")] = path
            except UsageError:
                continue
    return presets


def shipped_preset(name: str) -> Path | None:
    """The shipped preset file with this suite name or file name without ``.toml``, if any."""
    presets = available_presets()
    if name in presets:
        return presets[name]
    return {path.stem: path for path in presets.values()}.get(name)


def find_preset(preset: str, option: str = "PRESET") -> Path:
    """The suite file of a preset given by name or path; a UsageError naming ``option`` when none."""
    path = Path(preset)
    if path.suffix == ".toml":
        if not path.is_file():
            raise UsageError(f"{option}: no such suite file: {path}")
        return path
    found = shipped_preset(preset)
    if found is None:
        raise UsageError(f"{option}: unknown preset {preset!r}; shipped: {', '.join(sorted(available_presets()))}")
    return found
