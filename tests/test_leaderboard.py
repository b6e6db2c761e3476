import json
import math

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from licbench.bench import leaderboard

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


def test_a_short_curve_inside_a_much_longer_anchor_gets_the_hand_computed_deltas():
    """PSNR = 30 + 10·log2(bpp) from 0.01 to 16 bpp, and a curve 1 dB above it from 0.5 to 1 bpp: it covers
    9 % of the joint log-rate range and 1 % of the joint quality range, all of its own. Both are lines in
    log-rate, which PCHIP reproduces: BD-PSNR = +1 dB, and at equal quality the rate is 2^(−1/10) times
    the anchor's, BD-rate = (2^(−0.1) − 1) · 100 %."""
    rates = 2.0 ** np.arange(np.log2(0.01), np.log2(16) + 0.01, 0.5)
    anchor = curve("jpeg", rates, 30 + 10 * np.log2(rates))
    inside = np.array([0.5, 0.7, 1.0])
    rate, gain, why = leaderboard.bd(anchor, curve("x", inside, 31 + 10 * np.log2(inside)), "psnr")
    assert why == "" and gain == pytest.approx(1.0, abs=1e-9)
    assert rate == pytest.approx((2 ** -0.1 - 1) * 100, abs=1e-9)


def test_the_overlap_is_the_share_of_the_tested_curves_own_range():
    assert leaderboard.coverage(np.array([0.5, 1.0]), np.array([0.01, 16.0])) == 1.0
    assert leaderboard.coverage(np.array([0.0, 4.0]), np.array([3.0, 10.0])) == 0.25
    assert leaderboard.coverage(np.array([0.0, 1.0]), np.array([2.0, 3.0])) == 0.0


def test_points_that_do_not_improve_quality_are_dropped():
    rates, values = leaderboard.envelope([0.3, 0.1, 0.2, 0.4], [27.0, 25.0, 24.0, 26.5])
    assert list(rates) == [0.1, 0.3] and list(values) == [25.0, 27.0]


def rows(codec, rates, psnr_by_image, sizes=None):
    """Per-image rows: image i of ``psnr_by_image`` (one list per image) at each rate; bytes from bpp."""
    sizes = sizes or [(100, 100)] * len(psnr_by_image)
    out = []
    for i, (psnrs, (height, width)) in enumerate(zip(psnr_by_image, sizes)):
        for rate, bpp, psnr in zip(range(len(rates)), rates, psnrs):
            out.append({"codec": codec, "rate": rate, "image": f"im{i}", "height": height, "width": width,
                        "bytes": bpp * height * width / 8, "bpp": bpp, "psnr": psnr, "ms_ssim": math.nan})
    return pd.DataFrame(out)


def test_pooled_psnr_is_the_psnr_of_the_mse_over_all_pixels():
    """Two images at 30 and 40 dB: the mean of their PSNR is 35 dB; their MSE, 255²·10⁻³ and 255²·10⁻⁴,
    pooled over equal pixel counts is 255²·5.5·10⁻⁴, a PSNR of −10·log10(5.5·10⁻⁴) ≈ 32.60 dB. With the
    second image three times as large its MSE weighs three times as much: −10·log10(1.75·10⁻⁴)."""
    table = leaderboard.pooled(rows("x", [0.5], [[30.0], [40.0]]))
    assert table.pooled_psnr.item() == pytest.approx(-10 * math.log10(5.5e-4))
    weighted = leaderboard.pooled(rows("x", [0.5], [[30.0], [40.0]], sizes=[(100, 100), (100, 300)]))
    assert weighted.pooled_psnr.item() == pytest.approx(-10 * math.log10((1e-3 + 3e-4) / 4))


BOOTSTRAP = {"n_resamples": 99, "confidence_level": 0.9, "method": "percentile", "seed": 0}


def test_the_interval_of_a_bd_rate_resamples_images_reproducibly():
    """Eight images on which the test codec saves a different share of bits: the interval brackets the
    BD-rate of the mean curves, has width, and is the same on a second run (a fixed seed)."""
    anchor_psnr = np.array([28.0, 31.0, 34.5, 38.0])
    savings = np.linspace(0.6, 0.9, 8)
    anchor = rows("jpeg", RATES, [anchor_psnr + i for i in range(8)])
    test = pd.concat([rows("x", RATES * s, [anchor_psnr + i]).assign(image=f"im{i}") for i, s in enumerate(savings)])
    rd_anchor = anchor.groupby("rate", as_index=False)[["bpp", "psnr"]].mean()
    rd_test = test.groupby("rate", as_index=False)[["bpp", "psnr"]].mean()
    rate = leaderboard.bd(rd_anchor, rd_test, "psnr")[0]
    low, high, why = leaderboard.interval(anchor, test, "psnr", BOOTSTRAP)
    assert low < rate < high and high - low > 1 and why == ""
    assert leaderboard.interval(anchor, test, "psnr", BOOTSTRAP)[:2] == (low, high)
    assert all(math.isnan(v) for v in leaderboard.interval(anchor, test, "psnr", {"n_resamples": 0})[:2])
    published = rd_anchor.assign(ms_ssim=math.nan)  # a fixed curve: only the test's images are resampled
    assert not math.isnan(leaderboard.interval(published, test, "psnr", BOOTSTRAP)[0])


def write_bench_dir(directory, rd):
    """``rd.csv`` and a one-image ``per_image.csv`` of 1 MP rows from the curves ``rd``, in ``directory``."""
    rd = rd.assign(images=1, enc_s=0.01, dec_s=0.02, bpp_estimate=math.nan)
    rd.to_csv(directory / "rd.csv", index=False)
    rd.assign(image="a", height=1000, width=1000, bytes=rd.bpp * 1e6 / 8).to_csv(directory / "per_image.csv",
                                                                                 index=False)
    return directory


@pytest.fixture
def bench_dir(tmp_path):
    """A benchmark directory with just its two tables: jpeg, jpeg2000 and two curves half and 1.5 × jpeg's rate."""
    rd = pd.concat([curve("jpeg", RATES, ANCHOR_PSNR), curve("jpeg2000", RATES, ANCHOR_PSNR + 2),
                    curve("better", 0.5 * RATES, ANCHOR_PSNR), curve("worse", 1.5 * RATES, ANCHOR_PSNR)])
    return write_bench_dir(tmp_path, rd)


def test_report_builds_a_sorted_leaderboard_from_a_benchmark_directory(bench_dir):
    run_cli("report", f"in_dir={bench_dir}")
    table = pd.read_csv(bench_dir / "leaderboard.csv")
    assert list(table.codec[:3]) == ["better", "jpeg2000", "worse"]
    assert table.set_index("codec").loc["better", "BD-rate vs jpeg (PSNR) %"] == pytest.approx(-50.0)
    assert table.set_index("codec").loc["worse", "enc ms/MP"] == pytest.approx(10.0)
    assert "<table>" in (bench_dir / "leaderboard.html").read_text() and (bench_dir / "leaderboard.md").is_file()
    proc = run_cli("report", f"in_dir={bench_dir / 'nowhere'}", check=False)
    assert proc.returncode == 1 and "not a benchmark output directory" in proc.stderr


def test_the_anchors_are_config_and_one_not_benchmarked_is_noted(bench_dir):
    run_cli("report", f"in_dir={bench_dir}", "anchors=[jpeg2000,webp]")
    table = pd.read_csv(bench_dir / "leaderboard.csv")
    assert [c for c in table.columns if c.startswith("BD-rate") and "CI" not in c] == [
        f"BD-rate vs {anchor} ({metric}) %" for anchor in ("jpeg2000", "webp")
        for metric in ("PSNR", "MS-SSIM", "pooled PSNR")]
    assert list(table.codec) == ["better", "jpeg", "worse", "jpeg2000"]  # by BD-rate against the first anchor
    assert table.filter(like="vs webp").isna().all().all()
    note = "Note: anchor webp is not among the benchmarked codecs (better, jpeg, jpeg2000, worse): its columns are"
    assert note in (bench_dir / "leaderboard.md").read_text()


@pytest.mark.parametrize("anchors", ["[]", "jpeg"])
def test_anchors_that_are_not_a_list_of_codecs_are_a_one_line_error(bench_dir, anchors):
    proc = run_cli("report", f"in_dir={bench_dir}", f"anchors={anchors}", check=False)
    message = f"anchors must list the codecs to compare against, e.g. anchors=[jpeg,jpeg2000]; got {anchors}"
    assert proc.returncode == 1 and proc.stderr.splitlines() == [f"licbench: error: {message}"]
    assert not (bench_dir / "leaderboard.md").exists()


def test_an_old_directory_gets_its_index_renamed_so_every_json_is_a_curve(bench_dir):
    facts = {"better": {"params": 1234, "kmac_per_pixel": {"encode": 1.5, "decode": 2.5}, "training": "t", "data": "d"}}
    (bench_dir / "codecs.json").write_text(json.dumps(facts))
    proc = run_cli("report", f"in_dir={bench_dir}", "dataset=kodak")
    assert "renamed" in proc.stdout and not (bench_dir / "codecs.json").exists()
    assert "dataset: kodak" in (bench_dir / "codecs.yaml").read_text()
    assert pd.read_csv(bench_dir / "leaderboard.csv").set_index("codec").loc["better", "params"] == 1234
    proc = run_cli("report", f"in_dir={bench_dir}", "dataset=clic", check=False)
    assert proc.returncode == 1 and "is a benchmark on kodak, not dataset=clic" in proc.stderr


def test_published_curves_are_rows_of_their_own_with_deltas_against_the_anchors(bench_dir, tmp_path):
    path = tmp_path / "kodak" / "paper-x.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"name": "x", "results": {"bpp": list(0.8 * RATES), "psnr-rgb": list(ANCHOR_PSNR)}}))
    run_cli("report", f"in_dir={bench_dir}", "dataset=kodak", f"references=[{path}]")
    assert "paper-x" not in set(pd.read_csv(bench_dir / "leaderboard.csv").codec)
    published = pd.read_csv(bench_dir / "published.csv").set_index("reference")
    assert published.loc["paper-x", "BD-rate vs jpeg (PSNR) %"] == pytest.approx(-20.0)
    assert math.isnan(published.loc["paper-x", "BD-rate vs jpeg (MS-SSIM) %"])  # it publishes no MS-SSIM
    board = (bench_dir / "leaderboard.md").read_text()
    assert "## Published curves (as published by their sources, not measured here)" in board
    assert "Leaderboard rebuilt by: licbench report in_dir=" in board
    run_cli("report", f"in_dir={bench_dir}")
    assert not (bench_dir / "published.csv").exists()


@pytest.mark.parametrize("results, reason", [
    ({"psnr-rgb": [30.0, 32.0]}, "no results.bpp"),
    ({"bpp": [0.1, "a lot"], "psnr-rgb": [28.0, 30.0]}, "results.bpp holds values that are not finite numbers"),
    ({"bpp": [0.1, 0.2, 0.3], "psnr-rgb": [28.0, 30.0]}, "3 bpp values but 2 psnr-rgb"),
])
def test_a_malformed_reference_on_the_command_line_is_one_line_naming_it(bench_dir, tmp_path, results, reason):
    path = tmp_path / "kodak" / "bad.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"name": "bad", "results": results}))
    proc = run_cli("report", f"in_dir={bench_dir}", "dataset=kodak", f"references=[{path}]", check=False)
    assert proc.returncode == 1 and len(proc.stderr.splitlines()) == 1
    assert proc.stderr.startswith(f"licbench: error: reference {path}: ") and reason in proc.stderr


def test_a_reference_on_another_dataset_or_of_an_unknown_one_is_refused(bench_dir, tmp_path):
    path = tmp_path / "clic2020" / "theirs.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"name": "t", "results": {"bpp": [0.2, 0.4], "psnr-rgb": [30.0, 33.0]}}))
    proc = run_cli("report", f"in_dir={bench_dir}", "dataset=kodak", f"references=[{path}]", check=False)
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        f"licbench: error: reference {path} is on 'clic2020', the benchmark on 'kodak': compare curves on one "
        "dataset (the file's \"dataset\" key, else its folder, names it)"]
    proc = run_cli("report", f"in_dir={bench_dir}", "references=[paper-balle2017]", check=False)
    assert proc.returncode == 1 and "this directory does not record (written before licbench recorded it): give " \
        "dataset=NAME" in proc.stderr


def ctc_curve(codec, rates, shift=0.0):
    """Every metric of metrics=ctc rising with the rate point (NLPD, a distance, falling); ``shift`` lowers VMAF."""
    from licbench.core import quality

    step = np.array([0.2, 0.4, 0.6, 0.8])
    values = {"psnr": 25 + 10 * step, "psnr_y": 26 + 10 * step, "psnr_u": 35 + 5 * step, "psnr_v": 35 + 6 * step,
              "ms_ssim": 0.9 + 0.09 * step, "ms_ssim_y": 0.91 + 0.08 * step, "iw_ssim": 0.9 + 0.09 * step,
              "vif": 0.3 + 0.5 * step, "fsim": 0.92 + 0.07 * step, "nlpd": 0.3 - 0.25 * step,
              "psnr_hvs": 25 + 12 * step, "psnr_hvs_m": 28 + 14 * step, "vmaf": 50 + 50 * step - shift}
    assert list(values) == quality.SETS["ctc"]
    return pd.DataFrame({"codec": codec, "rate": range(len(rates)), "bpp": rates, **values})


@pytest.fixture
def ctc_dir(tmp_path):
    """A metrics=ctc benchmark directory: jpeg, a curve at 0.8 × its rates in every metric, one also lower in VMAF."""
    rd = pd.concat([ctc_curve("jpeg", RATES), ctc_curve("better", 0.8 * RATES),
                    ctc_curve("mixed", 0.8 * RATES, shift=5.0)])
    return write_bench_dir(tmp_path, rd)


def test_every_configured_metric_gets_a_bd_rate_and_jpeg_ai_gets_its_average(ctc_dir):
    """0.8 × the rate at the same quality is −20 % in every metric, NLPD included (entering as 1 − NLPD: as it
    is, a falling curve, it would keep one point and no BD-rate); the average is the mean of the seven."""
    from licbench.core import quality

    rd, rows = pd.read_csv(ctc_dir / "rd.csv"), pd.read_csv(ctc_dir / "per_image.csv")
    table = leaderboard.leaderboard(rd, rows, {}, ["jpeg"]).set_index("codec")
    labels = [leaderboard.LABELS[name] for name in quality.SETS["ctc"]]
    for label in [*labels, "JPEG AI avg"]:
        assert table.loc["better", f"BD-rate vs jpeg ({label}) %"] == pytest.approx(-20.0, abs=1e-9), label
    seven = [table.loc["mixed", f"BD-rate vs jpeg ({leaderboard.LABELS[m]}) %"] for m in quality.JPEG_AI_AVERAGE]
    assert table.loc["mixed", "BD-rate vs jpeg (VMAF) %"] > -20
    assert table.loc["mixed", "BD-rate vs jpeg (JPEG AI avg) %"] == pytest.approx(np.mean(seven), abs=1e-12)
    assert "BD-VMAF vs jpeg dB" not in table and "BD-PSNR vs jpeg dB" in table  # quality deltas: default metrics


def test_the_leaderboard_page_has_a_per_metric_section_per_anchor(ctc_dir):
    run_cli("report", f"in_dir={ctc_dir}", "anchors=[jpeg,better]", "bootstrap.n_resamples=0")
    board = (ctc_dir / "leaderboard.md").read_text()
    main = board.split("## Measured, against the anchors")[1].split("\n## ")[0]
    assert "(PSNR) %" in main and "(VMAF)" not in main  # the main table keeps the default metrics
    for anchor in ("jpeg", "better"):
        section = board.split(f"## Measured, against {anchor} in every configured metric (BD-rate %)")[1]
        header = section.split("\n|---")[0].strip().splitlines()[-1]
        assert header.startswith("| codec | BD-rate (JPEG AI avg) % | BD-rate (PSNR-Y) % |") and "(VMAF) %" in header
    assert "| better | -20.00 |" in board
    csv = pd.read_csv(ctc_dir / "leaderboard.csv")
    assert "BD-rate vs better (NLPD) %" in csv and "BD-rate vs jpeg (JPEG AI avg) % CI low" in csv


def test_the_compressai_json_carries_every_metric(ctc_dir):
    from licbench.bench import report

    results = report.compressai_json(pd.read_csv(ctc_dir / "rd.csv"), "better", "d", "kodak")["results"]
    assert list(results) == ["bpp", "psnr-rgb", "psnr-y", "psnr-u", "psnr-v", "ms-ssim-rgb", "ms-ssim-y", "iw-ssim",
                             "vif", "fsim", "nlpd", "psnr-hvs", "psnr-hvs-m", "vmaf", "encoding_time", "decoding_time"]


def test_rate_labels_are_shown_as_labelled_not_rounded():
    from licbench.bench.report import _cell
    assert [_cell("rate", v) for v in (0.0018, 50, "B4K16", 0.025)] == ["0.0018", "50", "B4K16", "0.025"]
