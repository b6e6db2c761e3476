"""The colour photographs shipped inside scikit-image's wheel: the no-network default set."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from licbench.core.codec import CodecError
from licbench.core.images import from_uint8_hwc
from licbench.datamodules.image_folder import ImageSet

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


class Samples(ImageSet):
    name = "samples"

    def __init__(self, names: list[str] | tuple[str, ...] = PHOTOS):
        super().__init__()
        self.names = list(names)

    def images(self) -> Iterator[tuple[str, torch.Tensor, str]]:
        import skimage.data

        for name in self.names:
            loader = getattr(skimage.data, name, None) if name in PHOTOS else None
            if loader is None:
                raise CodecError(f"unknown sample image {name!r}; choose from {list(PHOTOS)}")
            yield name, from_uint8_hwc(loader()), ""
