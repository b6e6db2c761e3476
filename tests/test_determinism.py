from pathlib import Path

import pytest
import torch

from licbench.core.checkpoint import load_checkpoint
from licbench.core.images import load_image, save_image
from licbench.datamodules.synthetic import synthetic_image
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
    assert all(" / " in cell for cell in rows["balle2017"][6:8])  # decode ms: fixed / free


@pytest.mark.parametrize("method", ["balle2017", "wcae"])
def test_a_stream_decodes_to_the_same_pixels_on_any_thread_count(method, datasets):
    """The zoo's models on a Kodak crop: decoded with 1 and with 2 threads the pixels are the same
    (oneDNN's sums depend on the thread count; decoding runs on ``decode_threads``), and the caller's
    thread count is restored."""
    codec = load_checkpoint(sorted(Path("results/zoo", method).glob("*.ckpt"))[0])
    x, _ = load_image(datasets / "kodak" / "kodim01.png")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        data = codec.encode(x[:, :256, :384])
        decoded = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            decoded.append(codec.decode(data))
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert torch.equal(*decoded)
