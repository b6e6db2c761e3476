"""The OmegaConf resolvers licbench's configs use, and where its config tree is.

Every entry point that composes ``conf/`` calls :func:`register` first: the CLI, the
measurement scripts, launcher worker processes (which import :mod:`licbench.cli`) and tests.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = str(Path(importlib.util.find_spec("licbench.conf").submodule_search_locations[0]).resolve())
RESOLVERS = {
    "path_safe": lambda text: str(text).replace("/", "_") or "default",  # a grid job's directory name
    "cpu_share": lambda jobs: max(1, (os.cpu_count() or 1) // max(int(jobs), 1)),  # threads per parallel job
}


def register() -> None:
    for name, resolver in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)
