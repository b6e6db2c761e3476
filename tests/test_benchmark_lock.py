"""Two ``licbench benchmark`` runs on one ``out_dir``: the second refuses while the first holds the
out_dir's lock, and a killed holder leaves no stale lock."""
import signal
import subprocess
import sys

import pandas as pd
import pytest

from conftest import run_cli
from licbench.bench.benchmark import LOCK
from licbench.core.atomic import lock

HOLD = ("import sys, time; from licbench.core.atomic import lock; held = lock(sys.argv[1]); "
        "print('held', flush=True); time.sleep(600)")  # a benchmark's lock, held until the process is killed


def test_a_lock_is_exclusive_and_released_when_closed(tmp_path):
    with lock(tmp_path / LOCK):
        with pytest.raises(BlockingIOError):
            lock(tmp_path / LOCK)
    lock(tmp_path / LOCK).close()


def test_a_second_benchmark_on_the_same_out_dir_refuses_and_a_killed_one_leaves_no_lock(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    args = ["benchmark", "data=synthetic", "logger=none", "codecs=[jpeg]", "+codec_overrides.jpeg.grid=[50]",
            f"out_dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out / LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        refused = run_cli(*args, check=False)
        assert refused.returncode == 1 and refused.stderr.splitlines() == [
            f"licbench: error: another licbench benchmark is writing {out} (it holds {out / LOCK}): wait for it to "
            "finish, or give this one another out_dir="]
        assert [path.name for path in out.iterdir()] == [LOCK]  # no row, no table
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    run_cli(*args)
    assert len(pd.read_csv(out / "per_image.csv")) == 2  # 1 rate point x 2 images
