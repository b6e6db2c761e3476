"""Slim checkpoints: weights (entropy-model CDF tables included), the model's config, and
data and budget metadata — plain tensors, dicts and strings, loaded with
``torch.load(weights_only=True)`` so that a checkpoint from the internet cannot run code.

A checkpoint from the internet costs at most its :class:`Limits`, checked in this order before
anything they bound happens:

- its model class (``_target_``) must be one of licbench's methods (``licbench.lightning_modules.*``),
  the ``_target_`` of a ``model/*.yaml`` config of licbench's ``conf/`` or of a ``hydra.searchpath``
  directory (the way a user's own method is added), or named in ``trust_checkpoint_targets``: the
  name is checked as a string, before its module is imported;
- its weights may hold at most ``max_checkpoint_params`` tensor elements (counted from the file's
  tensor headers: it is memory-mapped, not read);
- building the model from its config may allocate at most ``max_checkpoint_params`` tensor elements:
  each allocation is sized on the meta device first and refused before it happens (building the
  whole model on the meta device is not possible: the methods' constructors compute tables from
  tensor values);
- the class must be a codec module (an ``nn.Module`` and a :class:`~licbench.core.codec.Codec`).

The model id of a loaded codec is the hash of the weights as the file stores them, so a method whose
parameters were renamed since (``Codec.from_checkpoint`` migrates them) still decodes the streams its
old checkpoints wrote.
"""
from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from licbench.core import resolvers
from licbench.core.atomic import write_atomic
from licbench.core.codec import Codec, CodecError, weights_id

FORMAT = "licbench-checkpoint/1"
METHODS = "licbench.lightning_modules."  # the package of licbench's methods
MAX_PARAMS = 200_000_000  # tensor elements (800 MB in float32); the largest zoo model has 2.2 M


@dataclass(frozen=True)
class Limits:
    """What loading a checkpoint may cost: ``max_params`` tensor elements in its weights and in
    building its model, and model classes beyond licbench's own (``trust``, ``module.Class`` names)."""
    max_params: int = MAX_PARAMS
    trust: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg) -> Limits:
        """The keys ``max_checkpoint_params`` and ``trust_checkpoint_targets`` of a command's config."""
        return cls(int(cfg.get("max_checkpoint_params", MAX_PARAMS)), tuple(cfg.get("trust_checkpoint_targets") or ()))


def save_checkpoint(module: torch.nn.Module, path: str | Path, model_config: dict, meta: dict) -> Path:
    """Write atomically (``licbench.core.atomic``): a killed job leaves no half checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state_dict = module.state_dict()  # the id is the hash of what is written (a migrated model's too)
    payload = {"format": FORMAT, "state_dict": state_dict, "model": model_config,
               "meta": {**meta, "model_id": weights_id(module.name, state_dict)}}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_atomic(path, buffer.getvalue())


def read_checkpoint(path: str | Path) -> dict:
    """The checkpoint's payload; its tensors are memory-mapped from the file, read when used."""
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"no such checkpoint: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        raise CodecError(f"refused to load {path}: not a plain weights file, it may contain code "
                         f"({err})".splitlines()[0]) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CodecError(f"{path} is not a readable checkpoint ({err})".splitlines()[0]) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CodecError(f"{path} is not a licbench checkpoint (expected format {FORMAT})")
    return payload


def model_targets() -> set[str]:
    """The ``_target_`` of each ``model/*.yaml`` of licbench's ``conf/`` and, in a Hydra app, of each
    ``hydra.searchpath=[file://DIR]`` directory (read as YAML: nothing is imported)."""
    dirs = [Path(resolvers.CONF_DIR)]
    if HydraConfig.initialized():
        dirs += [Path(entry.removeprefix("file://")) for entry in HydraConfig.get().searchpath
                 if entry.startswith("file://")]
    targets = {OmegaConf.load(path).get("_target_") for conf in dirs for path in (conf / "model").glob("*.yaml")}
    return {str(target) for target in targets if target}  # a variant (toderici2016) names its method's config


def check_target(target, path: Path, trust: tuple[str, ...]) -> None:
    """Refuse a model class that is not licbench's, a model config's or trusted, before importing it."""
    if isinstance(target, str) and (target.startswith(METHODS) or target in trust or target in model_targets()):
        return
    raise CodecError(f"{path}: unknown model class {target!r}: not a codec module of licbench's methods nor the "
                     "_target_ of a model/*.yaml config on the search path, so it was not imported; if you trust "
                     f"this checkpoint, pass trust_checkpoint_targets=[{target}]")


class AllocationBudget(TorchDispatchMode):
    """Within the block, refuse (raising :class:`OverBudget`) the tensor allocation that would take the
    elements allocated from nothing (``empty``, ``zeros``, ``randn``, ...: the ops with a ``device`` and
    no tensor argument) past ``limit``, sizing each on the meta device before it happens."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.allocated = limit, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (any(arg.name == "device" for arg in func._schema.arguments)
                and not any(isinstance(leaf, torch.Tensor) for leaf in tree_leaves((args, kwargs)))):
            planned = func(*args, **{**kwargs, "device": torch.device("meta")})
            self.allocated += sum(t.numel() for t in tree_leaves(planned) if isinstance(t, torch.Tensor))
            if self.allocated > self.limit:
                raise OverBudget
        return func(*args, **kwargs)


class OverBudget(Exception):
    """An allocation :class:`AllocationBudget` refused."""


def load_checkpoint(path: str | Path, limits: Limits | None = None) -> Codec:
    """Build the checkpoint's codec from its config, weights and provenance (``Codec.from_checkpoint``)
    within ``limits`` (default :class:`Limits`; see the module's docstring), after checking that the
    stored weights hash to the model id the checkpoint records."""
    limits = limits or Limits()
    payload = read_checkpoint(path)
    config = dict(payload["model"])
    target = config.pop("_target_", None)
    check_target(target, path, limits.trust)
    size = sum(t.numel() for t in payload["state_dict"].values() if isinstance(t, torch.Tensor))
    if size > limits.max_params:
        raise CodecError(f"{path}: its weights hold {size} tensor elements, over the limit of {limits.max_params}; "
                         "if you trust this checkpoint, raise max_checkpoint_params")
    try:
        cls = get_class(target)
    except Exception:  # hydra raises ImportError/ValueError variants for unknown targets
        raise CodecError(f"{path}: unknown model class {target!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module) and issubclass(cls, Codec)):
        raise CodecError(f"{path}: {target!r} is not a codec module")
    meta = payload["meta"]
    model_id = weights_id(cls.codec_name(config), payload["state_dict"])
    if meta.get("model_id") and model_id != meta["model_id"]:
        raise CodecError(f"{path}: weights hash to {model_id}, the checkpoint says {meta['model_id']} (corrupt file?)")
    try:
        with AllocationBudget(limits.max_params):
            return cls.from_checkpoint(config, payload["state_dict"], meta, model_id)
    except OverBudget:
        raise CodecError(f"{path}: building its model ({target}) would allocate over {limits.max_params} tensor "
                         "elements and was refused before it did; if you trust this checkpoint, raise "
                         "max_checkpoint_params") from None
    except (RuntimeError, KeyError, ValueError, TypeError) as err:  # TypeError: a config key the class lacks
        raise CodecError(f"{path}: weights do not fit {target} ({str(err).splitlines()[0]})") from None
