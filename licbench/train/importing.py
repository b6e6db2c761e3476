"""``licbench import``: CompressAI weights as a licbench checkpoint.

``licbench import model=balle2018 weights=bmshj2018-hyperprior-3-5c6f152b.pth.tar out=CKPT model.lmbda=0.0067``
reads a CompressAI state dict — a ``*.pth.tar`` of its ``examples/train.py`` (the weights under
``"state_dict"``, beside the optimizers') or a plain one, as its zoo publishes them — with
``torch.load(weights_only=True)``, so that the file cannot run code; loads it into the model config's
network (``CompressAIModel.load_compressai``: the architecture and widths must match, CDF tables are
computed afresh) and writes a slim checkpoint (:func:`licbench.core.checkpoint.save_checkpoint`) whose
metadata records the source file's name and SHA-256, never its path.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from licbench.core.checkpoint import save_checkpoint
from licbench.core.codec import CodecError
from licbench.core.provenance import git_revision, hydra_command


def read_state_dict(path: str | Path) -> tuple[dict, str]:
    """The state dict of a CompressAI weights file (under its ``"state_dict"`` key, else the whole
    payload) and the file's SHA-256; a one-line CodecError for a file torch's weights-only loader refuses."""
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"no such weights file: {path}")
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:  # torch's message: a page of advice, then what it met
        met = str(err).partition("WeightsUnpickler error:")[2].strip().split(". Please")[0]
        raise CodecError(f"refused to load {path.name}: not a plain weights file "
                         f"({met.splitlines()[0] if met else 'the weights-only loader refused it'})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise CodecError(f"{path.name} is not a readable weights file ({err})".splitlines()[0]) from None
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    return payload, digest.hexdigest()


def import_weights(cfg: DictConfig) -> Path:
    model = instantiate(cfg.model)
    if not hasattr(model, "load_compressai"):
        raise CodecError(f"model {model.name} is not a CompressAI architecture: import takes a model config on "
                         "licbench.lightning_modules.compressai_models.CompressAIModel (balle2018, minnen2018, ...)")
    source = Path(cfg.weights)
    state_dict, sha256 = read_state_dict(source)
    model.load_compressai(state_dict, source.name)
    meta = {"imported": {"file": source.name, "sha256": sha256, "architecture": model.architecture},
            "command": hydra_command("import"), "git": git_revision(), "torch": str(torch.__version__)}
    path = save_checkpoint(model, cfg.out, OmegaConf.to_container(cfg.model, resolve=True), meta)
    print(f"checkpoint: {path}  ({model.model_id}, from {source.name})")
    return path
