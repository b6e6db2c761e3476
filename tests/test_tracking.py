from conftest import run_cli
from licbench.core.checkpoint import read_checkpoint


def test_benchmark_creates_an_offline_wandb_run(tmp_path):
    run_cli("benchmark", "data=synthetic", "codecs=[jpeg]", "+codec_overrides.jpeg.grid=[50]", "logger=wandb",
            f"paths.log_dir={tmp_path}", f"out_dir={tmp_path / 'out'}")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    assert (tmp_path / "out" / "rd.csv").is_file()


def test_training_logs_its_checkpoint_as_a_wandb_artifact(tmp_path):
    ckpt = tmp_path / "fmm.ckpt"
    run_cli("train", "model=fmm", "data=synthetic", "logger=wandb", "threads=1", f"paths.log_dir={tmp_path}",
            f"ckpt_path={ckpt}", f"hydra.run.dir={tmp_path / 'run'}")
    model_id = read_checkpoint(ckpt)["meta"]["model_id"]
    (log,) = (tmp_path / "wandb").glob("offline-run-*/*.wandb")
    assert model_id.encode() in log.read_bytes()  # the artifact record names the checkpoint's model id
