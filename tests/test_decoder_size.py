"""The leaderboard's decoder size: the bytes of the weights a receiver must hold, as each learned codec
reports them (``decoder_bytes``), recorded by the benchmark and shown in MB; blank for baselines."""
import math

import pandas as pd
import pytest

from licbench.baselines.pillow import PillowCodec
from licbench.bench import benchmark, leaderboard, report
from licbench.lightning_modules.balle2017 import Balle2017
from licbench.lightning_modules.toderici2017 import Toderici2017


def nbytes(*modules, names=None) -> int:
    """Bytes of the parameters and buffers of ``modules`` (of those ``names`` only, when given)."""
    return sum(t.numel() * t.element_size() for module in modules for name, t in module.state_dict().items()
               if names is None or name in names)


def test_balle2017_decoder_holds_its_synthesis_and_its_bottlenecks_tables():
    """Ballé 2017 decodes with g_s (convolutions, inverse GDNs with their reparametrization buffers) and the
    entropy bottleneck's CDF tables and medians (``quantiles``); not with g_a nor the bottleneck's density
    network, which only makes the tables."""
    model = Balle2017(N=8, M=8).eval()
    model.update(force=True)
    tables = {"_quantized_cdf", "_offset", "_cdf_length", "quantiles"}
    expected = nbytes(model.g_s) + nbytes(model.entropy_bottleneck, names=tables)
    assert model.decoder_bytes() == expected
    assert expected < nbytes(model) - nbytes(model.g_a)  # the density network is left out
    assert benchmark.codec_facts([model])["decoder_bytes"] == expected  # what the benchmark records


def test_a_rate_point_reports_the_weights_of_every_rate_point():
    """Toderici's first iteration alone reads no D-RNN hidden-state weights; its receiver holds all but the
    encoder and binarizer all the same."""
    model = Toderici2017(encoder_channels=[8, 16, 16, 16], decoder_channels=[16, 16, 16, 16], context_channels=8)
    first = model.eval().rate_points(iterations=[1, 2])[0]
    assert first.decoder_bytes() == nbytes(model.decoder, model.output, model.entropy_model)


def test_the_leaderboard_shows_decoder_mb_and_leaves_baselines_blank():
    assert PillowCodec(format="jpeg", rate=50).decoder_bytes() is None
    rows = pd.DataFrame({"codec": ["jpeg"] * 2 + ["x"] * 2, "rate": [10, 90, 1, 2], "image": "a", "height": 100,
                         "width": 100, "bytes": [100, 900, 80, 700], "bpp": [0.08, 0.72, 0.064, 0.56],
                         "psnr": [28.0, 38.0, 28.0, 38.0], "ms_ssim": math.nan, "enc_s": 0.1, "dec_s": 0.1})
    rd = benchmark.aggregate(rows.assign(bpp_estimate=math.nan))
    table = leaderboard.leaderboard(rd, rows, {"x": {"decoder_bytes": 2_345_678}}, ["jpeg"])
    mb = table.set_index("codec")[leaderboard.DECODER_MB]
    assert mb["x"] == pytest.approx(2.345678) and pd.isna(mb["jpeg"])
    cells = report.rendered(table[["codec", leaderboard.DECODER_MB]]).set_index("codec")[leaderboard.DECODER_MB]
    assert (cells["x"], cells["jpeg"]) == ("2.35", "—")
