"""The OmegaConf resolvers licbench's configs use, and where its config tree is.

Every entry point that composes ``conf/`` calls :func:`register` first: the CLI, the
measurement scripts, launcher worker processes (which import :mod:`licbench.cli`) and tests.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = str(Path(importlib.util.find_spec("licbench.conf").submodule_search_locations[0]).resolve())
MAX_NAME = 200  # characters of a job's directory name; file systems allow 255


def path_safe(overrides) -> str:
    """A grid or shard job's directory name from its overrides: ``/`` as ``_``; a name longer than
    ``MAX_NAME`` (a benchmark of a dozen codecs with references, say) cut there, and ended by a hash of
    the whole name, so that it stays unique and is the same when the job is rerun."""
    name = str(overrides).replace("/", "_") or "default"
    if len(name) <= MAX_NAME:
        return name
    return f"{name[:MAX_NAME - 17]}-{hashlib.sha256(name.encode()).hexdigest()[:16]}"


RESOLVERS = {
    "path_safe": path_safe,
    "cpu_share": lambda jobs: max(1, (os.cpu_count() or 1) // max(int(jobs), 1)),  # threads per parallel job
}


def register() -> None:
    for name, resolver in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)
