"""``licbench train | benchmark | report | encode | decode``: Hydra mains over conf/.

Each subcommand is a Hydra app whose primary config is ``conf/<command>.yaml``; everything
after the subcommand is Hydra overrides (``key=value``, ``-m`` for multirun). Bad input
ends in a one-line error and exit status 1.
"""
from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from licbench.codec import CodecError, explain

CONF_DIR = str(Path(importlib.util.find_spec("licbench.conf").submodule_search_locations[0]).resolve())
# Registered on import, so that launcher worker processes (which import this module) have them.
OMEGACONF_RESOLVERS = {
    "path_safe": lambda text: str(text).replace("/", "_") or "default",  # a grid job's directory name
    "cpu_share": lambda jobs: max(1, (os.cpu_count() or 1) // max(int(jobs), 1)),  # threads per parallel job
}
for _name, _resolver in OMEGACONF_RESOLVERS.items():
    OmegaConf.register_new_resolver(_name, _resolver, replace=True)
USAGE = "usage: licbench {train,benchmark,report,encode,decode} [key=value ...]   (Hydra overrides; -m for multirun)"


def _train(cfg: DictConfig):
    from licbench.training import train_job

    return train_job(cfg)


def _benchmark(cfg: DictConfig):
    from licbench.benchmark import run_benchmark

    return run_benchmark(cfg)


def _report(cfg: DictConfig):
    from licbench.leaderboard import write

    paths = write(cfg.in_dir)
    print("leaderboard: " + ", ".join(str(p) for p in paths.values()))


def _encode(cfg: DictConfig):
    from licbench.coding import encode_file

    return encode_file(cfg)


def _decode(cfg: DictConfig):
    from licbench.coding import decode_file

    return decode_file(cfg)


COMMANDS = {"train": _train, "benchmark": _benchmark, "report": _report, "encode": _encode, "decode": _decode}


def _fail(message: str) -> None:
    print(f"licbench: error: {message}", file=sys.stderr)
    sys.exit(1)


def _guarded(task):
    def run(cfg: DictConfig):
        try:
            return task(cfg)
        except (CodecError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
            _fail(str(err))
        except InstantiationException as err:  # a config value a class refused
            _fail(explain(err))
        except MissingMandatoryValue as err:
            _fail(f"missing value: pass {err.full_key}=...")
        except MemoryError:
            _fail("out of memory (a smaller image, or a lower LICBENCH_MAX_PIXELS for untrusted streams)")
        except RuntimeError as err:  # torch reports a failed allocation as a RuntimeError
            if "can't allocate memory" not in str(err):
                raise
            _fail(f"out of memory: {explain(err)}")

    return run


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    command = sys.argv.pop(1)
    sys.argv[0] = f"licbench {command}"
    hydra.main(config_path=CONF_DIR, config_name=command, version_base="1.3")(_guarded(COMMANDS[command]))()
