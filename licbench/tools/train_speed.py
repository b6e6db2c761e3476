"""Training throughput per CPU-minute, float32 against another precision, and what it costs in RD
(figures, not a test): ``python -m licbench.tools.train_speed --data DIR/bsds500 --out FILE``.

Each method's CPU recipe (``experiment=<method>_cpu``) trains ``--steps`` steps on one thread once in
each precision (Lightning's ``trainer.precision``), alternating methods so that machine load falls on
both alike; throughput is steps per CPU-minute of the training process (the checkpoint's
``budget.cpu_seconds``), and the ratio is against float32 in the same run. The checkpoints are then
benchmarked on the first ``--val-images`` BSDS500 *val* images (real bytes): equal steps, equal data,
so a cheaper step is shown not to cost quality — or how much it does.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

from licbench.tools.figures import publish

METHODS = ["balle2017", "balle2018", "minnen2018", "theis2017", "cheng2018", "wcae", "nowcae", "toderici2017",
           "jiang2017"]
LICBENCH = str(Path(sys.executable).with_name("licbench"))


def licbench(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    proc = subprocess.run([LICBENCH, *args], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"licbench {' '.join(args)} failed:\n{proc.stderr[-2000:]}")


def train(method: str, precision: str, data: Path, steps: int, work: Path) -> dict:
    ckpt = work / f"{method}-{precision}.ckpt"
    licbench("train", f"experiment={method}_cpu", f"data.root={data}", f"trainer.max_steps={steps}",
             f"trainer.precision={precision}", "threads=1", "logger=none", f"ckpt_path={ckpt}",
             f"hydra.run.dir={work / 'runs' / ckpt.stem}")
    budget = torch.load(ckpt, weights_only=True)["meta"]["budget"]
    return {"ckpt": ckpt, "steps": budget["steps"], "cpu_seconds": budget["cpu_seconds"]}


def rd(method: str, ckpt: Path, data: Path, images: int, work: Path) -> pd.Series:
    """Mean bpp, PSNR and MS-SSIM over the method's rate points on the val images."""
    out = work / f"bench-{ckpt.stem}"
    licbench("benchmark", "data=folder", f"data.root={data / 'val'}", f"data.limit={images}", f"codecs=[{method}]",
             f"+codec_overrides.{method}.checkpoints={ckpt}", "anchors=[jpeg]", "logger=none", "threads=1",
             f"out_dir={out}", f"hydra.run.dir={out / '.hydra'}")
    return pd.read_csv(out / "rd.csv")[["bpp", "psnr", "ms_ssim"]].mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, type=Path, help="BSDS500 root with train/ and val/")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--precision", default="bf16-mixed", help="compared with 32-true")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--val-images", type=int, default=20)
    parser.add_argument("--out",
                        help="also write the table, with this command and the git revision, to a Markdown file")
    args = parser.parse_args()
    precisions = ["32-true", args.precision]
    lines = [f"| method | precision | steps | CPU s | steps per CPU-minute | ratio to 32-true | bpp | PSNR | MS-SSIM "
             f"| (val: {args.val_images} BSDS500 images, mean over rate points) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for method in args.methods.split(","):
            runs = {p: train(method, p, args.data, args.steps, work) for p in precisions}
            speed = {p: 60 * r["steps"] / r["cpu_seconds"] for p, r in runs.items()}
            for p, r in runs.items():
                m = rd(method, r["ckpt"], args.data, args.val_images, work)
                lines.append(f"| {method} | {p} | {r['steps']} | {r['cpu_seconds']:.0f} | {speed[p]:.1f} "
                             f"| {speed[p] / speed['32-true']:.2f} | {m.bpp:.3f} | {m.psnr:.2f} | {m.ms_ssim:.4f} | |")
    publish("\n".join(lines), args.out, f"Training throughput: 32-true against {args.precision}",
            "licbench.tools.train_speed", notes=["one thread per training; each ratio compares runs of this command"])


if __name__ == "__main__":
    main()
