"""Where a result came from: the git revision of the code and the command line that ran it."""
from __future__ import annotations

import subprocess
import sys


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


def hydra_command(app: str) -> str:
    """``licbench APP`` with the running Hydra job's overrides."""
    from hydra.core.hydra_config import HydraConfig

    return " ".join([f"licbench {app}", *HydraConfig.get().overrides.task])


def module_command(module: str, argv: list[str] | None = None) -> str:
    """``python -m module ARGS`` with this process's arguments (or ``argv``)."""
    return " ".join(["python -m", module, *(sys.argv[1:] if argv is None else argv)])
