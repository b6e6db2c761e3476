"""The ``licbench train`` job: Lightning fit, then a slim checkpoint with its metadata."""
from __future__ import annotations

import subprocess
import time

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from licbench import tracking
from licbench.checkpoint import read_checkpoint, save_checkpoint


def git_revision() -> str:
    """The code's revision: short commit hash, "-dirty" when tracked files outside results/ changed."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results")
    except OSError:
        return "unknown"
    return (commit + ("-dirty" if changed else "")) if commit else "unknown"


def train(cfg: DictConfig) -> str:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    model = instantiate(cfg.model)
    if cfg.get("init_from"):  # warm start, e.g. from a neighbouring rate point
        model.load_state_dict(read_checkpoint(cfg.init_from)["state_dict"])
    data = instantiate(cfg.data)
    logger = tracking.lightning_logger(cfg.logger, cfg)
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=logger)
    start = time.time()
    try:
        trainer.fit(model, datamodule=data)
    finally:
        tracking.finish_lightning(logger)
    meta = {
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "budget": {"max_time": str(cfg.trainer.get("max_time")), "max_steps": int(cfg.trainer.get("max_steps", -1)),
                   "steps": int(trainer.global_step), "train_seconds": round(time.time() - start, 1),
                   "threads": torch.get_num_threads()},
        "init_from": str(cfg.get("init_from") or ""),
        "command": " ".join(["licbench train", *HydraConfig.get().overrides.task]),
        "git": git_revision(),
        "torch": str(torch.__version__),
    }
    path = save_checkpoint(model, cfg.ckpt_path, OmegaConf.to_container(cfg.model, resolve=True), meta)
    print(f"checkpoint: {path}  ({model.model_id}, {trainer.global_step} steps)")
    return str(path)
