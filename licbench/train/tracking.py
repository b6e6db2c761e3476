"""Weights & Biases: the only module that imports wandb.

Offline by default (``logger.mode=offline``: runs are written under ``logger.dir`` and
uploaded later with ``wandb sync``), online when configured, skipped with ``logger=none``.
Trained checkpoints are logged as ``model`` artifacts.
Every run is finished, with a failing exit code when the job raised.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def enabled(logger_cfg: DictConfig) -> bool:
    return logger_cfg.get("name") == "wandb" and logger_cfg.get("mode") != "disabled"


def _settings(logger_cfg: DictConfig) -> dict:
    Path(logger_cfg.dir).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("WANDB_SILENT", "true")
    return {"project": logger_cfg.project, "mode": logger_cfg.mode, "dir": str(logger_cfg.dir),
            "group": logger_cfg.get("group"), "tags": list(logger_cfg.get("tags") or [])}


def lightning_logger(logger_cfg: DictConfig, config: DictConfig, job_type: str = "train"):
    """A Lightning WandbLogger for training, or False for ``logger=none``."""
    if not enabled(logger_cfg):
        return False
    from pytorch_lightning.loggers import WandbLogger

    settings = _settings(logger_cfg)
    # Lightning ignores ``dir`` beside its default save_dir
    return WandbLogger(job_type=job_type, config=OmegaConf.to_container(config, resolve=True),
                       save_dir=settings.pop("dir"), **settings)


@contextmanager
def run(logger_cfg: DictConfig, config: DictConfig, job_type: str) -> Iterator[object | None]:
    """One W&B run around a job; yields None for ``logger=none``. Always finished."""
    if not enabled(logger_cfg):
        yield None
        return
    import wandb

    wb = wandb.init(job_type=job_type, config=OmegaConf.to_container(config, resolve=True), **_settings(logger_cfg))
    try:
        yield wb
    except BaseException:
        wb.finish(exit_code=1)
        raise
    wb.finish()
    if logger_cfg.mode == "offline":
        print(f"W&B offline run in {wb.dir}; upload with: wandb sync {Path(wb.dir).parent}")


def log_tables(wb, tables: dict, images: dict[str, Path]) -> None:
    """Log pandas DataFrames as W&B tables and image files as W&B images."""
    if wb is None:
        return
    import wandb

    wb.log({**{name: wandb.Table(dataframe=df) for name, df in tables.items()},
            **{name: wandb.Image(str(path)) for name, path in images.items()}})


def log_checkpoint(logger, path: Path, model_id: str, meta: dict) -> None:
    """A trained checkpoint as a W&B ``model`` artifact named by its model id (uploaded with the
    run when online, by ``wandb sync`` when offline); no-op for ``logger=none``."""
    if logger:
        import wandb

        artifact = wandb.Artifact(model_id, type="model", metadata=meta)
        artifact.add_file(str(path))
        logger.experiment.log_artifact(artifact)


def finish_lightning(logger) -> None:
    """Finish the W&B run a Lightning WandbLogger opened (no-op for ``False``)."""
    if logger:
        import wandb

        if wandb.run is not None:
            wandb.run.finish()
