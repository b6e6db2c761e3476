"""Where a result came from: the git revision of the code and the command line that ran it."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def git_revision() -> str:
    """The code's revision: short commit hash, "-dirty" when tracked files outside results/ changed."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    except OSError:
        return "unknown"
    return (commit + ("-dirty" if changed else "")) if commit else "unknown"


def portable(argument: str) -> str:
    """An argument with no machine path in it: a folder or file outside the working directory, bare or as
    an override's value (``data.root=/data/sets/kodak``), is written under ``$DATA``, the Makefile's
    ``DATA`` variable: by its path below the datasets folder ``LICBENCH_DATASETS`` names where it is inside
    it (``--calibration $DATA/bsds500/train``), else by its name (``data.root=$DATA/kodak``); paths inside
    the project stay as given."""
    key, sep, value = argument.partition("=")
    key, value = (key, value) if sep else ("", argument)
    if not value or not os.path.exists(value):
        return argument
    path = Path(value).expanduser().resolve()
    if path.is_relative_to(Path.cwd().resolve()):
        return argument
    datasets = Path(os.environ.get("LICBENCH_DATASETS") or path.parent).expanduser().resolve()
    return f"{key}{sep}$DATA/{path.relative_to(datasets) if path.is_relative_to(datasets) else path.name}"


def hydra_command(app: str) -> str:
    """``licbench APP`` with the running Hydra job's overrides, machine paths named (:func:`portable`)."""
    from hydra.core.hydra_config import HydraConfig

    return " ".join([f"licbench {app}", *map(portable, HydraConfig.get().overrides.task)])


def module_command(module: str, argv: list[str] | None = None) -> str:
    """``python -m module ARGS`` with this process's arguments (or ``argv``), machine paths named (:func:`portable`)."""
    return " ".join(["python -m", module, *map(portable, sys.argv[1:] if argv is None else argv)])
