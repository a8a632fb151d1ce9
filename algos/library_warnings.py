"""Warnings that gymnasium and MuJoCo raise while envs are built, shown so that a person can use them.

A run builds several envs (the training envs, one set per evaluation size), a suite builds them
in every worker, and the libraries warn on each build: the same line would repeat inside the
learning-curve table. Here each distinct warning raised while building envs is shown once per
process, those that tell the user nothing not at all, and a process whose envs its parent has
already built and warned about (a suite's worker) shows none of them.

MuJoCo's C library does not warn through Python: it prints to the terminal and appends to
MUJOCO_LOG.TXT in the working folder. Its warning hook turns each message into a
:class:`MujocoWarning` instead, so that Python's warning filters apply and no log file is written.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import mujoco

# MuJoCo 4 deprecates the compiler attribute `settotalmass`, which gymnasium's own model files
# (HalfCheetah, Ant, Swimmer, ...) use on every build: the user can change neither, and the
# compiled model is the same.
SILENCED_MUJOCO_MESSAGES: tuple[str, ...] = ("compiler attribute 'settotalmass' is deprecated",)


class MujocoWarning(UserWarning):
    """A warning of the MuJoCo C library (its ``mju_warning``)."""


_shown: set[tuple[type[Warning], str]] = set()
_building_depth = 0
_quiet_building = False
_hook_installed = False


def silence_env_building_warnings() -> None:
    """Show no warning raised while building envs in this process: for a worker whose parent
    built every env of the grid once and showed their warnings there."""
    global _quiet_building
    _quiet_building = True


def _first_time(category: type[Warning], text: str) -> bool:
    key = (category, text)
    if key in _shown:
        return False
    _shown.add(key)
    return True


def _on_mujoco_warning(text: str) -> None:
    if text.startswith(SILENCED_MUJOCO_MESSAGES):
        return
    if not _building_depth and not _first_time(MujocoWarning, text):
        return  # while building, env_building decides what is new
    # a filter may turn the warning into an error, which cannot be raised through MuJoCo's C code
    with contextlib.suppress(Warning):
        warnings.warn(text, MujocoWarning, stacklevel=2)


def _install_mujoco_hook() -> None:
    global _hook_installed
    if _hook_installed:
        return
    mujoco.set_mju_user_warning(_on_mujoco_warning)
    _hook_installed = True


@contextlib.contextmanager
def env_building() -> Iterator[None]:
    """Around building envs: collect the warnings raised inside, then show each one this process
    has not shown yet (none after :func:`silence_env_building_warnings`)."""
    global _building_depth
    _install_mujoco_hook()
    _building_depth += 1
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:
        _building_depth -= 1
    if _quiet_building:
        return
    for record in caught:
        if _first_time(record.category, str(record.message)):
            warnings.showwarning(record.message, record.category, record.filename, record.lineno)
