"""Test-only Lightning callbacks for grids. ``Rendezvous``: each job waits at the start of training
until ``parties`` jobs have arrived (or ``timeout`` s pass), so concurrent jobs are seen to overlap
however fast or slow their start-up is, and jobs run one after another are not. ``Hang``: the job
with ``lmbda`` stops at the start of training while the file ``flag`` exists, so that a test can
kill the grid in the middle of it. ``WeightsDigest``: each DDP rank writes a hash of its weights."""
import os
import time
from pathlib import Path

import pytorch_lightning as pl


class Rendezvous(pl.Callback):
    def __init__(self, directory: str, parties: int = 2, timeout: float = 300.0):
        self.directory, self.parties, self.timeout = Path(directory), parties, timeout

    def on_train_start(self, trainer, pl_module):
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / str(os.getpid())).touch()
        deadline = time.time() + self.timeout
        while len(list(self.directory.iterdir())) < self.parties and time.time() < deadline:
            time.sleep(0.1)


class Hang(pl.Callback):
    def __init__(self, flag: str, lmbda: float, timeout: float = 600.0):
        self.flag, self.lmbda, self.timeout = Path(flag), lmbda, timeout

    def on_train_start(self, trainer, pl_module):
        if pl_module.hparams.lmbda != self.lmbda or not self.flag.exists():
            return
        self.flag.with_suffix(".started").touch()
        deadline = time.time() + self.timeout
        while self.flag.exists() and time.time() < deadline:
            time.sleep(0.1)


class WeightsDigest(pl.Callback):
    """At the end of training each rank writes a hash of its weights to ``directory/rank<R>``."""

    def __init__(self, directory: str):
        self.directory = Path(directory)

    def on_train_end(self, trainer, pl_module):
        import hashlib

        digest = hashlib.sha256()
        for name, tensor in sorted(pl_module.state_dict().items()):
            digest.update(name.encode() + tensor.detach().cpu().contiguous().numpy().tobytes())
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"rank{trainer.global_rank}").write_text(digest.hexdigest())
