"""Speed figures (not a test): ``python -m licbench.tools.speed --image kodim01.png [--checkpoint X]``.

1. Ballé 2017 encode+decode of one image through our codec (padding, container, rANS)
   against the same network and weights run through ``compressai.models.FactorizedPrior``'s
   ``compress``/``decompress``.
2. One Lightning training step (manual optimization, two optimizers, budget LR) against a
   bare PyTorch loop doing the same work on the same batch.

Prints a Markdown table with both ratios (ours / reference; 1.0 = no overhead).
"""
from __future__ import annotations

import argparse
import copy
import time

import pytorch_lightning as pl
import torch
from compressai.models import FactorizedPrior
from torch.utils.data import DataLoader

from licbench.core.checkpoint import load_checkpoint
from licbench.core.images import load_image
from licbench.lightning_modules.balle2017 import Balle2017
from licbench.tools.figures import publish


def best_of_alternating(first, second, repeats: int) -> tuple[float, float]:
    """Best time of each of two functions, run alternately so that machine noise hits both alike."""
    first(), second()  # warm-up
    times = ([], [])
    for _ in range(repeats):
        for fn, bucket in zip((first, second), times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return min(times[0]), min(times[1])


def coding_times(model: Balle2017, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    reference = FactorizedPrior(model.hparams.N, model.hparams.M).eval()
    reference.g_a, reference.g_s, reference.entropy_bottleneck = model.g_a, model.g_s, model.entropy_bottleneck
    padded = model._pad(x)

    def ours():
        model.decode(model.encode(x))

    def theirs():
        with torch.no_grad():
            out = reference.compress(padded)
            reference.decompress(out["strings"], out["shape"])

    return best_of_alternating(ours, theirs, repeats)


class StepTimes(pl.Callback):
    def __init__(self):
        self.starts = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.starts.append(time.perf_counter())


def lightning_step_time(model: Balle2017, batch: torch.Tensor, steps: int, warmup: int) -> float:
    timer = StepTimes()
    trainer = pl.Trainer(max_steps=steps + warmup + 1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[timer])
    trainer.fit(model, train_dataloaders=DataLoader([batch] * (steps + warmup + 1), batch_size=None))
    return (timer.starts[-1] - timer.starts[warmup]) / (len(timer.starts) - 1 - warmup)


def bare_step_time(model: Balle2017, batch: torch.Tensor, steps: int, warmup: int) -> float:
    main, aux = model.configure_optimizers()  # the same parameter split and settings as in Lightning

    def step():
        loss = model.rd_loss(batch, model(batch))["loss"]
        main.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main.param_groups[0]["params"], model.hparams.clip_grad_norm)
        main.step()
        aux_loss = model.aux_loss()
        aux.zero_grad()
        aux_loss.backward()
        aux.step()

    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def training_step_times(model: Balle2017, batch: torch.Tensor, steps: int, rounds: int = 3, warmup: int = 5):
    """Best per-step mean of each, over alternating rounds (machine noise hits both alike)."""
    lightning, bare = [], []
    for _ in range(rounds):
        lightning.append(lightning_step_time(copy.deepcopy(model), batch, steps, warmup))
        bare.append(bare_step_time(copy.deepcopy(model), batch, steps, warmup))
    return min(lightning), min(bare)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="an image file, e.g. Kodak's kodim01.png")
    parser.add_argument("--checkpoint", help="a Ballé 2017 checkpoint (default: untrained N=M=128)")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", default="8x96", help="training batch: COUNTxSIZE")
    parser.add_argument("--out",
                        help="also write the table, with this command and the git revision, to a Markdown file")
    args = parser.parse_args()
    torch.manual_seed(0)
    x, _ = load_image(args.image)
    model = load_checkpoint(args.checkpoint) if args.checkpoint else Balle2017(N=128, M=128, lr=1e-3).eval()
    if not args.checkpoint:
        model.update(force=True)
    ours, theirs = coding_times(model, x, args.repeats)
    count, size = (int(v) for v in args.batch.split("x"))
    batch = torch.rand(count, 3, size, size)
    train_model = Balle2017(**{k: v for k, v in model.hparams.items()})
    lightning, bare = training_step_times(train_model, batch, args.steps)
    table = "\n".join([
        f"| measurement ({torch.get_num_threads()} threads; coding: best of {args.repeats} alternating; "
        f"training: best of 3 alternating rounds of {args.steps} steps) "
        "| licbench | reference | ratio |", "|---|---|---|---|",
        f"| Ballé encode+decode, {x.shape[2]}x{x.shape[1]} (ours vs compressai FactorizedPrior) "
        f"| {ours * 1000:.1f} ms | {theirs * 1000:.1f} ms | {ours / theirs:.3f} |",
        f"| training step, batch {args.batch} (Lightning vs bare PyTorch) "
        f"| {lightning * 1000:.1f} ms | {bare * 1000:.1f} ms | {lightning / bare:.3f} |"])
    publish(table, args.out, "Speed", "licbench.tools.speed")


if __name__ == "__main__":
    main()
