from licbench.core.images import save_image
from licbench.datamodules.synthetic import synthetic_image
from licbench.tools import determinism


def test_streams_and_pixels_are_the_same_twice_and_in_a_fresh_process(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for seed, (height, width) in enumerate([(40, 56), (33, 47)]):
        save_image(synthetic_image(height, width, seed=seed), images / f"im{seed}.png")
    out = tmp_path / "determinism.md"
    assert determinism.main(["--images", str(images), "--codecs", "jpeg,balle2017", "--out", str(out)]) == 0
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in out.read_text().splitlines() if line.startswith(("| jpeg |", "| balle2017 |"))}
    assert rows["jpeg"] == ["5, 95", "2", "4", "0", "0"]
    assert rows["balle2017"][1:] == ["2", "4", "0", "0"]
