"""The ``licbench train`` job: Lightning fit, then a slim checkpoint with its metadata.

In a multirun grid (``licbench train -m ...``) each job also writes ``result.json`` beside its
checkpoint — done, skipped or failed, with timings — so that a failed job is reported without
stopping the others, and a rerun of the same grid skips the jobs whose checkpoint exists.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import traceback
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from licbench.cli import explain
from licbench.core.atomic import write_atomic
from licbench.core.checkpoint import read_checkpoint, save_checkpoint
from licbench.core.provenance import git_revision, hydra_command
from licbench.train import tracking
from licbench.train.budget import CpuBudget


def in_grid() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def write_result(ckpt_path: str, result: dict) -> None:
    """``result.json`` beside the checkpoint, written atomically."""
    path = Path(ckpt_path).with_name("result.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(result, indent=2))


def dataset_record(data_cfg: DictConfig) -> dict:
    """The data config for the checkpoint, with no machine path: ``root`` becomes the folder's name and
    ``sha256`` a hash of every file under it (names and bytes), so a rerun can check it has the same data."""
    record = OmegaConf.to_container(data_cfg, resolve=True)
    if record.get("root"):
        root = Path(record["root"]).expanduser()
        digest = hashlib.sha256()
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
        record.update(root=root.resolve().name, sha256=digest.hexdigest())
    return record


def train_job(cfg: DictConfig) -> str | None:
    """One job: skipped when its checkpoint exists (``skip_existing``, default on in grids); in a
    grid, a failure is recorded in result.json and printed instead of stopping the other jobs."""
    skip = cfg.get("skip_existing")
    skip = in_grid() if skip is None else skip
    job = {"overrides": list(HydraConfig.get().overrides.task), "ckpt_path": str(cfg.ckpt_path), "pid": os.getpid(),
           "start": time.time()}
    if skip and Path(cfg.ckpt_path).is_file():
        print(f"skipped: {cfg.ckpt_path} exists")
        write_result(cfg.ckpt_path, {**job, "status": "skipped", "end": time.time()})
        return str(cfg.ckpt_path)
    try:
        path = train(cfg)
    except Exception as err:
        if not in_grid():
            raise
        write_result(cfg.ckpt_path, {**job, "status": "failed", "end": time.time(), "error": explain(err),
                                     "traceback": traceback.format_exc()})
        print(f"FAILED job {' '.join(job['overrides'])}: {explain(err)}")
        return None
    if in_grid():
        write_result(cfg.ckpt_path, {**job, "status": "done", "end": time.time()})
    return path


def train(cfg: DictConfig) -> str:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    pl.seed_everything(cfg.seed, workers=True)
    revision, command = git_revision(), hydra_command("train")  # the code that trains, not the tree at the end
    model = instantiate(cfg.model)
    if cfg.get("init_from"):  # warm start, e.g. from a neighbouring rate point
        model.load_state_dict(model.renamed_weights(read_checkpoint(cfg.init_from)["state_dict"]))
    data = instantiate(cfg.data)
    logger_cfg = cfg.logger
    if in_grid() and tracking.enabled(logger_cfg) and not logger_cfg.get("group"):  # a grid's runs are one W&B group
        logger_cfg = OmegaConf.merge(logger_cfg, {"group": cfg.grid})
    logger = tracking.lightning_logger(logger_cfg, cfg)
    budget = CpuBudget(cfg.get("cpu_budget"))  # without a budget it still measures the training's CPU time
    trainer: pl.Trainer = instantiate(cfg.trainer, logger=logger,
                                      callbacks=[*instantiate(cfg.trainer.get("callbacks") or []), budget])
    start = time.time()
    try:
        trainer.fit(model, datamodule=data)
        if not trainer.is_global_zero:  # DDP: the ranks hold the same weights; rank 0 writes them
            return str(cfg.ckpt_path)
        meta = {
            "data": dataset_record(cfg.data),
            "budget": {"max_time": str(cfg.trainer.get("max_time")), "max_steps": int(cfg.trainer.get("max_steps", -1)),
                       "cpu_budget": str(cfg.get("cpu_budget")), "steps": int(trainer.global_step),
                       "train_seconds": round(time.time() - start, 1),
                       "cpu_seconds": round(budget.time_elapsed(), 1), "threads": torch.get_num_threads(),
                       "processes": trainer.world_size},  # DDP: cpu_seconds are rank 0's
            "init_from": str(cfg.get("init_from") or ""),
            "command": command,
            "git": revision,
            "torch": str(torch.__version__),
        }
        path = save_checkpoint(model, cfg.ckpt_path, OmegaConf.to_container(cfg.model, resolve=True), meta)
        tracking.log_checkpoint(logger, path, model.model_id, meta)
    finally:
        tracking.finish_lightning(logger)
    print(f"checkpoint: {path}  ({model.model_id}, {trainer.global_step} steps)")
    return str(path)
