"""HEVC intra (BPG's x265 settings) through ffmpeg's libx265, writing a raw HEVC bitstream (.hevc).

BPG's x265 front end (libbpg 0.9.8 ``x265_glue.c``, as run by CompressAI's ``bpg_444_x265_ycbcr``
curve: ``bpgenc -q QP -f 444 -e x265 -c ycbcr -b 8``) and what is followed here:

- YCbCr 4:4:4, 8 bits, BT.601 matrix, full range (BPG's ``-c ycbcr`` without ``-limitedrange``);
  the range and matrix are signalled in the VUI so any decoder converts back the same way;
- ``x265_param_default_preset(preset, "ssim")``: preset ``veryslow`` (BPG's default compression
  level 8 indexes x265's preset names: 8 = veryslow) and tune ``ssim`` (psy-rd and psy-rdoq off;
  the adaptive quantization it also sets is off under constant QP);
- constant QP, x265's QP = BPG's QP + 1 (BPG's offset to match the JCT-VC encoder at 8 bits):
  ``rate`` is BPG's ``-q`` (0..50), so the rate points read as CompressAI's (x265's CQP then codes
  the intra picture 3 below that, its ip-factor 1.4: ``-q 28`` gives slices at QP 26);
- one intra picture: ``keyint=1``, dummy 25 fps, headers repeated (``repeat-headers``), no x265
  info SEI (``info=0``), no decoded-picture-hash SEI (``hash=0``); x265's other defaults (WPP, SAO,
  deblocking 0:0, no chroma QP offset).

Deviations, each stated:

- x265 is Debian's (3.5 with ffmpeg 5.1), not the x265 BPG 0.9.8 was built with, and it runs through
  ffmpeg's libx265 wrapper (``pools`` = torch's thread count, one frame thread; the bytes do not
  depend on them).
- The RGB to YCbCr conversion is ffmpeg's swscale (``accurate_rnd``, ``bitexact``), not BPG's
  fixed-point code: on kodim01 they differ by at most 1 level in 0.3 % of Y, 4 % of Cb and 0.03 %
  of Cr samples.
- The bytes are the native Annex-B stream as x265 writes it, and bpp counts every byte: the 3- and
  4-byte start codes, VPS, SPS and PPS included (88 bytes on a 768x512 Kodak image, 0.0018 bpp).
  A .bpg file drops the VPS, keeps part of the SPS, drops the first start code and adds its own
  header of about 10 bytes, so it carries somewhat fewer header bytes (well under those 88).
- Sizes: BPG pads to a multiple of 8 and stores the true size in its own header; here x265 pads to
  its 8-sample coding block and signals the true size in the SPS conformance window (in 4:4:4 a
  window is exact to the sample, so odd sizes need nothing more). ffmpeg's wrapper refuses sides
  under 16: such images are padded by edge replication to 16 and the SPS conformance window is
  rewritten to crop the padding, so a 1x1 or 7x13 image is a standard stream that any decoder
  outputs at its size.

Decoding runs ffmpeg with nothing but the bytes. Before it runs, every SPS in the stream is parsed
here and an image over ``LICBENCH_MAX_PIXELS`` (or a conformance window that crops more than a
coding block) is refused; ffmpeg then runs under ``-max_pixels`` and a timeout, and its frame must
have the size the SPS declares. Without ffmpeg (with libx265 for encoding) on PATH, a one-line
:class:`CodecError` says how to install it.
"""
from __future__ import annotations

import shutil
import subprocess
from functools import cache

import numpy as np
import torch

from licbench.core.bitstream import DEFAULT_MAX_PIXELS
from licbench.core.codec import Codec, CodecError, UnknownFormat, check_image
from licbench.core.images import from_uint8_hwc, to_uint8_hwc

PRESET, TUNE = "veryslow", "ssim"  # BPG: x265_param_default_preset(p, x265_preset_names[8], "ssim")
QP_OFFSET = 1  # BPG: p->rc.qp = params->qp + 1 for 8-bit
MIN_SIDE = 16  # ffmpeg's libx265 wrapper refuses smaller pictures
MAX_WINDOW = 64  # a conformance window crops less than one coding block (at most 64 samples) ...
SWS_FLAGS = "accurate_rnd+bitexact+full_chroma_int"
INSTALL = "run `make install` (as root it installs Debian's ffmpeg) or `sudo apt-get install ffmpeg`"
NAL_VPS, NAL_SPS = 32, 33


@cache
def ffmpeg(encoder: bool = False) -> str:
    """The ffmpeg executable, checked to decode HEVC (and with ``encoder`` to have libx265)."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise CodecError(f"HEVC intra needs ffmpeg on PATH: {INSTALL}")
    need, flag = ("libx265", "-encoders") if encoder else ("hevc", "-decoders")
    try:
        listing = subprocess.run([exe, "-hide_banner", flag], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        raise CodecError(f"cannot run {exe}: {err}; {INSTALL}") from None
    if not any(line.split()[1:2] == [need] for line in listing.splitlines()):
        raise CodecError(f"{exe} has no {need} {flag[1:-1]}: {INSTALL} (Debian's ffmpeg has it)")
    return exe


def threads() -> int:
    return max(1, torch.get_num_threads())


def _run(cmd: list[str], data: bytes, timeout: float, what: str) -> bytes:
    try:
        proc = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CodecError(f"ffmpeg took over {timeout:.0f} s to {what}") from None
    except OSError as err:
        raise CodecError(f"cannot run ffmpeg to {what}: {err}") from None
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise CodecError(f"ffmpeg could not {what} (exit status {proc.returncode}"
                         + (f": {lines[-1].strip()}" if lines else "") + ")")
    return proc.stdout


class HevcIntraCodec(Codec):
    """One QP of HEVC intra 4:4:4 as BPG sets up x265; ``rate`` is BPG's QP (0..50, lower is better)."""

    def __init__(self, rate: int = 29, name: str = "hevc_intra", preset: str = PRESET):
        if not 0 <= int(rate) <= 50 or int(rate) != float(rate):
            raise CodecError(f"hevc_intra QP must be a whole number in 0..50 (x265's QP is one more), got {rate}")
        self.name, self.rate, self.preset = name, int(rate), preset

    def encode(self, x: torch.Tensor) -> bytes:
        image = to_uint8_hwc(check_image(x))
        height, width = image.shape[:2]
        pad_h, pad_w = max(0, MIN_SIDE - height), max(0, MIN_SIDE - width)
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        params = ":".join([f"qp={self.rate + QP_OFFSET}", "keyint=1", "info=0", "hash=0", "repeat-headers=1",
                           "log-level=error", f"pools={threads()}", "frame-threads=1"])
        cmd = [ffmpeg(encoder=True), "-nostdin", "-hide_banner", "-loglevel", "error", "-filter_threads", "1",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{image.shape[1]}x{image.shape[0]}", "-r", "25",
               "-i", "pipe:0", "-frames:v", "1",
               "-vf", f"scale=out_color_matrix=bt601:out_range=full:flags={SWS_FLAGS},format=yuv444p",
               "-color_range", "pc", "-colorspace", "smpte170m",
               "-c:v", "libx265", "-preset", self.preset, "-tune", TUNE, "-x265-params", params, "-f", "hevc", "pipe:1"]
        data = _run(cmd, image.tobytes(), 120 + 60 * image.size / 3e6, f"encode a {height}x{width} image")
        if pad_h or pad_w:
            data = crop_in_sps(data, pad_h, pad_w)
        if declared_size(data)[:2] != (height, width):
            raise CodecError(f"x265 wrote a stream of size {declared_size(data)[:2]} for a {height}x{width} image")
        return data

    def decode(self, data: bytes) -> torch.Tensor:
        return decode_hevc(data)


def decode_hevc(data: bytes, max_pixels: int | None = None) -> torch.Tensor:
    """Decode a raw HEVC (Annex-B) stream's first picture to [3, H, W] in [0, 1] with ffmpeg; a
    declared size over ``max_pixels`` (``LICBENCH_MAX_PIXELS``) is refused before ffmpeg runs."""
    data = bytes(data)
    if not looks_like_hevc(data):
        raise UnknownFormat("not a raw HEVC (Annex-B) bitstream")
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    sizes = [sps_size(nal) for nal in nal_units(data) if _nal_type(nal) == NAL_SPS]
    if not sizes:
        raise CodecError("HEVC stream has no sequence parameter set")
    for height, width, coded_h, coded_w in sizes:
        if height * width > limit:
            raise CodecError(f"declared image size {height}x{width} exceeds the limit of {limit} pixels")
        if coded_h > max(height, MIN_SIDE) + MAX_WINDOW or coded_w > max(width, MIN_SIDE) + MAX_WINDOW:
            raise CodecError(f"HEVC conformance window crops a {coded_h}x{coded_w} picture to {height}x{width}")
    height, width, coded_h, coded_w = sizes[0]
    cmd = [ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-threads", "1",
           "-max_pixels", str((coded_h + MAX_WINDOW) * (coded_w + MAX_WINDOW)), "-f", "hevc", "-i", "pipe:0",
           "-frames:v", "1", "-an", "-sn", "-sws_flags", SWS_FLAGS, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    pixels = _run(cmd, data, 60 + 10 * coded_h * coded_w / 1e6, "decode the HEVC bytes")
    if len(pixels) != 3 * height * width:
        got = f"{len(pixels)} bytes" if pixels else "no picture"
        raise CodecError(f"ffmpeg decoded {got}, not the {height}x{width} picture the SPS declares")
    return from_uint8_hwc(np.frombuffer(pixels, np.uint8).reshape(height, width, 3))


# --- the Annex-B byte stream and the SPS (ITU-T H.265, 7.3.1-7.3.2.2) -----------------------------
def looks_like_hevc(data: bytes) -> bool:
    """A start code then an HEVC NAL header (forbidden bit 0, temporal id + 1 > 0) of a parameter set,
    SEI or access unit delimiter: what an HEVC elementary stream begins with."""
    at = 4 if data.startswith(b"\x00\x00\x00\x01") else 3 if data.startswith(b"\x00\x00\x01") else 0
    if not at or len(data) < at + 2:
        return False
    first, second = data[at], data[at + 1]
    return not first & 0x80 and second & 0x07 != 0 and (first >> 1) & 0x3F in (32, 33, 34, 35, 39)


def nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B stream, without start codes (emulation prevention kept)."""
    starts, at = [], data.find(b"\x00\x00\x01")
    while at >= 0:
        starts.append(at + 3)
        at = data.find(b"\x00\x00\x01", at + 3)
    units = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(data)
        units.append(data[start:end].rstrip(b"\x00") if i + 1 < len(starts) else data[start:end])
    return units


def _nal_type(nal: bytes) -> int:
    return (nal[0] >> 1) & 0x3F if nal else -1


def _rbsp(nal: bytes) -> bytes:
    """A NAL unit's payload with emulation prevention bytes (00 00 03) removed."""
    out, zeros = bytearray(), 0
    for byte in nal:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _escape(rbsp: bytes) -> bytes:
    out, zeros = bytearray(), 0
    for byte in rbsp:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


class _Bits:
    """Big-endian bit reader over an RBSP, with Exp-Golomb codes; reading past the end is a CodecError."""

    def __init__(self, data: bytes):
        self.value, self.size, self.pos = int.from_bytes(data, "big"), 8 * len(data), 0

    def read(self, n: int) -> int:
        if self.pos + n > self.size:
            raise CodecError("HEVC SPS is truncated")
        self.pos += n
        return (self.value >> (self.size - self.pos)) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while not self.read(1):
            zeros += 1
            if zeros > 31:
                raise CodecError("HEVC SPS has an Exp-Golomb code over 32 bits")
        return (1 << zeros) - 1 + self.read(zeros)


def _sps_fields(rbsp: bytes) -> dict:
    """Parse an SPS RBSP up to its conformance window: sizes, chroma format, and the bit span from the
    picture width to the end of the window."""
    bits = _Bits(rbsp)
    bits.read(16)  # NAL header
    bits.read(4)  # sps_video_parameter_set_id
    sub_layers = bits.read(3)  # sps_max_sub_layers_minus1
    bits.read(1)  # sps_temporal_id_nesting_flag
    bits.read(96)  # general profile (88 bits) and level_idc
    present = [(bits.read(1), bits.read(1)) for _ in range(sub_layers)]
    if sub_layers:
        bits.read(2 * (8 - sub_layers))  # reserved_zero_2bits
    for profile, level in present:
        bits.read(88 * profile + 8 * level)
    bits.ue()  # sps_seq_parameter_set_id
    chroma = bits.ue()
    if chroma > 3:
        raise CodecError(f"HEVC SPS has chroma_format_idc {chroma}")
    separate = bits.read(1) if chroma == 3 else 0
    size_at = bits.pos
    coded_w, coded_h = bits.ue(), bits.ue()
    window = [bits.ue() for _ in range(4)] if bits.read(1) else [0, 0, 0, 0]  # left, right, top, bottom
    unit_w = 2 if chroma in (1, 2) and not separate else 1
    unit_h = 2 if chroma == 1 and not separate else 1
    return {"coded": (coded_h, coded_w), "window": window, "units": (unit_h, unit_w), "chroma": chroma,
            "span": (size_at, bits.pos)}


def sps_size(nal: bytes) -> tuple[int, int, int, int]:
    """(height, width, coded height, coded width) an SPS NAL unit declares; a CodecError if it cannot hold."""
    fields = _sps_fields(_rbsp(nal))
    (coded_h, coded_w), (left, right, top, bottom) = fields["coded"], fields["window"]
    unit_h, unit_w = fields["units"]
    height, width = coded_h - unit_h * (top + bottom), coded_w - unit_w * (left + right)
    if height < 1 or width < 1:
        raise CodecError(f"HEVC SPS declares a {coded_h}x{coded_w} picture cropped to nothing")
    return height, width, coded_h, coded_w


def declared_size(data: bytes) -> tuple[int, int, int, int]:
    """The first SPS's :func:`sps_size` in an Annex-B stream."""
    for nal in nal_units(data):
        if _nal_type(nal) == NAL_SPS:
            return sps_size(nal)
    raise CodecError("HEVC stream has no sequence parameter set")


def _ue_bits(value: int) -> str:
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def crop_in_sps(data: bytes, pad_h: int, pad_w: int) -> bytes:
    """``data`` with each SPS's conformance window grown by ``pad_h`` rows at the bottom and ``pad_w``
    columns on the right (4:4:4: one sample per unit), the rest of each SPS bit-identical."""
    def grow(fields: dict) -> tuple[tuple[int, int], list[int]]:
        if fields["units"] != (1, 1):
            raise CodecError("can only crop a 4:4:4 HEVC picture to the sample")
        left, right, top, bottom = fields["window"]
        return fields["coded"], [left, right + pad_w, top, bottom + pad_h]

    return rewrite_sps(data, grow)


def forge_sps_size(data: bytes, height: int, width: int) -> bytes:
    """``data`` with each SPS declaring a ``height`` x ``width`` picture and no conformance window
    (the slices untouched): a hostile stream for tests and fuzzing."""
    return rewrite_sps(data, lambda fields: ((height, width), [0, 0, 0, 0]))


def rewrite_sps(data: bytes, change) -> bytes:
    """``data`` with each SPS's picture size and conformance window replaced by ``change(fields)`` ->
    ((coded height, coded width), [left, right, top, bottom]); every other bit and NAL unit kept."""
    out, at = bytearray(), 0
    while (found := data.find(b"\x00\x00\x01", at)) >= 0:
        start = found + 3
        end = data.find(b"\x00\x00\x01", start)
        end = len(data) if end < 0 else end
        nal = data[start:end]
        trailing = len(nal) - len(nal.rstrip(b"\x00")) if end < len(data) else 0  # the next start code's zero byte
        body = nal[:len(nal) - trailing]
        if _nal_type(body) == NAL_SPS:
            body = _rewritten(body, change)
        out += data[at:start] + body + b"\x00" * trailing
        at = end
    return bytes(out + data[at:])


def _rewritten(nal: bytes, change) -> bytes:
    rbsp = _rbsp(nal)
    fields = _sps_fields(rbsp)
    (coded_h, coded_w), window = change(fields)
    bits = bin(int.from_bytes(rbsp, "big"))[2:].zfill(8 * len(rbsp))
    stop = bits.rindex("1")  # rbsp_stop_one_bit
    begin, end = fields["span"]
    middle = _ue_bits(coded_w) + _ue_bits(coded_h) + ("1" + "".join(map(_ue_bits, window)) if any(window) else "0")
    new = bits[:begin] + middle + bits[end:stop] + "1"
    new += "0" * (-len(new) % 8)
    return _escape(int(new, 2).to_bytes(len(new) // 8, "big"))
