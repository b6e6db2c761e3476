from conftest import run_cli


def test_benchmark_creates_an_offline_wandb_run(tmp_path):
    run_cli("benchmark", "data=synthetic", "codecs=[jpeg]", "+codec_overrides.jpeg.grid=[50]", "logger=wandb",
            f"paths.log_dir={tmp_path}", f"out_dir={tmp_path / 'out'}")
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    assert (tmp_path / "out" / "rd.csv").is_file()
