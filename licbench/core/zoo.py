"""Codec instances from config: a baseline's grid of rate points, or a learned method's
checkpoints (``checkpoints:`` a glob or a list of paths; each checkpoint is one rate point,
and a model that offers several — e.g. iterations of an RNN — lists them in
``rate_points(**points)``, ``points:`` coming from the codec config).

One identity per codec: its name is the name of its config file. A learned method NAME is
``conf/model/NAME.yaml``, whose ``_target_`` class has ``name = "NAME"`` (a training variant,
such as toderici2016, names no class: it starts from its method's model config in
``defaults:``), and its checkpoints are ``${paths.zoo_dir}/NAME/*.ckpt``
(:func:`default_codec_config`). ``conf/codec/NAME.yaml`` exists only where it adds something: a
baseline, a learned method's ``points:`` or default ``rate:``, its paper's published curve or claim
(``paper:``/``claim:``, read by the leaderboard, :mod:`licbench.bench.papers`, never by the codec),
or a variant that reads another method's checkpoints (``fmm_packed``, ``toderici2016``).
``tests/test_learned_codecs.py`` checks the rule.
"""
from __future__ import annotations

import glob
from pathlib import Path

import torch
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from licbench.core import resolvers
from licbench.core.checkpoint import Limits, load_checkpoint, read_checkpoint
from licbench.core.codec import Codec, CodecError


def checkpoint_paths(spec) -> list[Path]:
    patterns = list(spec) if isinstance(spec, (list, ListConfig)) else [spec]
    return sorted({Path(p) for pattern in patterns
                   for p in glob.glob(str(Path(str(pattern)).expanduser()), recursive=True)})


def codec_device(spec: str | None) -> torch.device:
    """The device of the learned codecs' transforms (``device=``): the CPU, or a CUDA GPU that is present.
    Entropy coding stays on the CPU (CompressAI's rANS reads its symbols as Python lists)."""
    try:
        device = torch.device(spec or "cpu")
    except RuntimeError:
        raise CodecError(f"device={spec}: not a torch device; use device=cpu or device=cuda (cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise CodecError(f"device={spec}: licbench codes on cpu or cuda; use device=cpu or device=cuda")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CodecError(f"device={spec}: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
                         "use device=cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise CodecError(f"device={spec}: there are {torch.cuda.device_count()} CUDA GPUs here (cuda:0 first)")
    return device


def rate_points(name: str, cfg: DictConfig, limits: Limits | None = None, device: str = "cpu") -> list[Codec]:
    """Every rate point of one configured codec, in ascending rate order for baselines; a learned
    codec's checkpoints are loaded within ``limits`` (``Limits.from_config`` of the command's config)
    and moved to ``device`` (:func:`codec_device`; its transforms run there, its streams are the same kind)."""
    if "checkpoints" in cfg:
        paths = checkpoint_paths(cfg.checkpoints)
        if not paths:
            spec = OmegaConf.to_container(cfg, resolve=True)["checkpoints"]
            raise CodecError(f"codec {name}: no checkpoints match {spec}; train one there (licbench train "
                             f"ckpt_path=...) or name others with +codec_overrides.{name}.checkpoints=...")
        points, elsewhere = cfg.get("points") or {}, torch.device(device).type != "cpu"
        codecs = []
        for path in paths:
            model = load_checkpoint(path, limits)
            if elsewhere:
                model = model.to(device)
            codecs += model.rate_points(**points)
        return codecs
    return [build(cfg, rate) for rate in cfg.grid]


def build(cfg: DictConfig, rate=None) -> Codec:
    """One baseline codec at ``rate`` (default: the config's ``rate``)."""
    params = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items()
              if k not in ("grid", "rate", "paper", "claim")}
    return instantiate(params, rate=cfg.rate if rate is None else rate)


def find_weights(model_id: str, search: list[str]) -> Path:
    """The checkpoint whose model id is ``model_id`` among the checkpoints matching ``search``."""
    for path in checkpoint_paths(search):
        if read_checkpoint(path)["meta"].get("model_id") == model_id:
            return path
    raise CodecError(f"no checkpoint with model id {model_id!r} under {list(search)}; pass weights=PATH")


def default_codec_config(name: str) -> DictConfig:
    """The codec config of a learned method ``conf/model/<name>.yaml`` without a ``conf/codec/<name>.yaml``:
    its checkpoints in the zoo folder of its name."""
    return OmegaConf.create({"checkpoints": "${paths.zoo_dir}/" + name + "/*.ckpt"})


def codec_names() -> list[str]:
    """Every codec of licbench's own config tree: each ``conf/codec/*.yaml`` and ``conf/model/*.yaml``."""
    conf = Path(resolvers.CONF_DIR)
    return sorted({path.stem for group in ("codec", "model") for path in (conf / group).glob("*.yaml")})


def register_default_codecs(overrides: list[str]) -> None:
    """Store each learned method without a codec file in Hydra's config store as ``codec/<name>``
    (:func:`default_codec_config`), so that ``licbench encode codec=<name>`` finds it as it finds a
    file. The methods are those of licbench's ``conf/`` and of each ``hydra.searchpath=[file://DIR]``
    directory among the command line's ``overrides``."""
    dirs = [Path(resolvers.CONF_DIR)]
    searchpath = [o for o in overrides if o.startswith("hydra.searchpath=")]
    for override in OverridesParser.create().parse_overrides(searchpath):
        dirs += [Path(entry.removeprefix("file://")) for entry in override.value() if entry.startswith("file://")]
    codec_files = {path.stem for conf in dirs for path in (conf / "codec").glob("*.yaml")}
    for model in (path for conf in dirs for path in (conf / "model").glob("*.yaml")):
        if model.stem not in codec_files:
            ConfigStore.instance().store(group="codec", name=model.stem, node=default_codec_config(model.stem))


def codec_config(name: str, root: DictConfig) -> DictConfig:
    """``conf/codec/<name>.yaml`` (from Hydra's search path, ``hydra.searchpath`` included), or for a
    learned method with only ``conf/model/<name>.yaml`` :func:`default_codec_config`; with
    ``root.codec_overrides[name]`` applied and interpolations resolved against the job's config
    (``${paths.zoo_dir}``, ...)."""
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
        node = default_codec_config(name)
    merged = root.copy()
    OmegaConf.set_struct(merged, False)
    OmegaConf.set_struct(node, False)  # an override may add a key, e.g. +codec_overrides.NAME.paper=...
    merged.codec = OmegaConf.merge(node, root.get("codec_overrides", {}).get(name) or {})
    return OmegaConf.create(OmegaConf.to_container(merged.codec, resolve=True))


def configured_codecs(root: DictConfig) -> dict[str, DictConfig]:
    return {name: codec_config(name, root) for name in root.codecs}


def named_rate_points(names: list[str]) -> dict[str, list[Codec]]:
    """Every rate point of each named codec outside a Hydra app: ``licbench benchmark``'s config
    (:func:`codec_config`, checkpoints under ``paths.zoo_dir``), as ``codecs=[...]`` would."""
    from hydra import compose, initialize_config_module

    for name in names:
        if not (name.isascii() and name.replace("_", "").isalnum()):
            raise CodecError(f"bad codec name {name!r}: expected the name of a conf/codec/ or conf/model/ "
                             "config, e.g. jpeg or balle2017")
    resolvers.register()
    with initialize_config_module("licbench.conf", version_base=None):
        cfg = compose("benchmark", overrides=[f"codecs=[{','.join(names)}]"])
        return {name: rate_points(name, node, Limits.from_config(cfg)) for name, node in configured_codecs(cfg).items()}


def extreme_points(points: list[Codec]) -> list[Codec]:
    """The lowest and highest rate points of a list in rate order (the one point of a single-point list)."""
    return [points[0], points[-1]] if len(points) > 1 else list(points)
