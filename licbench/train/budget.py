"""A training budget in CPU time: the process's CPU-seconds, not wall time under whatever load the
machine had (a 20-minute wall-clock run on a shared machine does a fraction of a quiet one's steps).

:class:`CpuBudget` is Lightning's ``Timer`` on ``time.process_time()`` (every thread of this
process; ``num_workers: 0`` keeps data loading in it), so the learning-rate schedule of
``LearnedCodec.training_progress``, which reads any ``Timer``, anneals over the CPU budget too.
"""
from __future__ import annotations

import time

from pytorch_lightning.callbacks import Timer
from pytorch_lightning.trainer.states import RunningStage


class CpuBudget(Timer):
    """Stops training once the process has spent ``duration`` (DD:HH:MM:SS) of CPU time training
    (``None``: never; it then only measures)."""

    def on_train_start(self, trainer, pl_module) -> None:
        self._start_time[RunningStage.TRAINING] = time.process_time()

    def on_train_end(self, trainer, pl_module) -> None:
        self._end_time[RunningStage.TRAINING] = time.process_time()

    def time_elapsed(self, stage: str = RunningStage.TRAINING) -> float:
        if RunningStage(stage) != RunningStage.TRAINING:
            return super().time_elapsed(stage)
        start, end = self._start_time[RunningStage.TRAINING], self._end_time[RunningStage.TRAINING]
        if start is None:
            return self._offset
        return (time.process_time() if end is None else end) - start + self._offset
