"""Slim checkpoints: weights (entropy-model CDF tables included), the model's config, and
data and budget metadata — plain tensors, dicts and strings, loaded with
``torch.load(weights_only=True)`` so that a checkpoint from the internet cannot run code.

The model class named by the checkpoint's ``_target_`` must be a codec module (an
``nn.Module`` and a :class:`~licbench.core.codec.Codec`); anything else is refused before it is
called. The model id of a loaded codec is the hash of the weights as the file stores them, so a
method whose parameters were renamed since (``Codec.from_checkpoint`` migrates them) still
decodes the streams its old checkpoints wrote.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch
from hydra.utils import get_class

from licbench.core.atomic import write_atomic
from licbench.core.codec import Codec, CodecError, weights_id

FORMAT = "licbench-checkpoint/1"


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
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"no such checkpoint: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CodecError(f"refused to load {path}: not a plain weights file, it may contain code "
                         f"({err})".splitlines()[0]) from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CodecError(f"{path} is not a readable checkpoint ({err})".splitlines()[0]) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CodecError(f"{path} is not a licbench checkpoint (expected format {FORMAT})")
    return payload


def load_checkpoint(path: str | Path) -> Codec:
    """Build the checkpoint's codec from its config, weights and provenance (``Codec.from_checkpoint``),
    after checking that the stored weights hash to the model id the checkpoint records."""
    payload = read_checkpoint(path)
    config = dict(payload["model"])
    target = config.pop("_target_", None)
    try:
        cls = get_class(target)
    except Exception:  # hydra raises ImportError/ValueError variants for unknown targets
        raise CodecError(f"{path}: unknown model class {target!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module) and issubclass(cls, Codec)):
        raise CodecError(f"{path}: {target!r} is not a codec module")
    meta = payload["meta"]
    model_id = weights_id(cls.name, payload["state_dict"])
    if meta.get("model_id") and model_id != meta["model_id"]:
        raise CodecError(f"{path}: weights hash to {model_id}, the checkpoint says {meta['model_id']} (corrupt file?)")
    try:
        return cls.from_checkpoint(config, payload["state_dict"], meta, model_id)
    except (RuntimeError, KeyError, ValueError) as err:
        raise CodecError(f"{path}: weights do not fit {target} ({str(err).splitlines()[0]})") from None
