"""Tiny deterministic images for tests: smooth colour gradients with a few soft blobs."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, TensorDataset

from licbench.datamodules.image_folder import ImageSet


def synthetic_image(height: int, width: int, seed: int) -> torch.Tensor:
    """A smooth, natural-ish [3, H, W] image in [0, 1] from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij")
    base = torch.rand(3, 1, 1, generator=g) * 0.5 + 0.25
    image = base + 0.3 * (torch.rand(3, 1, 1, generator=g) - 0.5) * (xx + yy)
    for _ in range(4):
        cy, cx, r = torch.rand(3, generator=g) * torch.tensor([1.0, 1.0, 0.3]) + torch.tensor([0, 0, 0.05])
        blob = torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
        image = image + (torch.rand(3, 1, 1, generator=g) - 0.5) * 0.6 * blob
    return image.clamp(0, 1)


class Synthetic(ImageSet):
    """``count`` images of ``height x width``; also serves training batches of the same kind."""

    name = "synthetic"

    def __init__(self, count: int = 2, height: int = 64, width: int = 96, batch_size: int = 2, seed: int = 0):
        super().__init__()
        self.count, self.height, self.width, self.batch_size, self.seed = count, height, width, batch_size, seed

    def images(self) -> Iterator[tuple[str, torch.Tensor, str]]:
        for i in range(self.count):
            yield f"synthetic{i:02d}", synthetic_image(self.height, self.width, self.seed + i), ""

    def _stack(self) -> TensorDataset:
        return TensorDataset(torch.stack([x for _, x, _ in self.images()]))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self._stack(), batch_size=self.batch_size, shuffle=True, collate_fn=_first)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._stack(), batch_size=self.batch_size, collate_fn=_first)


def _first(batch):
    return torch.stack([item[0] for item in batch])
