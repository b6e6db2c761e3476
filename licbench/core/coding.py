"""``licbench encode`` / ``licbench decode``: one image file to one bitstream file and back.

The format is identified from the bytes alone: a licbench container names its codec and
model id (weights are found among ``search`` checkpoints, or given with ``weights=``);
native files (.jpg, .j2k, .webp, .avif) go to the decoders listed in ``native_decoders``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import get_method
from omegaconf import DictConfig

from licbench.core.bitstream import Container, is_container
from licbench.core.checkpoint import Limits, load_checkpoint
from licbench.core.codec import CodecError, UnknownFormat
from licbench.core.images import load_image, save_image
from licbench.core.zoo import build, checkpoint_paths, find_weights


def _read(path: str) -> bytes:
    path = Path(path)
    if not path.is_file():
        raise CodecError(f"no such input file: {path}")
    return path.read_bytes()


def _write(path: str, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def encode_file(cfg: DictConfig) -> None:
    x, note = load_image(cfg.input)
    if "checkpoints" in cfg.codec or cfg.weights:
        codec = load_checkpoint(cfg.weights or _only_checkpoint(cfg.codec.checkpoints), Limits.from_config(cfg))
        if cfg.codec.get("rate") is not None:  # a multi-rate model's point
            codec = codec.at_rate(cfg.codec.rate, **(cfg.codec.get("points") or {}))
    else:
        codec = build(cfg.codec)
    with torch.inference_mode():
        data = codec.encode(x)
    _write(cfg.output, data)
    h, w = x.shape[1:]
    print(f"{cfg.output}: {codec.name} @ {codec.rate}, {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp"
          + (f" ({note})" if note else ""))


def _only_checkpoint(spec) -> Path:
    paths = checkpoint_paths(spec)
    if len(paths) != 1:
        raise CodecError(f"{len(paths)} checkpoints match {spec}: choose one with weights=PATH")
    return paths[0]


def decode_bytes(data: bytes, cfg: DictConfig) -> torch.Tensor:
    if is_container(data):
        container = Container.from_bytes(data)
        weights = cfg.weights or find_weights(container.model_id, list(cfg.search))
        codec = load_checkpoint(weights, Limits.from_config(cfg))
        with torch.inference_mode():
            return codec.decode(data)
    for decoder in cfg.native_decoders:
        try:
            return get_method(decoder)(data)
        except UnknownFormat:
            continue
    raise CodecError("unrecognised bitstream: not a licbench stream nor a file any native decoder reads")


def decode_file(cfg: DictConfig) -> None:
    x_hat = decode_bytes(_read(cfg.input), cfg)
    Path(cfg.output).parent.mkdir(parents=True, exist_ok=True)
    try:
        save_image(x_hat, cfg.output)
    except (ValueError, KeyError) as err:
        raise CodecError(f"cannot write {cfg.output}: {err} (use an image suffix such as .png)") from None
    print(f"{cfg.output}: {x_hat.shape[2]}x{x_hat.shape[1]}")
