"""Slim checkpoints: weights (entropy-model CDF tables included), the model's config, and
data and budget metadata — plain tensors, dicts and strings, loaded with
``torch.load(weights_only=True)`` so that a checkpoint from the internet cannot run code.

The model class named by the checkpoint's ``_target_`` must be a codec module (an
``nn.Module`` with ``encode``/``decode``); anything else is refused before it is called.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch
from hydra.utils import get_class

from licbench.atomic import write_atomic
from licbench.codec import CodecError

FORMAT = "licbench-checkpoint/1"


def save_checkpoint(module: torch.nn.Module, path: str | Path, model_config: dict, meta: dict) -> Path:
    """Write atomically (``licbench.atomic``): a killed job leaves no half checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "state_dict": module.state_dict(), "model": model_config,
               "meta": {**meta, "model_id": module.model_id}}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return write_atomic(path, buffer.getvalue())


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"no such checkpoint: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CodecError(f"refused to load {path}: not a plain weights file, it may contain code ({err})".splitlines()[0]) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CodecError(f"{path} is not a readable checkpoint ({err})".splitlines()[0]) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CodecError(f"{path} is not a licbench checkpoint (expected format {FORMAT})")
    return payload


def load_checkpoint(path: str | Path) -> torch.nn.Module:
    """Build the checkpoint's model, load its weights, check its model id; returns it in eval mode."""
    payload = read_checkpoint(path)
    config = dict(payload["model"])
    target = config.pop("_target_", None)
    try:
        cls = get_class(target)
    except Exception:  # hydra raises ImportError/ValueError variants for unknown targets
        raise CodecError(f"{path}: unknown model class {target!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module) and hasattr(cls, "encode") and hasattr(cls, "decode")):
        raise CodecError(f"{path}: {target!r} is not a codec module")
    module = cls(**config)
    try:
        module.load_state_dict(payload["state_dict"])
    except (RuntimeError, KeyError, ValueError) as err:
        raise CodecError(f"{path}: weights do not fit {target} ({str(err).splitlines()[0]})") from None
    module.eval()
    expected = payload["meta"].get("model_id")
    if expected and module.model_id != expected:
        raise CodecError(f"{path}: weights hash to {module.model_id}, the checkpoint says {expected} (corrupt file?)")
    module.checkpoint_meta = payload["meta"]
    return module
