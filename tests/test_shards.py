"""The benchmark in shards over Hydra's launchers, and one merge: the same rows and figures as one
process, a killed shard completed by a rerun, a missing or conflicting shard named."""
import json
import os
import shutil
import textwrap

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from conftest import run_cli
from licbench.bench import shards
from licbench.core import resolvers
from licbench.core.codec import CodecError

resolvers.register()
BASE = ["logger=none", "timing=off", "+codec_overrides.jpeg.grid=[20,60]",
        "+codec_overrides.webp.grid=[20,60]"]
TIMES = ["enc_s", "dec_s"]


@pytest.fixture(scope="module")
def sweep_and_single(tmp_path_factory):
    """The embedded photos as 2 image shards x 2 codec shards on the local launcher, merged; and the
    same benchmark in one process."""
    root = tmp_path_factory.mktemp("shards")
    run_cli("benchmark", "-m", *BASE, "launcher=local", "codecs=[jpeg],[webp]", "data.shard=1/2,2/2",
            f"out_dir={root / 'sweep'}", cwd=root)
    run_cli("report", f"in_dir={root / 'sweep'}", cwd=root)
    run_cli("benchmark", *BASE, "codecs=[jpeg,webp]", f"out_dir={root / 'single'}", f"hydra.run.dir={root / 'hydra'}",
            cwd=root)
    return root / "sweep", root / "single"


def test_merged_shards_give_the_rows_and_figures_of_one_process(sweep_and_single):
    sweep, single = sweep_and_single
    assert len(shards.shard_dirs(sweep)) == 4
    for table in ("per_image.csv", "rd.csv"):
        merged, one = (pd.read_csv(d / table).drop(columns=TIMES) for d in (sweep, single))
        assert len(one) == (16 if table == "per_image.csv" else 4)
        pd.testing.assert_frame_equal(merged, one)
    boards = [pd.read_csv(d / "leaderboard.csv").set_index("codec") for d in (sweep, single)]
    bd = [c for c in boards[1].columns if c.startswith("BD-")]
    pd.testing.assert_frame_equal(boards[0][bd], boards[1][bd])
    assert (sweep / "jpeg.json").is_file() and "merged from 4 shards" in (sweep / "summary.md").read_text()


def test_the_merge_carries_the_crops_and_goes_where_out_dir_says(sweep_and_single, tmp_path):
    sweep, single = sweep_and_single
    elsewhere = tmp_path / "merged"
    run_cli("report", f"in_dir={sweep}", f"out_dir={elsewhere}", cwd=tmp_path)
    for table in ("per_image.csv", "rd.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(elsewhere / table), pd.read_csv(sweep / table))
    assert (elsewhere / "leaderboard.html").is_file() and not shards.shard_dirs(elsewhere)
    index = json.loads((single / "crops" / "crops.json").read_text())
    files = {entry["file"] for entries in index["targets"].values() for entry in entries}
    assert {"jpeg_0.25.png", "webp_0.5.png"} <= files
    for merged in (sweep, elsewhere):
        assert json.loads((merged / "crops" / "crops.json").read_text()) == index
        assert all((merged / "crops" / f).read_bytes() == (single / "crops" / f).read_bytes() for f in files)
    holding = [d for d in shards.shard_dirs(sweep) if (d / "crops").is_dir()]
    assert len(holding) == 2 and all("1_2" in d.name for d in holding)  # one image shard holds the first image


def test_a_crop_image_the_dataset_lacks_is_refused_before_measuring(tmp_path):
    proc = run_cli("benchmark", *BASE, "codecs=[jpeg]", "crop_image=kodim99", f"out_dir={tmp_path / 'out'}",
                   f"hydra.run.dir={tmp_path / 'hydra'}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "crop_image=kodim99 is not among the dataset's images" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out" / "per_image.csv").exists()
    proc = run_cli("report", f"in_dir={tmp_path}", f"out_dir={tmp_path / 'merged'}", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "holds no shards: drop out_dir=" in proc.stderr


def test_a_missing_shard_and_two_shards_that_disagree_are_named(sweep_and_single, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(sweep_and_single[0], sweep)
    first = shards.shard_dirs(sweep)[0]  # codecs=[jpeg], data.shard=1/2
    twin = sweep / "again"
    shutil.copytree(first, twin)
    rows = pd.read_csv(twin / "per_image.csv")
    rows.loc[0, "bytes"] += 1
    rows.to_csv(twin / "per_image.csv", index=False)
    proc = run_cli("report", f"in_dir={sweep}", check=False)
    assert proc.returncode == 1 and "measured the same rows differently" in proc.stderr and "again" in proc.stderr
    shutil.rmtree(twin)
    shutil.rmtree([d for d in shards.shard_dirs(sweep) if "codecs=[webp]" in d.name and "2_2" in d.name][0])
    proc = run_cli("report", f"in_dir={sweep}", check=False)
    assert proc.returncode == 1 and "missing shards" in proc.stderr and "codecs [webp] data.shard=2/2" in proc.stderr


FLAKY = textwrap.dedent("""
    from pathlib import Path

    from licbench.baselines.pillow import PillowCodec

    class Interrupted(PillowCodec):
        \"\"\"JPEG interrupted (as by a kill) in its second encode unless ``marker`` exists, which it creates.\"\"\"
        encodes = 0

        def __init__(self, marker=None, **kwargs):
            super().__init__(**kwargs)
            self.marker = marker

        def encode(self, x):
            Interrupted.encodes += 1
            if Interrupted.encodes == 2 and not Path(self.marker).exists():
                Path(self.marker).touch()
                raise KeyboardInterrupt
            return super().encode(x)
""")


def test_a_shard_killed_mid_run_is_completed_by_the_same_command(tmp_path, monkeypatch):
    (tmp_path / "flaky.py").write_text(FLAKY)
    (tmp_path / "conf" / "codec").mkdir(parents=True)
    (tmp_path / "conf" / "codec" / "flaky.yaml").write_text(
        f"_target_: flaky.Interrupted\nformat: jpeg\nrate: 50\ngrid: [30, 60]\nmarker: {tmp_path / 'killed'}\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    args = ["benchmark", "-m", *BASE, "codecs=[flaky]", "data.shard=1/2,2/2",
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"out_dir={tmp_path / 'sweep'}"]
    assert run_cli(*args, cwd=tmp_path, check=False).returncode != 0 and (tmp_path / "killed").exists()
    proc = run_cli("report", f"in_dir={tmp_path / 'sweep'}", check=False)
    assert proc.returncode == 1 and "unfinished shards" in proc.stderr
    run_cli(*args, cwd=tmp_path)
    run_cli("report", f"in_dir={tmp_path / 'sweep'}")
    rows = pd.read_csv(tmp_path / "sweep" / "per_image.csv")
    assert len(rows) == 8 and not rows.duplicated(["codec", "rate", "image"]).any()  # 4 photos x 2 qualities


def test_image_shards_are_a_stable_split_and_a_bad_one_is_one_line():
    images = [(name, None, "") for name in ["d", "b", "a", "c", "e"]]
    assert [n for n, _, _ in shards.select(images, "1/2")] == ["a", "c", "e"]
    assert [n for n, _, _ in shards.select(images, "2/2")] == ["b", "d"]
    assert shards.select(images, None) == images
    for bad in ("0/2", "3/2", "half", "1/0"):
        with pytest.raises(CodecError, match="give I/N"):
            shards.parse(bad)


def test_the_slurm_form_composes_for_the_benchmark(tmp_path):
    with initialize_config_module("licbench.conf", version_base=None):
        cfg = compose("benchmark", overrides=["launcher=slurm", "hydra.launcher.partition=cpu", "data.shard=1/4",
                                              f"out_dir={tmp_path}"], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["partition"] == "cpu"
    assert cfg.data.shard == "1/4" and cfg.hydra.sweep.dir == str(tmp_path)
    assert os.path.basename(launcher["submitit_folder"]).startswith("%j")


def test_a_job_with_many_overrides_gets_a_short_directory_that_a_rerun_finds_again():
    overrides = "codecs=[" + ",".join(["jpeg2000"] * 40) + "],data.root=sets/kodak,data.shard="
    first, second = (resolvers.path_safe(overrides + shard) for shard in ("1/2", "2/2"))
    assert len(first) <= resolvers.MAX_NAME and "/" not in first and first != second
    assert first == resolvers.path_safe(overrides + "1/2")
    assert resolvers.path_safe("data.shard=1/2") == "data.shard=1_2"
