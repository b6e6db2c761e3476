import shutil

import pytest
import torch

from licbench.core.codec import CodecError
from licbench.core.images import save_image
from licbench.datamodules.image_folder import ImageFolder
from licbench.datamodules.kodak import Kodak
from licbench.datamodules.patches import Patches
from licbench.datamodules.samples import Samples


def test_kodak_local_copy_is_verified(datasets):
    images = list(Kodak(root=str(datasets / "kodak"), limit=2).images())
    assert [name for name, _, _ in images] == ["kodim01", "kodim02"]
    assert images[0][1].shape == (3, 512, 768)


def test_kodak_wrong_or_missing_file_is_named(datasets, tmp_path):
    for path in (datasets / "kodak").glob("*.png"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "kodim07.png").write_bytes(b"garbage")
    with pytest.raises(CodecError, match="kodim07.png has the wrong SHA-256"):
        Kodak(root=str(tmp_path)).paths()
    (tmp_path / "kodim07.png").unlink()
    with pytest.raises(CodecError, match="kodim07.png is missing"):
        Kodak(root=str(tmp_path)).paths()


def test_samples_are_colour_photos_without_network():
    images = list(Samples().images())
    assert len(images) == 4 and all(x.shape[0] == 3 and 0 <= x.min() and x.max() <= 1 for _, x, _ in images)


def test_folder_converts_odd_modes_and_says_so(tmp_path):
    from PIL import Image

    Image.new("RGBA", (9, 7), (10, 20, 30, 40)).save(tmp_path / "a.png")
    Image.new("L", (5, 4), 128).save(tmp_path / "b.png")
    images = {name: (x, note) for name, x, note in ImageFolder(str(tmp_path)).images()}
    assert images["a"][0].shape == (3, 7, 9) and "alpha dropped" in images["a"][1]
    assert torch.equal(images["b"][0][0], images["b"][0][2]) and "gray" in images["b"][1]
    with pytest.raises(CodecError, match="no images"):
        ImageFolder(str(tmp_path / "empty")).paths() if (tmp_path / "empty").mkdir() is None else None
    with pytest.raises(CodecError, match="does not exist"):
        ImageFolder(str(tmp_path / "nowhere")).paths()


def test_patches_give_random_crops_and_a_fixed_val_split(tmp_path):
    from licbench.datamodules.synthetic import synthetic_image

    for i in range(5):
        save_image(synthetic_image(40, 50, i), tmp_path / f"{i}.png")
    data = Patches(root=str(tmp_path), patch_size=32, batch_size=3, epoch_size=6, val_size=32, val_fraction=0.2)
    data.setup()
    assert len(data.train_images) == 4 and len(data.val_crops) == 1
    batch = next(iter(data.train_dataloader()))
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.float32 and batch.max() <= 1
    assert next(iter(data.val_dataloader())).shape == (1, 3, 32, 32)
    with pytest.raises(CodecError, match="smaller than patch_size"):
        Patches(root=str(tmp_path), patch_size=64).setup()


def test_bsds500_layout(datasets):
    data = Patches(root=str(datasets / "bsds500"), patch_size=64, batch_size=2, val_images=2)
    data.setup()
    assert len(data.train_images) == 200 and len(data.val_crops) == 2


def test_kodak_download_fetches_every_file_and_checks_it(datasets, tmp_path, monkeypatch):
    import licbench.datamodules.kodak as kodak

    fetched = []

    def fake_download(url, path):  # the public mirror, served from the local copy
        fetched.append(url)
        shutil.copy(datasets / "kodak" / url.rsplit("/", 1)[1], path)

    monkeypatch.setattr(kodak, "_download", fake_download)
    images = Kodak(cache_dir=str(tmp_path / "cache"), limit=1)
    assert len(images.paths()) == 1 and len(fetched) == 24
    assert fetched[0] == "https://r0k.us/graphics/kodak/kodak/kodim01.png"
    images.paths()
    assert len(fetched) == 24  # cached and verified: nothing fetched again
