"""Evaluation image sets: a directory of PNG/JPEG images (CLIC and the like), and the base
class every evaluation set shares. ``images()`` yields ``(name, [3, H, W] in [0, 1], note)``,
the note stating any conversion (alpha dropped, gray replicated, ...)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from licbench.core.codec import CodecError
from licbench.core.images import IMAGE_SUFFIXES, load_image


class ImageSet(pl.LightningDataModule):
    """Base of evaluation sets; subclasses implement ``images()``."""

    name = "images"

    def images(self) -> Iterator[tuple[str, torch.Tensor, str]]:
        raise NotImplementedError  # abstractmethod: every image set lists its images

    def test_dataloader(self) -> DataLoader:
        return DataLoader(list(self.images()), batch_size=None)


class ImageFolder(ImageSet):
    """Every PNG/JPEG (and other Pillow-readable) file directly inside ``root``, sorted by name."""

    def __init__(self, root: str, name: str | None = None, limit: int | None = None):
        super().__init__()
        if not root:
            raise CodecError("data.root is required: the directory of images to use")
        self.root, self.limit = Path(root).expanduser(), limit
        self.name = name or self.root.name

    def paths(self) -> list[Path]:
        if not self.root.is_dir():
            raise CodecError(f"image folder {self.root} does not exist")
        paths = sorted(p for p in self.root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise CodecError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.root}")
        return paths[: self.limit]

    def images(self) -> Iterator[tuple[str, torch.Tensor, str]]:
        for path in self.paths():
            x, note = load_image(path)
            yield path.stem, x, note
