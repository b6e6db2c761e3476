import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import run_cli
from licbench.bench.references import SHIPPED
from licbench.bench.report import declared_budget

FILES = ["per_image.csv", "rd.csv", "jpeg.json", "jpeg2000.json", "balle2017.json", "rd_psnr.png", "rd_msssim.png",
         "summary.md", "command.txt", "codecs.yaml", "leaderboard.md", "leaderboard.csv", "aggregations.csv"]


@pytest.fixture(scope="module")
def bench(tmp_path_factory, balle_checkpoint):
    out = tmp_path_factory.mktemp("bench") / "out"
    run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[jpeg,jpeg2000,balle2017]", f"out_dir={out}",
            "+codec_overrides.jpeg.grid=[10,50,90]", "+codec_overrides.jpeg2000.grid=[0.5,1.0]",
            f"+codec_overrides.balle2017.checkpoints={balle_checkpoint}", f"hydra.run.dir={out.parent / 'hydra'}")
    return out


def test_benchmark_writes_every_output(bench):
    for name in FILES:
        assert (bench / name).is_file() and (bench / name).stat().st_size > 0, name


def test_rows_cover_every_codec_rate_and_image_with_real_bytes(bench):
    rows = pd.read_csv(bench / "per_image.csv")
    assert list(rows.columns) == ["codec", "rate", "image", "height", "width", "bytes", "bpp", "psnr", "ms_ssim",
                                  "enc_s", "dec_s", "bpp_estimate"]
    assert len(rows) == (3 + 2 + 1) * 2
    assert rows.groupby("codec").size().to_dict() == {"balle2017": 2, "jpeg": 6, "jpeg2000": 4}
    assert (rows.bpp == 8 * rows.bytes / (rows.height * rows.width)).all()
    assert rows.ms_ssim.isna().all()  # 64x96 is too small for 5-scale MS-SSIM: NaN, not a crash
    assert rows[rows.codec == "jpeg"].bpp_estimate.isna().all()
    assert (rows[rows.codec == "balle2017"].bpp_estimate > 0).all()


def test_rd_table_is_the_mean_over_images(bench):
    rows, rd = pd.read_csv(bench / "per_image.csv"), pd.read_csv(bench / "rd.csv")
    jpeg50 = rd[(rd.codec == "jpeg") & (rd.rate == 50)].iloc[0]
    assert jpeg50.bpp == pytest.approx(rows[(rows.codec == "jpeg") & (rows.rate == 50)].bpp.mean())
    assert jpeg50.images == 2


def test_compressai_json_schema(bench):
    doc = json.loads((bench / "jpeg.json").read_text())
    assert set(doc) == {"name", "description", "dataset", "results"} and doc["dataset"] == "synthetic"
    assert set(doc["results"]) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert doc["results"]["bpp"] == sorted(doc["results"]["bpp"]) and len(doc["results"]["bpp"]) == 3


def test_summary_records_the_command(bench):
    text = (bench / "summary.md").read_text()
    assert "licbench benchmark data=synthetic" in text and "| balle2017 |" in text
    assert "## Checkpoints of the learned codecs" in text and "trainer.max_steps=20" in text
    assert "| 20 steps on " in text  # the fixture trains for steps alone (conftest.STEPS_ONLY)


def test_the_declared_budget_is_cpu_time_where_one_was_set():
    assert declared_budget({"cpu_budget": "00:00:30:00", "max_time": "None", "max_steps": -1}) == "00:00:30:00 of CPU"
    assert declared_budget({"cpu_budget": None, "max_time": "None", "max_steps": 20}) == "20 steps"


def test_two_checkpoints_with_one_rate_label_are_refused(tmp_path, balle_checkpoint):
    copy = tmp_path / "copy.ckpt"
    shutil.copy(balle_checkpoint, copy)
    proc = run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[balle2017]", f"out_dir={tmp_path / 'out'}",
                   f"+codec_overrides.balle2017.checkpoints=[{balle_checkpoint},{copy}]",
                   f"hydra.run.dir={tmp_path / 'hydra'}", check=False)
    assert proc.returncode == 1 and "several rate points labelled 0.013" in proc.stderr



@pytest.fixture(scope="module")
def photo_bench(tmp_path_factory):
    """JPEG and WebP on a photo, against WebP first: curves that overlap, so the deltas are numbers."""
    out = tmp_path_factory.mktemp("photo") / "out"
    run_cli("benchmark", "data=samples", "data.names=[chelsea]", "logger=none", "codecs=[jpeg,webp]",
            "+codec_overrides.jpeg.grid=[20,50,80]", "+codec_overrides.webp.grid=[20,50,80]", "anchors=[webp,jpeg]",
            WEBP_CLAIM, f"out_dir={out}", f"hydra.run.dir={out.parent / 'hydra'}")
    return out


WEBP_CLAIM = "+codec_overrides.webp.claim={says:'fewer bits than JPEG',kind:bd_rate,vs:jpeg,metric:psnr,at_most:0}"


def test_a_claim_added_to_a_baseline_is_checked_and_never_reaches_its_codec(photo_bench):
    claim = pd.read_csv(photo_bench / "leaderboard.csv").set_index("codec").loc["webp", "claim"]
    assert claim.startswith("claim: fewer bits than JPEG (checked: BD-rate vs jpeg (PSNR) ≤ 0 %) — measured: -")
    assert claim.endswith("— holds")


def test_a_paper_with_no_curve_on_the_dataset_is_a_blank_with_its_reason(bench):
    board = pd.read_csv(bench / "leaderboard.csv").set_index("codec")
    assert board.loc["balle2017", "paper"] == "paper-balle2017"  # conf/codec/balle2017.yaml
    assert board.loc["balle2017", "paper notes"] == "no published paper-balle2017 curve on synthetic"
    assert pd.isna(board.loc["jpeg", "paper"])


def test_the_benchmark_compares_against_the_configured_anchors(photo_bench):
    board = pd.read_csv(photo_bench / "leaderboard.csv").set_index("codec")
    assert list(board.index) == ["jpeg", "webp"]  # sorted by BD-rate against webp, the first anchor
    assert [c for c in board.columns if "CI" not in c][2:7] == [
        "BD-rate vs webp (PSNR) %", "BD-PSNR vs webp dB", "BD-rate vs webp (MS-SSIM) %", "BD-MS-SSIM vs webp dB",
        "BD-rate vs webp (pooled PSNR) %"]
    assert board.loc["jpeg", "BD-rate vs webp (PSNR) %"] > 0 > board.loc["webp", "BD-rate vs jpeg (PSNR) %"]
    assert "| webp PSNR at same bpp (Δ) |" in (photo_bench / "summary.md").read_text()


@pytest.mark.parametrize("run, config", [("bench", ["anchors=[jpeg,jpeg2000]"]),
                                         ("photo_bench", ["anchors=[webp,jpeg]", WEBP_CLAIM])])
def test_report_rebuilds_from_the_files_the_leaderboard_the_benchmark_built_in_memory(run, config, request, tmp_path):
    out = request.getfixturevalue(run)
    copy = shutil.copytree(out, tmp_path / out.name)  # the title names the directory
    run_cli("report", f"in_dir={copy}", *config)
    for name in ("leaderboard.csv", "aggregations.csv", "rd_psnr.png"):
        assert (copy / name).read_bytes() == (out / name).read_bytes(), name
    for name in ("leaderboard.md", "leaderboard.html"):  # and the report's own command, beside the benchmark's
        rebuilt = (copy / name).read_text().splitlines()
        assert [line for line in rebuilt if "Leaderboard rebuilt by: licbench report in_dir=" not in line] == (
            out / name).read_text().splitlines(), name
        assert len(rebuilt) == len((out / name).read_text().splitlines()) + 1


def test_every_json_of_an_output_directory_is_a_curve_compressais_plot_reads(bench, tmp_path):
    """``python -m compressai.utils.plot -f OUT/*.json``, with the shipped published curves beside them."""
    env = {**os.environ, "MPLBACKEND": "Agg"}
    ours, published = sorted(map(str, bench.glob("*.json"))), sorted(map(str, (SHIPPED / "kodak").glob("*.json")))
    for metric, files in (("psnr", ours + published), ("ms-ssim", ours)):
        figure = tmp_path / f"{metric}.png"
        proc = subprocess.run([sys.executable, "-m", "compressai.utils.plot", "-f", *files, "-m", metric,
                               "-o", str(figure)], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0 and figure.stat().st_size > 0, proc.stderr[-2000:]


def test_a_reference_on_another_dataset_is_refused_before_anything_is_measured(tmp_path):
    balle = SHIPPED / "kodak" / "paper-balle2017.json"
    proc = run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[jpeg]", f"references=[{balle}]",
                   f"out_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'hydra'}", check=False)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        f"licbench: error: reference {balle} is on 'kodak', the benchmark on 'synthetic': compare curves on one "
        "dataset (the file's \"dataset\" key, else its folder, names it)"]
    assert not (tmp_path / "out").exists()

def test_anchors_that_are_not_a_list_are_refused_before_anything_is_measured(tmp_path):
    proc = run_cli("benchmark", "data=synthetic", "logger=none", "anchors=jpeg", f"out_dir={tmp_path / 'out'}",
                   f"hydra.run.dir={tmp_path / 'hydra'}", check=False)
    assert proc.returncode == 1 and "anchors must list the codecs to compare against" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_the_leaderboard_records_where_each_codec_ran(bench):
    board = pd.read_csv(bench / "leaderboard.csv").set_index("codec")
    assert board["device"].to_dict() == {"balle2017": "cpu", "jpeg": "cpu", "jpeg2000": "cpu"}


@pytest.mark.parametrize("device, problem", [
    ("banana", "not a torch device"), ("meta", "licbench codes on cpu or cuda"),
    pytest.param("cuda", "torch sees no CUDA GPU here", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="a CUDA GPU is present: device=cuda is accepted"))])
def test_a_device_that_cannot_code_is_refused_in_one_line_before_anything_is_measured(tmp_path, device, problem):
    proc = run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[jpeg]", f"device={device}",
                   f"out_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'hydra'}", check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"licbench: error: device={device}: {problem}") and "device=cpu" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (device=cuda)")
def test_on_a_gpu_the_learned_transforms_run_there_and_the_run_says_what_it_cannot_promise(tmp_path, balle_checkpoint):
    out = tmp_path / "out"
    proc = run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[jpeg,balle2017]", "device=cuda",
                   "+codec_overrides.jpeg.grid=[50]", f"+codec_overrides.balle2017.checkpoints={balle_checkpoint}",
                   f"out_dir={out}", f"hydra.run.dir={tmp_path / 'hydra'}")
    assert "this run does not promise it" in proc.stdout
    board = pd.read_csv(out / "leaderboard.csv").set_index("codec")
    assert board.loc["balle2017", "device"] == "cuda:0" and board.loc["jpeg", "device"] == "cpu"
    rows = pd.read_csv(out / "per_image.csv")
    assert (rows[rows.codec == "balle2017"].bytes > 0).all()


def test_a_rerun_with_fewer_codecs_leaves_no_curve_or_crop_of_the_codecs_it_dropped(tmp_path):
    out, foreign = tmp_path / "out", {"name": "mine", "results": {"bpp": [0.5], "psnr-rgb": [30.0]}}
    common = ["benchmark", "data=synthetic", "logger=none", "timing=off", f"out_dir={out}",
              "+codec_overrides.jpeg.grid=[50]", "+codec_overrides.webp.grid=[50]", f"hydra.run.dir={tmp_path / 'h'}"]
    run_cli(*common, "codecs=[jpeg,webp]")
    assert {"jpeg.json", "webp.json"} <= {p.name for p in out.glob("*.json")} and (out / "crops/webp_0.25.png").exists()
    (out / "mine.json").write_text(json.dumps(foreign))  # a user's own curve, not licbench's
    run_cli(*common, "codecs=[jpeg]")
    assert {p.name for p in out.glob("*.json")} == {"jpeg.json", "mine.json"}
    assert sorted(p.name for p in (out / "crops").glob("*.png")) == ["jpeg_0.25.png", "jpeg_0.5.png", "original.png"]
