import json
import shutil

import pandas as pd
import pytest

from conftest import run_cli

FILES = ["per_image.csv", "rd.csv", "jpeg.json", "jpeg2000.json", "balle2017.json", "rd_psnr.png", "rd_msssim.png",
         "summary.md", "command.txt"]


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
    assert set(doc) == {"name", "description", "results"}
    assert set(doc["results"]) == {"bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time"}
    assert doc["results"]["bpp"] == sorted(doc["results"]["bpp"]) and len(doc["results"]["bpp"]) == 3


def test_summary_records_the_command(bench):
    text = (bench / "summary.md").read_text()
    assert "licbench benchmark data=synthetic" in text and "| balle2017 |" in text
    assert "## Checkpoints of the learned codecs" in text and "trainer.max_steps=20" in text


def test_two_checkpoints_with_one_rate_label_are_refused(tmp_path, balle_checkpoint):
    copy = tmp_path / "copy.ckpt"
    shutil.copy(balle_checkpoint, copy)
    proc = run_cli("benchmark", "data=synthetic", "logger=none", "codecs=[balle2017]", f"out_dir={tmp_path / 'out'}",
                   f"+codec_overrides.balle2017.checkpoints=[{balle_checkpoint},{copy}]",
                   f"hydra.run.dir={tmp_path / 'hydra'}", check=False)
    assert proc.returncode == 1 and "several rate points labelled 0.013" in proc.stderr
