"""Each learned row beside its paper: the gap to a published curve (BD over the overlap, the PSNR gap at
each point, blank with the reason), and the paper's claims checked on the run's tables."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import run_cli
from licbench.bench import papers
from licbench.bench.references import Reference
from licbench.core.codec import CodecError

LINE = np.array([0.25, 0.5, 1.0, 2.0])


def rd(codec, rates, psnr, ms_ssim=None, labels=None):
    ms_ssim = ms_ssim if ms_ssim is not None else [math.nan] * len(rates)
    return pd.DataFrame({"codec": codec, "rate": labels if labels is not None else range(len(rates)),
                         "images": 1, "bpp": rates, "psnr": psnr, "ms_ssim": ms_ssim})


def per_image(curve):
    return curve.assign(image="a", height=100, width=100, bytes=curve.bpp * 1e4 / 8)


def paper(rates, psnr):
    curve = pd.DataFrame({"bpp": rates, "psnr": psnr, "ms_ssim": math.nan})
    return Reference("paper-x", "kodak", "as published", curve)


def test_the_gap_to_the_paper_is_bd_over_the_overlap_and_the_psnr_gap_at_each_point():
    """The paper's curve is PSNR = 30 + 10·log2(bpp) over 0.1–4 bpp; ours is 1 dB below it at three points
    inside: BD-PSNR −1 dB, and at equal quality we spend 2^(1/10) times the paper's bits."""
    published = paper(2.0 ** np.arange(-3.5, 2.01, 0.5), 30 + 10 * np.arange(-3.5, 2.01, 0.5))
    ours = rd("x", LINE[:3], 29 + 10 * np.log2(LINE[:3]))
    row = papers.gap_columns("paper-x", published, "", ours, per_image(ours), None)
    assert row["paper"] == "paper-x" and row["paper notes"] == ""
    assert row["BD-PSNR vs its paper dB"] == pytest.approx(-1.0, abs=1e-9)
    assert row["BD-rate vs its paper (PSNR) %"] == pytest.approx((2 ** 0.1 - 1) * 100, abs=1e-9)
    assert row[papers.GAP] == "-1.00 to -1.00 (3 points)"


def test_one_point_gets_its_gap_and_the_reason_its_bd_is_blank():
    published = paper(LINE, 30 + 10 * np.log2(LINE))
    ours = rd("x", [0.5], [14.5])  # the paper: 20 dB at 0.5 bpp
    row = papers.gap_columns("paper-x", published, "", ours, per_image(ours), None)
    assert math.isnan(row["BD-PSNR vs its paper dB"]) and row["paper notes"] == "needs ≥ 2 rate points"
    assert row[papers.GAP] == "-5.50 (1 point)"
    outside = papers.gap_columns("paper-x", published, "", rd("x", [8.0], [50.0]), per_image(rd("x", [8.0], [50.0])),
                                 None)
    assert outside[papers.GAP] is None and "no point inside the paper's bpp range" in outside["paper notes"]
    missing = papers.gap_columns("paper-y", None, "no published paper-y curve on samples", ours, per_image(ours), None)
    assert missing["paper"] == "paper-y" and missing["paper notes"] == "no published paper-y curve on samples"


CLAIMS = {
    "bd": {"says": "a fifth fewer bits than jpeg", "kind": "bd_rate", "vs": "jpeg", "metric": "psnr", "at_most": -19},
    "above_at": {"says": "above jpeg in MS-SSIM at 0.5 bpp", "kind": "above", "vs": "jpeg", "metric": "ms_ssim",
                 "bpp": 0.5},
    "above_most": {"says": "above jpeg in MS-SSIM at most rates", "kind": "above", "vs": "jpeg", "metric": "ms_ssim"},
    "same_rate": {"says": "+1 dB over jpeg at its quality", "kind": "gain_at_same_rate", "vs": "jpeg",
                  "metric": "psnr", "at_least": 1},
    "value": {"says": "31 dB at 1 bpp", "kind": "quality_at", "metric": "psnr", "bpp": 1.0, "at_least": 31},
}


@pytest.fixture
def run():
    """jpeg and x, x needing 0.8 × jpeg's bits for jpeg's quality (−20 % BD-rate, ≈ +1 dB), at jpeg's labels."""
    jpeg = rd("jpeg", LINE, [28.0, 31.0, 34.5, 38.0], [0.90, 0.94, 0.97, 0.99], labels=[10, 30, 50, 90])
    x = rd("x", 0.8 * LINE, [28.0, 31.0, 34.5, 38.0], [0.91, 0.95, 0.96, 0.99], labels=[10, 30, 50, 90])
    both = pd.concat([jpeg, x], ignore_index=True)
    return both, per_image(both)


# Linear in log-bpp: x at 0.5 bpp is 0.95 + 0.01·log(0.5/0.4)/log 2 = 0.9532 and at 1 bpp 34.5 + 3.5·0.3219 =
# 35.63 dB; against jpeg's 0.9271, 0.9603, 0.9836 at x's 0.4, 0.8, 1.6 bpp x is above at 2 of 3 points.
@pytest.mark.parametrize("name, verdict", [
    ("bd", "measured: -20.0 % — holds"),
    ("above_at", "measured: 0.9532 vs jpeg's 0.9400 at 0.5 bpp — holds"),
    ("above_most", "measured: above jpeg at 2 of its 3 points within jpeg's 0.250–2.000 bpp — holds"),
    ("value", "measured: 35.63 dB at 1.0 bpp — holds"),
])
def test_each_kind_of_claim_is_measured_on_the_run(run, name, verdict):
    table, rows = run
    _, claim = papers.paper_and_claim("x", OmegaConf.create({"claim": CLAIMS[name]}))
    line = papers.check("x", claim, table, rows, None)
    assert line.startswith(f"claim: {CLAIMS[name]['says']} (checked: ") and line.endswith(verdict)


def test_a_claim_that_does_not_hold_or_cannot_be_checked_says_so(run):
    table, rows = run
    gain = papers.check("x", CLAIMS["same_rate"], table, rows, None)
    assert gain.endswith("measured: +0.00 to +0.00 dB at rate labels 10, 30, 50, 90 — does not hold")
    strict = {**CLAIMS["bd"], "at_most": -25}
    assert papers.check("x", strict, table, rows, None).endswith("— does not hold")
    far = {**CLAIMS["value"], "bpp": 8.0}
    assert papers.check("x", far, table, rows, None).endswith(
        "— cannot be checked (x's curve spans 0.200–1.600 bpp, not 8.0 bpp)")
    other = {**CLAIMS["bd"], "vs": "jpeg2000"}
    assert papers.check("x", other, table, rows, None).endswith("— cannot be checked (jpeg2000 is not in this run)")


@pytest.mark.parametrize("claim, message", [
    ({"says": "better", "kind": "better"}, "codec x: claim needs a kind, one of bd_rate, above, gain_at_same_rate"),
    ({"says": "s", "kind": "bd_rate", "metric": "psnr", "vs": "jpeg"}, "missing at_most"),
    ({"says": "s", "kind": "quality_at", "metric": "vmaf", "bpp": 1, "at_least": 3}, "metric (psnr or ms_ssim)"),
])
def test_a_malformed_claim_is_one_line_naming_the_codec(claim, message):
    with pytest.raises(CodecError) as err:
        papers.paper_and_claim("x", OmegaConf.create({"claim": claim}))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_report_puts_a_codec_beside_the_paper_and_claim_its_config_names(tmp_path):
    """A user's codec config (hydra.searchpath) names its paper's curve, a file of theirs, and a claim."""
    (tmp_path / "kodak").mkdir()
    (tmp_path / "kodak" / "paper-mine.json").write_text(json.dumps(
        {"name": "mine", "results": {"bpp": list(LINE), "psnr-rgb": [30.0, 33.0, 36.5, 40.0]}}))
    (tmp_path / "conf" / "codec").mkdir(parents=True)
    (tmp_path / "conf" / "codec" / "mine.yaml").write_text(
        f"paper: {tmp_path / 'kodak' / 'paper-mine.json'}\n"
        "claim: {says: 'a fifth fewer bits than JPEG', kind: bd_rate, vs: jpeg, metric: psnr, at_most: -19}\n")
    jpeg = rd("jpeg", LINE, [28.0, 31.0, 34.5, 38.0], [0.9, 0.94, 0.97, 0.99])
    mine = rd("mine", 0.8 * LINE, [28.0, 31.0, 34.5, 38.0], [0.9, 0.94, 0.97, 0.99])
    table = pd.concat([jpeg, mine]).assign(enc_s=0.01, dec_s=0.02, bpp_estimate=math.nan)
    out = tmp_path / "out"
    out.mkdir()
    table.to_csv(out / "rd.csv", index=False)
    per_image(table).to_csv(out / "per_image.csv", index=False)
    run_cli("report", f"in_dir={out}", "dataset=kodak", f"hydra.searchpath=[file://{tmp_path / 'conf'}]")
    board = pd.read_csv(out / "leaderboard.csv").set_index("codec")
    assert board.loc["mine", "paper"].endswith("paper-mine.json")
    assert board.loc["mine", "BD-PSNR vs its paper dB"] < 0 and board.loc["mine", papers.GAP].endswith("(3 points)")
    assert board.loc["mine", "claim"].endswith("measured: -20.0 % — holds") and pd.isna(board.loc["jpeg", "claim"])
    text = (out / "leaderboard.md").read_text()
    assert "## Measured, beside its paper" in text and "- mine: claim: a fifth fewer bits than JPEG" in text
    assert "paper-mine" in set(pd.read_csv(out / "published.csv").reference)
