import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
LICBENCH = str(Path(sys.executable).parent / "licbench")


@pytest.fixture(scope="session")
def datasets() -> Path:
    root = Path(os.environ.get("LICBENCH_DATASETS", REPO.parent / "shared" / "datasets")).resolve()
    if not (root / "kodak").is_dir():
        pytest.skip(f"shared datasets not found at {root} (set LICBENCH_DATASETS)")
    return root


#: a test's training stops on its steps (or a CPU budget), never on trainer=cpu's wall-clock max_time, which
#: the learning-rate schedule reads too: a loaded machine would change what a fixture learns
STEPS_ONLY = "trainer.max_time=null"


def run_cli(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run the installed `licbench` console script; returns the completed process. A `train` gets
    :data:`STEPS_ONLY` unless the test sets ``trainer.max_time`` itself."""
    if args[:1] == ("train",) and not any(a.startswith("trainer.max_time=") for a in args):
        args = (*args, STEPS_ONLY)
    env = {**os.environ, "WANDB_SILENT": "true", "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run([LICBENCH, *args], cwd=cwd or REPO, capture_output=True, text=True, timeout=900, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"licbench {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def balle_checkpoint(tmp_path_factory) -> Path:
    """A tiny Ballé 2017 trained for a few real steps through `licbench train`."""
    out = tmp_path_factory.mktemp("balle")
    ckpt = out / "balle2017-tiny.ckpt"
    run_cli("train", "model=balle2017", "data=synthetic", "logger=none", "trainer.max_steps=20", "model.N=16",
            "model.M=16", "model.lr=1e-3", f"ckpt_path={ckpt}", f"hydra.run.dir={out / 'run'}")
    return ckpt


@pytest.fixture
def image() -> torch.Tensor:
    from licbench.datamodules.synthetic import synthetic_image

    return synthetic_image(45, 70, seed=3)
