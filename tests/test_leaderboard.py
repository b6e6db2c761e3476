import math

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from licbench import leaderboard

RATES = np.array([0.25, 0.5, 1.0, 2.0])
ANCHOR_PSNR = np.array([28.0, 31.0, 34.5, 38.0])


def curve(codec, rates, psnr, ms_ssim=None):
    ms_ssim = ms_ssim if ms_ssim is not None else 1 - 10 ** (-np.asarray(psnr) / 20)
    return pd.DataFrame({"codec": codec, "rate": range(len(rates)), "bpp": rates, "psnr": psnr, "ms_ssim": ms_ssim})


def test_bd_rate_of_a_curve_needing_a_fifth_fewer_bits_is_minus_20_percent():
    anchor, test = curve("jpeg", RATES, ANCHOR_PSNR), curve("x", 0.8 * RATES, ANCHOR_PSNR)
    rate, gain, why = leaderboard.bd(anchor, test, "psnr")
    assert rate == pytest.approx(-20.0, abs=1e-9) and gain > 0 and why == ""


def test_bd_psnr_of_a_curve_one_db_higher_is_one_db():
    anchor, test = curve("jpeg", RATES, ANCHOR_PSNR), curve("x", RATES, ANCHOR_PSNR + 1.0)
    rate, gain, _ = leaderboard.bd(anchor, test, "psnr")
    assert gain == pytest.approx(1.0, abs=1e-9) and rate < 0
    assert leaderboard.bd(test, anchor, "psnr")[1] == pytest.approx(-1.0, abs=1e-9)


def test_uncomputable_deltas_say_why():
    anchor = curve("jpeg", RATES, ANCHOR_PSNR)
    assert leaderboard.bd(anchor, curve("x", [0.5], [30.0]), "psnr")[2] == "needs ≥ 2 rate points"
    far = curve("x", [8.0, 16.0], [50.0, 55.0])
    assert math.isnan(leaderboard.bd(anchor, far, "psnr")[0])
    assert leaderboard.bd(anchor, far, "psnr")[2] == "curves overlap too little"


def test_points_that_do_not_improve_quality_are_dropped():
    rates, values = leaderboard.envelope(curve("x", [0.1, 0.2, 0.3, 0.4], [25.0, 24.0, 27.0, 26.5]), "psnr")
    assert list(rates) == [0.1, 0.3] and list(values) == [25.0, 27.0]


def test_report_builds_a_sorted_leaderboard_from_a_benchmark_directory(tmp_path):
    rd = pd.concat([curve("jpeg", RATES, ANCHOR_PSNR), curve("jpeg2000", RATES, ANCHOR_PSNR + 2),
                    curve("better", 0.5 * RATES, ANCHOR_PSNR), curve("worse", 1.5 * RATES, ANCHOR_PSNR)])
    rd = rd.assign(images=1, enc_s=0.01, dec_s=0.02, bpp_estimate=math.nan)
    rd.to_csv(tmp_path / "rd.csv", index=False)
    rd.assign(image="a", height=1000, width=1000, bytes=0).to_csv(tmp_path / "per_image.csv", index=False)
    run_cli("report", f"in_dir={tmp_path}")
    table = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(table.codec[:3]) == ["better", "jpeg2000", "worse"]
    assert table.set_index("codec").loc["better", "BD-rate vs jpeg (PSNR) %"] == pytest.approx(-50.0)
    assert table.set_index("codec").loc["worse", "enc ms/MP"] == pytest.approx(10.0)
    assert "<table>" in (tmp_path / "leaderboard.html").read_text() and (tmp_path / "leaderboard.md").is_file()
    proc = run_cli("report", f"in_dir={tmp_path / 'nowhere'}", check=False)
    assert proc.returncode == 1 and "not a benchmark output directory" in proc.stderr
