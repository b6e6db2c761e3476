"""Figure files of the measurement scripts (speed, fuzzing, determinism, odd images): a Markdown
table under the command that produced it and the git revision, written atomically."""
from __future__ import annotations

from pathlib import Path

from licbench.core.atomic import write_atomic
from licbench.core.provenance import git_revision, module_command


def header(title: str, module: str, argv: list[str] | None = None, notes: list[str] = ()) -> list[str]:
    """The title, command, git revision and any ``notes`` as Markdown lines."""
    return [f"# {title}", "", f"- command: `{module_command(module, argv)}`", f"- git revision: {git_revision()}",
            *(f"- {note}" for note in notes)]


def write_figures(out: str | Path, title: str, module: str, table: str, argv: list[str] | None = None,
                  notes: list[str] = ()) -> Path:
    """``table`` under :func:`header`, atomically to ``out`` (parent directories created)."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(out, "\n".join([*header(title, module, argv, notes), "", table, ""]))


def publish(table: str, out: str | Path | None, title: str, module: str, notes: list[str] = ()) -> None:
    """Print ``table``, and write it to ``out`` (when given) with :func:`write_figures`."""
    print(table)
    if out:
        write_figures(out, title, module, table, notes=notes)
