"""Figure files of the measurement scripts (speed, fuzzing, determinism, odd images): a Markdown
table under the command that produced it and the git revision, written atomically."""
from __future__ import annotations

import sys
from pathlib import Path

from licbench.atomic import write_atomic
from licbench.training import git_revision


def command_line(module: str, argv: list[str] | None = None) -> str:
    """``python -m module ARGS`` with this process's arguments (or ``argv``)."""
    return " ".join(["python -m", module, *(sys.argv[1:] if argv is None else argv)])


def header(title: str, module: str, argv: list[str] | None = None, notes: list[str] = ()) -> list[str]:
    """The title, command, git revision and any ``notes`` as Markdown lines."""
    return [f"# {title}", "", f"- command: `{command_line(module, argv)}`", f"- git revision: {git_revision()}",
            *(f"- {note}" for note in notes)]


def write_figures(out: str | Path, title: str, module: str, table: str, argv: list[str] | None = None,
                  notes: list[str] = ()) -> Path:
    """``table`` under :func:`header`, atomically to ``out`` (parent directories created)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(out, "\n".join([*header(title, module, argv, notes), "", table, ""]))
