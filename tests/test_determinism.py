from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from licbench.core.checkpoint import load_checkpoint
from licbench.core.images import load_image, save_image
from licbench.datamodules.synthetic import synthetic_image
from licbench.lightning_modules import base
from licbench.lightning_modules.base import ThreadInvariantConvolutions
from licbench.tools import determinism


def test_streams_and_pixels_are_the_same_twice_and_in_a_fresh_process(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for seed, (height, width) in enumerate([(40, 56), (33, 47)]):
        save_image(synthetic_image(height, width, seed=seed), images / f"im{seed}.png")
    out = tmp_path / "determinism.md"
    assert determinism.main(["--images", str(images), "--codecs", "jpeg,balle2017", "--threads", "1,2",
                             "--out", str(out)]) == 0
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in out.read_text().splitlines() if line.startswith(("| jpeg |", "| balle2017 |"))}
    assert rows["jpeg"][:6] == ["5, 95", "2", "4", "0", "0", "0"]  # bytes, pixels on 1 and on 2 threads
    assert rows["balle2017"][1:6] == ["2", "4", "0", "0", "0"]
    assert all(len(cell.split(" / ")) == 3 for cell in rows["balle2017"][6:8])  # pinned / licbench / torch


@pytest.mark.parametrize("method", ["balle2017", "wcae"])
def test_a_stream_decodes_to_the_same_pixels_on_any_thread_count(method, datasets):
    """The zoo's models on a Kodak crop: encoded with 2 and with 1 thread the bytes are the same, decoded with
    1 and with 2 threads the pixels are the same (coding runs in ThreadInvariantConvolutions, on the
    caller's threads), and the caller's thread count is kept."""
    codec = load_checkpoint(sorted(Path("results/zoo", method).glob("*.ckpt"))[0])
    x, _ = load_image(datasets / "kodak" / "kodim01.png")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        data = codec.encode(x[:, :256, :384])
        torch.set_num_threads(1)
        assert codec.encode(x[:, :256, :384]) == data
        decoded = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            decoded.append(codec.decode(data))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*decoded)


def test_pointwise_convolutions_are_the_same_on_1_and_2_threads_and_onednn_is_restored():
    """A 1x1 convolution on a batch of one goes to oneDNN only on more than one thread, and the two
    backends sum in different orders; in ThreadInvariantConvolutions it is the one-thread result."""
    generator = torch.Generator().manual_seed(0)
    x, weight = torch.randn(1, 128, 32, 48, generator=generator), torch.randn(512, 128, 1, 1, generator=generator)
    before, outputs = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with ThreadInvariantConvolutions():
                outputs.append(F.conv2d(x, weight))
            assert torch.backends.mkldnn.is_available() and torch._C._get_mkldnn_enabled()
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*outputs)


def test_transposed_convolutions_are_the_same_on_1_and_2_threads():
    """WCAE's 32→32 3x3/2 transposed convolution on a portrait latent (kodim04's 32x48) summed in another order on
    2 threads in oneDNN; in ThreadInvariantConvolutions it is the one-thread result, at that shape and others."""
    generator = torch.Generator().manual_seed(0)
    before = torch.get_num_threads()
    for channels, height, width in [(32, 48, 32), (32, 32, 48), (128, 24, 16)]:
        x = torch.randn(1, channels, height, width, generator=generator)
        weight = torch.randn(channels, channels, 3, 3, generator=generator)
        outputs = []
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                with ThreadInvariantConvolutions():
                    outputs.append(F.conv_transpose2d(x, weight, stride=2, padding=1, output_padding=1))
        finally:
            torch.set_num_threads(before)
        assert torch.equal(*outputs), (channels, height, width)


def test_transposed_convolutions_in_bands_are_the_whole_layers(monkeypatch):
    """Over the column-buffer bound a transposed convolution is computed in bands of output rows, down to the
    smallest band of one stride: the same values as the whole layer's (CompressAI's 5x5/2, Cheng's 4x4/2 and
    WCAE's 3x3/2 layers, odd sizes), on 1 and 2 threads."""
    generator = torch.Generator().manual_seed(0)
    before = torch.get_num_threads()
    for channels, out, kernel, padding, output_padding, height, width in [
            (32, 32, 5, 2, 1, 33, 47), (16, 3, 5, 2, 1, 40, 24), (16, 8, 4, 1, 0, 25, 19), (8, 8, 3, 1, 1, 18, 30)]:
        x = torch.randn(1, channels, height, width, generator=generator)
        weight = torch.randn(channels, out, kernel, kernel, generator=generator)
        bias = torch.randn(out, generator=generator)
        try:
            for threads in (1, 2):
                torch.set_num_threads(threads)
                results = []
                for limit in (1 << 40, 1 << 16, 1):
                    monkeypatch.setattr(base, "TRANSPOSED_COLUMNS_BYTES", limit)
                    with torch.profiler.profile() as profile, ThreadInvariantConvolutions():
                        results.append(F.conv_transpose2d(x, weight, bias, 2, padding, output_padding))
                    calls = sum(event.name == "aten::conv_transpose2d" for event in profile.events())
                    assert (calls == 1) == (limit == 1 << 40)  # bands below the bound, the whole layer above
                assert all(torch.equal(results[0], r) for r in results[1:]), (channels, kernel, threads)
        finally:
            torch.set_num_threads(before)
