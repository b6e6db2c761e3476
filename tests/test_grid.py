"""Multirun grids: parallel jobs, a grid killed mid-way and rerun, failures that do not stop it,
the Slurm and DDP configs, and a new method added by config alone."""
import os
import signal
import subprocess
import textwrap
import time

import pandas as pd
import submitit
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conftest import LICBENCH, STEPS_ONLY, run_cli
from licbench.bench import report
from licbench.core import resolvers
from licbench.lightning_modules.balle2017 import Balle2017
from licbench.train.grid import grid_results

resolvers.register()  # the configs composed here, outside the CLI, use them

TINY = ["model=balle2017", "data=synthetic", "logger=none", "trainer.max_steps=5", STEPS_ONLY, "model.N=8", "model.M=8"]


def grid(tmp_path, *args, check=True):
    return run_cli("train", "-m", *TINY, *args, f"paths.log_dir={tmp_path}", "grid=g", cwd=tmp_path, check=check)


def results(tmp_path) -> pd.DataFrame:
    return pd.read_csv(tmp_path / "grids" / "g" / "grid.csv").sort_values("overrides").reset_index(drop=True)


def test_local_grid_runs_jobs_in_parallel_and_both_land_in_one_leaderboard(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(__file__))  # the jobs import grid_rendezvous
    rendezvous = (f"+trainer.callbacks=[{{_target_:grid_rendezvous.Rendezvous,"
                  f"directory:{tmp_path / 'arrived'},timeout:120}}]")
    grid(tmp_path, "launcher=local", "model.lmbda=0.01,0.02", rendezvous)
    first = results(tmp_path)
    assert list(first.status) == ["done", "done"] and first.pid.nunique() == 2
    assert first.start.max() < first.end.min(), "the two jobs did not run at the same time"
    for ckpt in first.ckpt_path:
        assert torch.load(ckpt, weights_only=True)["meta"]["budget"]["threads"] == max(1, os.cpu_count() // 2)

    out = tmp_path / "bench"
    run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[jpeg,balle2017]", f"out_dir={out}",
            "+codec_overrides.jpeg.grid=[10,50,90]",
            f"+codec_overrides.balle2017.checkpoints={tmp_path}/grids/g/**/*.ckpt", f"hydra.run.dir={tmp_path / 'h'}")
    rows = pd.read_csv(out / "per_image.csv")
    assert sorted(rows[rows.codec == "balle2017"].rate.unique()) == [0.01, 0.02]
    assert not rows.duplicated(["codec", "rate", "image"]).any() and len(rows) == (3 + 2) * 2
    board = (out / "leaderboard.md").read_text()
    assert "| balle2017 | 2 |" in board and "| jpeg | 3 |" in board


def test_a_grid_killed_mid_way_reruns_only_its_missing_job(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(__file__))  # the jobs import grid_rendezvous
    flag = tmp_path / "hang.flag"
    flag.touch()
    args = ["model.lmbda=0.01,0.02", f"+trainer.callbacks=[{{_target_:grid_rendezvous.Hang,flag:{flag},lmbda:0.02}}]"]
    command = [LICBENCH, "train", "-m", *TINY, *args, f"paths.log_dir={tmp_path}", "grid=g"]
    killed = subprocess.Popen(command, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not flag.with_suffix(".started").exists() and killed.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert flag.with_suffix(".started").exists(), "the second job never started"
    os.killpg(killed.pid, signal.SIGKILL)  # the grid dies in the middle of its second job
    killed.wait()
    first = grid_results(tmp_path / "grids" / "g")  # the killed grid wrote no grid.csv: its jobs' result.json
    assert list(first.status) == ["done"] and first.ckpt_path[0].endswith(".ckpt")
    finished = os.stat(first.ckpt_path[0]).st_mtime_ns

    flag.unlink()
    grid(tmp_path, *args)
    again = results(tmp_path)
    assert list(again.status) == ["skipped", "done"] and again.overrides.is_unique
    assert os.stat(again.ckpt_path[0]).st_mtime_ns == finished  # the finished job was not run again
    assert all(torch.load(path, weights_only=True)["state_dict"] for path in again.ckpt_path)


def test_a_failed_job_is_reported_and_the_others_finish(tmp_path):
    proc = grid(tmp_path, "model.lmbda=-1,0.01", check=False)
    assert proc.returncode == 1
    table = results(tmp_path)
    assert list(table.status) == ["failed", "done"]
    assert "model.lmbda must be > 0" in table.error[0] and "model.lmbda must be > 0" in proc.stderr


def test_slurm_launcher_composes_and_builds_its_submission(tmp_path, monkeypatch):
    with initialize_config_module("licbench.conf", version_base=None):
        cfg = compose("train", overrides=["launcher=slurm", "trainer=ddp", "hydra.launcher.partition=gpu",
                                          "hydra.launcher.gpus_per_node=4", "hydra.launcher.timeout_min=600"],
                      return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["timeout_min"]) == ("gpu", 4, 600)
    assert cfg.trainer.strategy.startswith("ddp") and cfg.trainer.accelerator == "gpu"
    (tmp_path / "srun").write_text("#!/bin/sh\n")  # no cluster here: a stand-in so submitit builds scripts
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    executor.update_parameters(slurm_partition="gpu", gpus_per_node=4, tasks_per_node=4, timeout_min=600,
                               slurm_array_parallelism=launcher["array_parallelism"])
    script = executor._executor._make_submission_file_text("licbench train", "uid")
    assert "#SBATCH --partition=gpu" in script and "#SBATCH --gpus-per-node=4" in script


def test_ddp_trains_two_cpu_processes_to_one_set_of_weights_and_one_checkpoint(tmp_path, monkeypatch):
    """``trainer=ddp`` on CPU (gloo), 2 processes from the CLI's subcommand form: Lightning's launcher
    re-runs ``licbench train`` for rank 1; each rank trains on its half of the data, yet both end with
    the same weights (the aux optimizer's quantiles too), and rank 0 alone writes the checkpoint."""
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(__file__))  # the ranks import grid_rendezvous
    out, digests = tmp_path / "zoo", tmp_path / "digests"
    run_cli("train", "model=balle2017", "data=synthetic", "logger=none", "trainer=ddp", "trainer.accelerator=cpu",
            "trainer.devices=2", "trainer.max_steps=3", "model.N=8", "model.M=8", f"ckpt_path={out}/b.ckpt",
            f"+trainer.callbacks=[{{_target_:grid_rendezvous.WeightsDigest,directory:{digests}}}]",
            f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    ranks = sorted(digests.iterdir())
    assert [r.name for r in ranks] == ["rank0", "rank1"] and ranks[0].read_text() == ranks[1].read_text()
    assert [p.name for p in out.iterdir()] == ["b.ckpt"]
    budget = torch.load(out / "b.ckpt", weights_only=True)["meta"]["budget"]
    assert (budget["steps"], budget["processes"]) == (3, 2)


def test_a_new_method_is_one_config(tmp_path, monkeypatch):
    """A user's class in their own module and a YAML naming it: trained, benchmarked, on the leaderboard."""
    (tmp_path / "my_codec.py").write_text(textwrap.dedent("""
        from licbench.lightning_modules.balle2017 import Balle2017

        class Slim(Balle2017):
            name = "slim"
    """))
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "slim.yaml").write_text("_target_: my_codec.Slim\nN: 8\nM: 8\nlmbda: 0.02\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    config = [f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"paths.zoo_dir={tmp_path / 'zoo'}"]
    run_cli("train", "model=slim", "data=synthetic", "logger=none", "trainer.max_steps=5", *config,
            f"ckpt_path={tmp_path}/zoo/slim/slim.ckpt", f"hydra.run.dir={tmp_path / 'run'}")
    out = tmp_path / "bench"
    run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[jpeg,slim]", *config, f"out_dir={out}",
            f"hydra.run.dir={tmp_path / 'h'}")
    facts = report.read(out).facts
    assert facts["slim"]["params"] == sum(p.numel() for p in Balle2017(N=8, M=8).parameters())
    assert "| slim |" in (out / "leaderboard.md").read_text()
