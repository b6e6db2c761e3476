"""``licbench train | benchmark | report | encode | decode | import``: Hydra mains over conf/.

Each subcommand is a Hydra app whose primary config is ``conf/<command>.yaml``; everything
after the subcommand is Hydra overrides (``key=value``, ``-m`` for multirun). Bad input
ends in a one-line error and exit status 1, and so does a command line Hydra cannot compose
(a mistyped key or config option: :func:`config_error`; ``HYDRA_FULL_ERROR=1`` shows Hydra's own
trace instead).
"""
from __future__ import annotations

import difflib
import os
import sys

import hydra
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import CompactHydraException, InstantiationException, MissingConfigException, OverrideParseException
from hydra.types import RunMode
from omegaconf import DictConfig
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue

from licbench.core import resolvers, zoo
from licbench.core.codec import CodecError

resolvers.register()  # here too for launcher worker processes, which import this module


def explain(err: BaseException) -> str:
    """The message of the innermost cause (Hydra wraps a class's own error when it instantiates it)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


USAGE = ("usage: licbench {train,benchmark,report,encode,decode,import} [key=value ...]   "
         "(Hydra overrides; -m for multirun)")


def _train(cfg: DictConfig):
    from licbench.train.training import train_job

    return train_job(cfg)


def _benchmark(cfg: DictConfig):
    from licbench.bench.benchmark import run_benchmark

    return run_benchmark(cfg)


def _report(cfg: DictConfig):
    from licbench.bench.report import run_report

    paths = run_report(cfg)
    print("leaderboard: " + ", ".join(str(p) for p in paths.values()))


def _encode(cfg: DictConfig):
    from licbench.core.coding import encode_file

    return encode_file(cfg)


def _decode(cfg: DictConfig):
    from licbench.core.coding import decode_file

    return decode_file(cfg)


def _import(cfg: DictConfig):
    from licbench.train.importing import import_weights

    return import_weights(cfg)


COMMANDS = {"train": _train, "benchmark": _benchmark, "report": _report, "encode": _encode, "decode": _decode,
            "import": _import}


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


def _closest(word: str, words: list[str], prefix: str) -> str:
    """`` — did you mean <prefix><the closest of words>?`` (difflib), or nothing where none is close;
    the cutoff is low so that a word for the same thing with a few letters in common (quality for
    rate) still gets its suggestion."""
    close = difflib.get_close_matches(word, words, n=1, cutoff=0.3)
    return f" — did you mean {prefix}{close[0]}?" if close else ""


def _choices(command: str, overrides: list[str], failed: str) -> dict[str, str | None]:
    """The option of each config group the command line picks (``{"codec": "jpeg", ...}``), from
    Hydra's defaults list without sweeps (a multirun job's own choice is unknown) and without the
    override of key ``failed``."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    kept = [o.input_line for o in parsed if not o.is_sweep_override() and o.key_or_group != failed]
    with initialize_config_dir(resolvers.CONF_DIR, version_base="1.3"):
        defaults = GlobalHydra.instance().config_loader().compute_defaults_list(command, kept, RunMode.RUN)
    return defaults.overrides.known_choices


def config_error(err: CompactHydraException, command: str, overrides: list[str]) -> str:
    """One line for a command line Hydra could not compose: a key the config lacks (``codec jpeg has
    no key 'quality'; it takes format, rate, grid — did you mean codec.rate?``), an option a config
    group lacks (``codec has no option 'jpg'; ...``), an override that does not parse, else the
    innermost message."""
    cause = err.__cause__
    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, option = err.missing_cfg_file.rpartition("/")
        options = list(err.options)
        return (f"{group} has no option {option!r}; it takes {', '.join(options)}"
                + _closest(option, options, f"{group}="))
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and isinstance(cause.parent_node, DictConfig):
        path, _, key = cause.full_key.rpartition(".")
        keys = [str(k) for k in cause.parent_node if not str(k).startswith("_")]
        choice = _choices(command, overrides, cause.full_key).get(path.replace(".", "/")) if path else None
        node = f"{path} {choice}" if choice else path or command
        return (f"{node} has no key {key!r}; it takes {', '.join(keys) or 'no keys'}"
                + _closest(key, keys, f"{path}." if path else ""))
    if isinstance(err, OverrideParseException):
        return f"cannot parse {err.override!r}: {explain(err)}"
    return explain(err)


#: The subcommand, for the processes that Lightning's DDP launcher starts: it re-runs ``sys.argv[0]``
#: with the overrides alone (``python SCRIPT key=value ... hydra.run.dir=...``), ``LOCAL_RANK`` set.
RELAUNCHED_COMMAND = "LICBENCH_COMMAND"


def _command() -> str:
    """``licbench COMMAND ...``'s command, taken off ``sys.argv``; in a DDP rank Lightning started, the
    parent's (``sys.argv[0]`` stays this script, so the relaunch runs it again)."""
    if len(sys.argv) >= 2 and sys.argv[1] in COMMANDS:
        os.environ[RELAUNCHED_COMMAND] = sys.argv[1]
        return sys.argv.pop(1)
    if os.environ.get("LOCAL_RANK") and os.environ.get(RELAUNCHED_COMMAND) in COMMANDS:
        return os.environ[RELAUNCHED_COMMAND]
    print(USAGE, file=sys.stderr)
    sys.exit(2)


def main() -> None:
    command = _command()
    overrides = [arg for arg in sys.argv[1:] if "=" in arg and not arg.startswith("-")]
    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises what it cannot compose instead of printing it
    app = hydra.main(config_path=resolvers.CONF_DIR, config_name=command, version_base="1.3")
    task = _guarded(COMMANDS[command])
    try:
        zoo.register_default_codecs(overrides)
        app(task)()
    except CompactHydraException as err:
        if full_error:
            raise
        _fail(config_error(err, command, overrides))
