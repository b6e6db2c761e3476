"""Training crops: random ``patch_size`` crops with horizontal/vertical flips from a folder
of photos (e.g. BSDS500's ``train/``), validated on fixed centre crops of ``val/`` (or of a
held-out fraction of the training images when there is no ``val/``).

Images are decoded once and kept as uint8 in memory (BSDS500's 300 photos: ~140 MB).
"""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from licbench.core.codec import CodecError
from licbench.datamodules.image_folder import ImageFolder


class RandomCrops(Dataset):
    def __init__(self, images: list[torch.Tensor], patch_size: int, length: int):
        self.images, self.patch_size, self.length = images, patch_size, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        image = self.images[torch.randint(len(self.images), ()).item()]
        p = self.patch_size
        top = torch.randint(image.shape[1] - p + 1, ()).item()
        left = torch.randint(image.shape[2] - p + 1, ()).item()
        crop = image[:, top:top + p, left:left + p]
        if torch.rand(()) < 0.5:
            crop = crop.flip(2)
        if torch.rand(()) < 0.5:
            crop = crop.flip(1)
        return crop.float().div(255)


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    top, left = (image.shape[1] - size) // 2, (image.shape[2] - size) // 2
    return image[:, top:top + size, left:left + size].float().div(255)


class Patches(pl.LightningDataModule):
    name = "patches"

    def __init__(self, root: str, train_dir: str = "train", val_dir: str = "val", patch_size: int = 128,
                 batch_size: int = 8, epoch_size: int = 4000, val_size: int = 256, val_images: int = 16,
                 val_fraction: float = 0.1, num_workers: int = 0):
        super().__init__()
        if not root:
            raise CodecError("data.root is required: a folder of training photos (e.g. BSDS500 with train/ and val/)")
        self.root = Path(root).expanduser()
        self.train_dir, self.val_dir = train_dir, val_dir
        self.patch_size, self.batch_size, self.epoch_size = patch_size, batch_size, epoch_size
        self.val_size, self.val_images = val_size, val_images
        self.val_fraction, self.num_workers = val_fraction, num_workers
        self.train_images: list[torch.Tensor] = []
        self.val_crops: list[torch.Tensor] = []

    def _load(self, folder: Path) -> list[torch.Tensor]:
        return [(x * 255).round().to(torch.uint8) for _, x, _ in ImageFolder(str(folder)).images()]

    def setup(self, stage: str | None = None) -> None:
        if self.train_images:
            return
        train_root = self.root / self.train_dir if (self.root / self.train_dir).is_dir() else self.root
        train = self._load(train_root)
        if (self.root / self.val_dir).is_dir():
            val = self._load(self.root / self.val_dir)
        else:
            n_val = max(1, int(len(train) * self.val_fraction))
            if len(train) <= n_val:
                raise CodecError(f"{train_root} has {len(train)} images: too few to hold out {n_val} for validation")
            train, val = train[n_val:], train[:n_val]
        small = [i for i, x in enumerate(train) if min(x.shape[1:]) < self.patch_size]
        if small:
            raise CodecError(f"{len(small)} training images in {train_root} are smaller than "
                             f"patch_size={self.patch_size}")
        self.train_images = train
        size = min(self.val_size, *(min(x.shape[1:]) for x in val))
        self.val_crops = [center_crop(x, size) for x in val[: self.val_images]]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(RandomCrops(self.train_images, self.patch_size, self.epoch_size), batch_size=self.batch_size,
                          num_workers=self.num_workers, drop_last=True, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_crops, batch_size=4)
