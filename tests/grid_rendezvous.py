"""A test-only Lightning callback: each job of a grid waits at the start of training until
``parties`` jobs have arrived (or ``timeout`` s pass), so concurrent jobs are seen to overlap
however fast or slow their start-up is, and jobs run one after another are not."""
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
