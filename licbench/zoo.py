"""Codec instances from config: a baseline's grid of rate points, or a learned method's
checkpoints (``checkpoints:`` a glob or a list of paths; each checkpoint is one rate point,
and a model that offers several — e.g. iterations of an RNN — lists them in
``rate_points(**points)``, ``points:`` coming from the codec config).
"""
from __future__ import annotations

import glob
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from licbench.checkpoint import load_checkpoint, read_checkpoint
from licbench.codec import Codec, CodecError


def checkpoint_paths(spec) -> list[Path]:
    patterns = list(spec) if isinstance(spec, (list, ListConfig)) else [spec]
    return sorted({Path(p) for pattern in patterns for p in glob.glob(str(Path(str(pattern)).expanduser()), recursive=True)})


def rate_points(name: str, cfg: DictConfig) -> list[Codec]:
    """Every rate point of one configured codec, in ascending rate order for baselines."""
    if "checkpoints" in cfg:
        paths = checkpoint_paths(cfg.checkpoints)
        if not paths:
            raise CodecError(f"codec {name}: no checkpoints match {OmegaConf.to_container(cfg, resolve=True)['checkpoints']}; "
                             f"train one with `licbench train model={name} ckpt_path=...` or set codecs.{name}.checkpoints")
        points = cfg.get("points") or {}
        codecs = []
        for path in paths:
            model = load_checkpoint(path)
            codecs += model.rate_points(**points) if hasattr(model, "rate_points") else [model]
        return codecs
    return [build(cfg, rate) for rate in cfg.grid]


def build(cfg: DictConfig, rate=None) -> Codec:
    """One baseline codec at ``rate`` (default: the config's ``rate``)."""
    params = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k not in ("grid", "rate")}
    return instantiate(params, rate=cfg.rate if rate is None else rate)


def find_weights(model_id: str, search: list[str]) -> Path:
    """The checkpoint whose model id is ``model_id`` among the checkpoints matching ``search``."""
    for path in checkpoint_paths(search):
        if read_checkpoint(path)["meta"].get("model_id") == model_id:
            return path
    raise CodecError(f"no checkpoint with model id {model_id!r} under {list(search)}; pass weights=PATH")


def codec_config(name: str, root: DictConfig) -> DictConfig:
    """``conf/codec/<name>.yaml`` (from Hydra's search path, ``hydra.searchpath`` included), with
    ``root.codec_overrides[name]`` applied and interpolations resolved against the job's config
    (``${paths.zoo_dir}``, ...). A learned method with only ``conf/model/<name>.yaml`` gets the
    default codec config: its checkpoints under ``${paths.zoo_dir}/<name>/``."""
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import MissingConfigException

    search = [f"hydra.searchpath=[{','.join(HydraConfig.get().searchpath)}]"] if HydraConfig.initialized() else []
    try:
        node = compose(overrides=[*search, f"+codec={name}"]).codec
    except MissingConfigException:
        try:
            compose(overrides=[*search, f"+model={name}"])
        except MissingConfigException:
            raise CodecError(f"unknown codec {name!r}: no conf/codec/{name}.yaml nor conf/model/{name}.yaml "
                             "on the config search path") from None
        node = OmegaConf.create({"checkpoints": "${paths.zoo_dir}/" + name + "/*.ckpt"})
    merged = root.copy()
    OmegaConf.set_struct(merged, False)
    merged.codec = OmegaConf.merge(node, root.get("codec_overrides", {}).get(name) or {})
    return OmegaConf.create(OmegaConf.to_container(merged.codec, resolve=True))


def configured_codecs(root: DictConfig) -> dict[str, DictConfig]:
    return {name: codec_config(name, root) for name in root.codecs}


def named_rate_points(names: list[str]) -> dict[str, list[Codec]]:
    """Every rate point of each named codec outside a Hydra app: ``licbench benchmark``'s config
    (``conf/codec/<name>.yaml``, checkpoints under ``paths.zoo_dir``), as ``codecs=[...]`` would."""
    from hydra import compose, initialize_config_module

    for name in names:
        if not (name.isascii() and name.replace("_", "").isalnum()):
            raise CodecError(f"bad codec name {name!r}: expected the name of a conf/codec/*.yaml, e.g. jpeg or balle2017")
    with initialize_config_module("licbench.conf", version_base=None):
        cfg = compose("benchmark", overrides=[f"codecs=[{','.join(names)}]"])
        return {name: rate_points(name, node) for name, node in configured_codecs(cfg).items()}


def extreme_points(points: list[Codec]) -> list[Codec]:
    """The lowest and highest rate points of a list in rate order (the one point of a single-point list)."""
    return [points[0], points[-1]] if len(points) > 1 else list(points)
