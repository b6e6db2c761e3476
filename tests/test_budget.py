"""A CPU-time budget: training stops on the process's CPU-seconds, which the checkpoint records."""
import time

import torch
from omegaconf import OmegaConf

from conftest import run_cli
from licbench.train.budget import CpuBudget


def test_the_budget_counts_cpu_time_not_sleep():
    budget = CpuBudget("00:00:00:10")
    budget.on_train_start(None, None)
    time.sleep(0.3)  # wall time passes, the process spends (almost) no CPU
    spent = budget.time_elapsed()
    busy = time.process_time() + 0.2
    while time.process_time() < busy:  # now 0.2 s of CPU
        pass
    assert spent < 0.1 <= budget.time_elapsed() - spent
    assert budget.time_remaining() < 10 - 0.1


def test_training_stops_at_its_cpu_budget_and_records_it(tmp_path):
    ckpt = tmp_path / "b.ckpt"
    run_cli("train", "model=balle2017", "data=synthetic", "logger=none", "model.N=8", "model.M=8", "threads=1",
            "cpu_budget=00:00:00:02", f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}")
    budget = torch.load(ckpt, weights_only=True)["meta"]["budget"]
    assert budget["cpu_budget"] == "00:00:00:02" and budget["steps"] > 0
    assert 2 <= budget["cpu_seconds"] < 30  # stopped by the budget (the step that crosses it ends the run)


def test_an_experiments_budget_and_a_launchers_thread_split_are_not_overridden_by_the_primary_config():
    from hydra import compose, initialize_config_module

    from licbench.core import resolvers

    resolvers.register()
    with initialize_config_module("licbench.conf", version_base=None):
        assert compose("train", overrides=["experiment=balle2017_cpu"]).cpu_budget == "00:00:30:00"
        shorter = compose("train", overrides=["experiment=balle2017_cpu", "cpu_budget=00:00:01:00"])
        assert shorter.cpu_budget == "00:00:01:00"
        for app in ("train", "benchmark"):
            cfg = compose(app, overrides=["launcher=local"], return_hydra_config=True)
            assert OmegaConf.to_container(cfg, resolve=False)["threads"].startswith("${cpu_share:")
