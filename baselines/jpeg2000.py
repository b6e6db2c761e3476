"""JPEG 2000 through glymur (OpenJPEG), writing a real .j2k codestream.

Settings: irreversible 9/7 wavelet with the colour transform, 6 resolutions, one quality
layer whose compression ratio is set from the target rate: ``cratio = 24 / bpp``
(OpenJPEG counts the ratio against the 24-bit RGB input). The achieved bpp is measured from
the bytes, never assumed.

OpenJPEG is found the way glymur finds it: the system ``libopenjp2`` (``make install``
installs Debian's) or a ``glymurrc`` file. The copy bundled in Pillow's wheel is not used:
glymur's ctypes bindings crash against it. Without OpenJPEG, :class:`CodecError` says how
to fix it.
"""
from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

import torch

from licbench.core.codec import Codec, CodecError, UnknownFormat, check_image
from licbench.core.images import from_uint8_hwc, to_uint8_hwc

J2K_MAGIC = b"\xff\x4f\xff\x51"  # SOC + SIZ markers of a raw codestream
JP2_MAGIC = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


@cache
def glymur():
    """Import glymur and check that it found OpenJPEG >= 2.4."""
    import glymur as _glymur

    if _glymur.version.openjpeg_version_tuple[:2] < (2, 4):
        raise CodecError(
            f"JPEG 2000 needs OpenJPEG >= 2.4, glymur found {_glymur.version.openjpeg_version!r}: "
            "run `make install` (it installs Debian's libopenjp2-7), or `apt-get install libopenjp2-7`, "
            "or point glymur at a copy with a glymurrc file ([library] openjp2 = /path/to/libopenjp2.so)."
        )
    return _glymur


class Jpeg2000Codec(Codec):
    """One target rate of JPEG 2000; ``rate`` is the target in bits per pixel."""

    def __init__(self, rate: float = 0.5, name: str = "jpeg2000", numres: int = 6):
        if not 0 < float(rate) <= 24:
            raise CodecError(f"jpeg2000 target rate must be in (0, 24] bpp, got {rate}")
        self.name, self.rate, self.numres = name, float(rate), numres

    def encode(self, x: torch.Tensor) -> bytes:
        image = to_uint8_hwc(check_image(x))
        # OpenJPEG cannot take more resolutions than the image has octaves.
        numres = max(1, min(self.numres, min(image.shape[:2]).bit_length()))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "image.j2k"
            glymur().Jp2k(path, data=image, cratios=[24.0 / self.rate], irreversible=True, numres=numres)
            return path.read_bytes()

    def decode(self, data: bytes) -> torch.Tensor:
        return decode_jpeg2000(data)


def decode_jpeg2000(data: bytes) -> torch.Tensor:
    """Decode a .j2k codestream or .jp2 file's bytes to [3, H, W] in [0, 1]."""
    suffix = ".j2k" if bytes(data[:4]) == J2K_MAGIC else ".jp2" if bytes(data[:12]) == JP2_MAGIC else None
    if suffix is None:
        raise UnknownFormat("not a JPEG 2000 codestream or JP2 file")
    lib = glymur()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"image{suffix}"
        path.write_bytes(data)
        try:
            image = lib.Jp2k(path)[:]
        except Exception as err:  # glymur/OpenJPEG raise many types on corrupt streams
            raise CodecError(f"cannot decode JPEG 2000 bytes: {err}") from None
    if image.ndim == 2:
        image = image[:, :, None].repeat(3, axis=2)
    if image.ndim != 3 or image.shape[2] < 3 or image.dtype.itemsize != 1:
        raise CodecError(f"unsupported JPEG 2000 image layout {image.shape} {image.dtype}")
    return from_uint8_hwc(image[:, :, :3])
