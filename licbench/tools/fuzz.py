"""Decoder fuzzing:
``python -m licbench.tools.fuzz --minutes 10 --codecs jpeg,balle2017 --out results/robustness/fuzz.md``.

Each codec (a codec name: ``conf/codec/`` or ``conf/model/``; learned ones with their checkpoints under
``paths.zoo_dir``, loaded as ``licbench benchmark`` loads them) encodes two small real images at its lowest and
highest rate points; its decoder is then fed mutated copies of those streams, drawn from
``--seed``: truncations, bit flips, random bytes, byte insertions and deletions, random streams,
and forged headers — a native file's declared size, or a licbench container's size (up to
2^32 − 1), section lengths past the end, section counts, unknown codec and model ids and changed
sections, each forged container re-sealed with a correct CRC-32 so that it reaches the codec's
own decoder.

A case is clean if decoding raises :class:`~licbench.core.codec.CodecError` or returns a float
``[3, H, W]`` image in [0, 1] of the size the stream declares; unclean if it raises anything else,
takes over ``--timeout`` seconds, or needs more than ``--memory-gb`` of address space beyond the
loaded codec. Decoding runs in a one-thread worker process under ``RLIMIT_AS``, restarted when it
hangs or dies. The time budget is split evenly between codecs (worker start-up not counted).
Prints and writes a Markdown table; the exit status is 1 if a case was unclean or a codec could
not be run.
"""
from __future__ import annotations

import argparse
import io
import multiprocessing
import random
import resource
import signal
import struct
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field

import torch
from PIL import Image

from licbench.baselines import hevc, jpegxl
from licbench.core.bitstream import DEFAULT_MAX_PIXELS, Container, is_container, seal
from licbench.core.codec import CodecError
from licbench.core.zoo import extreme_points, named_rate_points
from licbench.tools.figures import write_figures

STARTUP_SECONDS = 300  # loading a codec in a fresh worker, on a loaded machine
EXAMPLES = 3  # unclean cases shown per codec


# --- mutations: (data, rng) -> (description, bytes) ------------------------------------------
def truncate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    cut = rng.randrange(len(data)) if data else 0
    return f"truncated to {cut} of {len(data)} bytes", data[:cut]


def flip_bits(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    if not data:
        return insert(data, rng)
    out, n = bytearray(data), rng.randint(1, 8)
    for _ in range(n):
        out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
    return f"{n} bit(s) flipped", bytes(out)


def overwrite(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    if not data:
        return insert(data, rng)
    at = rng.randrange(len(data))
    n = min(rng.randint(1, 16), len(data) - at)
    return f"{n} random byte(s) at {at}", data[:at] + rng.randbytes(n) + data[at + n:]


def insert(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    at, n = rng.randint(0, len(data)), rng.randint(1, 16)
    return f"{n} byte(s) inserted at {at}", data[:at] + rng.randbytes(n) + data[at:]


def delete(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    if not data:
        return insert(data, rng)
    at, n = rng.randrange(len(data)), rng.randint(1, 16)
    return f"{min(n, len(data) - at)} byte(s) deleted at {at}", data[:at] + data[at + n:]


def random_stream(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    keep, n = rng.choice((0, 4, 12, 32)), rng.randint(0, 2 * len(data) + 16)
    return f"{n} random bytes after the first {keep}", data[:keep] + rng.randbytes(n)


BYTE_MUTATIONS = {"truncation": truncate, "bit flips": flip_bits, "random bytes": overwrite, "insertion": insert,
                  "deletion": delete, "random stream": random_stream}


def forged_size(rng: random.Random, height: int, width: int) -> tuple[int, int]:
    """A size to declare instead of ``height x width``: extreme sides (up to 2^32 − 1), an area
    at the container's pixel limit, or a near miss."""
    kind = rng.randrange(3)
    if kind == 0:
        return tuple(rng.choice((0, 1, 2**14, 2**16 - 1, 2**31, 2**32 - 1, rng.randint(2, 9000))) for _ in range(2))
    if kind == 1:
        side = rng.randint(1000, 16000)
        return side, DEFAULT_MAX_PIXELS // side
    return max(0, height + rng.randint(-16, 64)), max(0, width + rng.randint(-16, 64))


# Where native files declare their size: marker, offsets of height and width after it, field bytes, byte order.
NATIVE_SIZE_FIELDS = [
    (b"\xff\x4f\xff\x51", 12, 8, 4, "big"),  # JPEG 2000 codestream: SIZ's Ysiz and Xsiz
    (b"\xff\xc0", 5, 7, 2, "big"),  # JPEG: SOF0
    (b"\x9d\x01\x2a", 5, 3, 2, "little"),  # WebP: VP8 key frame (14 bits and a 2-bit scale)
    (b"ispe", 12, 8, 4, "big"),  # AVIF: image spatial extents
]


def _size_at(c: Container) -> int:
    """Offset of the height in a container's bytes (magic, version, two length-prefixed ids)."""
    return 4 + 1 + 1 + len(c.codec) + 1 + len(c.model_id)


def _patched(data: bytes, at: int, value: bytes) -> bytes:
    body = bytearray(data[:-4])
    body[at:at + len(value)] = value
    return seal(bytes(body))


def with_declared_size(data: bytes, height: int, width: int) -> bytes:
    """``data`` with the image size in its header replaced (clipped to the field's width; a
    container re-sealed); unchanged if no size field is found."""
    if data.startswith(jpegxl.CODESTREAM):
        return jpegxl.forge_size(data, height, width)
    if hevc.looks_like_hevc(data):
        try:
            return hevc.forge_sps_size(data, height, width)
        except CodecError:
            return data
    if is_container(data):
        size = struct.pack(">II", min(height, 2**32 - 1), min(width, 2**32 - 1))
        return _patched(data, _size_at(Container.from_bytes(data)), size)
    for marker, height_at, width_at, size, order in NATIVE_SIZE_FIELDS:
        at = data.find(marker)
        if at >= 0 and at + max(height_at, width_at) + size <= len(data):
            out = bytearray(data)
            for offset, side in ((height_at, height), (width_at, width)):
                out[at + offset:at + offset + size] = min(side, 256**size - 1).to_bytes(size, order)
            return bytes(out)
    return data


def forge_size(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    height, width = forged_size(rng, *(declared_size(data) or (0, 0)))
    return f"declared size {height}x{width}", with_declared_size(data, height, width)


def forge_section_length(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    c = Container.from_bytes(data)
    at = _size_at(c) + 9
    if not c.sections:
        return forge_section_count(data, rng)
    i = rng.randrange(len(c.sections))
    at += sum(4 + len(s) for s in c.sections[:i])
    length = min(len(data) - 4 - at - 4 + rng.choice((1, rng.randint(2, 2**20), 2**31)), 2**32 - 1)
    return f"section {i} of {len(c.sections)} declares {length} bytes", _patched(data, at, struct.pack(">I", length))


def forge_section_count(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    count = rng.randint(0, 255)
    return f"section count {count}", _patched(data, _size_at(Container.from_bytes(data)) + 8, bytes([count]))


def _rewritten(data: bytes, **changes) -> bytes:
    c = Container.from_bytes(data)
    return Container(**{"codec": c.codec, "height": c.height, "width": c.width, "sections": c.sections,
                        "model_id": c.model_id, **changes}).to_bytes()


def forge_codec_id(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    codec = rng.choice(("", "nope", "jpeg", "balle2017", "theis2017", "fmm", rng.randbytes(8).hex()))
    codec = codec if codec != Container.from_bytes(data).codec else codec + "x"
    return f"codec id {codec!r}", _rewritten(data, codec=codec)


def forge_model_id(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    c = Container.from_bytes(data)
    model_id = rng.choice(("", f"{c.codec}-{rng.randbytes(8).hex()}",
                           c.model_id[:-1] + ("0" if c.model_id[-1:] != "0" else "1")))
    return f"model id {model_id!r}", _rewritten(data, model_id=model_id)


def mutate_section(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    sections = list(Container.from_bytes(data).sections)
    if not sections:
        return forge_sections(data, rng)
    i, mutation = rng.randrange(len(sections)), rng.choice(list(BYTE_MUTATIONS.values()))
    what, sections[i] = mutation(sections[i], rng)
    return f"section {i}: {what}", _rewritten(data, sections=sections)


def forge_sections(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    sections = list(Container.from_bytes(data).sections)
    i = rng.randrange(len(sections)) if sections else 0
    change = rng.choice(("dropped", "duplicated", "random section added", "all emptied", "swapped with the last"))
    if change == "dropped":
        sections = sections[:i] + sections[i + 1:]
    elif change == "duplicated":
        sections = sections[:i + 1] + sections[i:]
    elif change == "random section added":
        sections.insert(i, rng.randbytes(rng.randint(0, 64)))
    elif change == "all emptied":
        sections = [b""] * len(sections)
    elif sections:
        sections[i], sections[-1] = sections[-1], sections[i]
    return f"section {i} {change}", _rewritten(data, sections=sections)


NATIVE_MUTATIONS = {**BYTE_MUTATIONS, "forged size": forge_size}
CONTAINER_MUTATIONS = {**BYTE_MUTATIONS, "forged size": forge_size, "section length": forge_section_length,
                       "section count": forge_section_count, "codec id": forge_codec_id, "model id": forge_model_id,
                       "section bytes (re-sealed)": mutate_section, "section list (re-sealed)": forge_sections}
WEIGHTS = {"section bytes (re-sealed)": 6}  # the cases that reach a learned codec's own decoder


def mutate(data: bytes, rng: random.Random, kinds: list[str] | None = None) -> tuple[str, str, bytes]:
    """One mutated copy of the valid stream ``data``: (kind, description, bytes); ``kinds`` restricts the choice."""
    table = CONTAINER_MUTATIONS if is_container(data) else NATIVE_MUTATIONS
    names = [kind for kind in table if kinds is None or kind in kinds]
    kind = rng.choices(names, [WEIGHTS.get(name, 1) for name in names])[0]
    what, out = table[kind](data, rng)
    return kind, what, out


# --- the verdict ----------------------------------------------------------------------------
CLEAN = ("refused", "decoded")


def declared_size(data: bytes) -> tuple[int, int] | None:
    """The (height, width) a stream's header declares, or None if it declares none readably."""
    for reads, size in ((jpegxl.is_jpegxl, jpegxl.declared_size), (hevc.looks_like_hevc, hevc.declared_size)):
        if reads(data):
            try:
                return size(data)[:2]
            except CodecError:
                return None
    if is_container(data):
        try:
            c = Container.from_bytes(data)
        except CodecError:
            return None
        return c.height, c.width
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.height, img.width
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


def output_problem(x, size: tuple[int, int] | None) -> str | None:
    """Why a decoder's return value breaks the contract, or None."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        return f"returned {type(x).__name__} {getattr(x, 'dtype', '')}, not a float tensor"
    if size is None or tuple(x.shape) != (3, *size):
        declared = "no readable size" if size is None else f"{size[0]}x{size[1]}"
        return f"decoded {list(x.shape)}; the stream declares {declared}"
    if x.numel() and not (x.min() >= 0 and x.max() <= 1):  # also false for NaN
        return "values outside [0, 1]"
    return None


def judge(codec, data: bytes) -> tuple[str, str]:
    """(outcome, detail) of decoding ``data``: refused or decoded (clean); exception, memory or wrong output."""
    try:
        x = codec.decode(data)
    except CodecError as err:
        return "refused", _line(err)
    except Exception as err:  # any other exception is the finding
        memory = isinstance(err, MemoryError) or "can't allocate memory" in str(err)
        return ("memory" if memory else "exception"), f"{type(err).__name__}: {_line(err)}"
    problem = output_problem(x, declared_size(data))
    return ("wrong output", problem) if problem else ("decoded", "x".join(map(str, x.shape[1:])))


def _line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:200] if text else type(err).__name__


# --- the worker process ---------------------------------------------------------------------
def seed_images() -> list[tuple[str, torch.Tensor]]:
    """Two small real images (odd sizes): a crop of scikit-image's astronaut and a synthetic image."""
    from licbench.datamodules.samples import Samples
    from licbench.datamodules.synthetic import synthetic_image

    _, astronaut, _ = next(iter(Samples(["astronaut"]).images()))
    return [("astronaut crop", astronaut[:, 96:133, 160:211].contiguous()),
            ("synthetic", synthetic_image(30, 45, seed=0))]


def _limit_address_space(extra: int) -> None:
    """Cap this process's address space at its current size plus ``extra`` bytes."""
    with open("/proc/self/status") as status:
        size = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
    hard = resource.getrlimit(resource.RLIMIT_AS)[1]
    soft = size + extra if hard == resource.RLIM_INFINITY else min(size + extra, hard)
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _serve(conn, name: str, memory: int, seeds: list | None) -> None:
    """Worker: load the codec's extreme rate points, encode the seeds (unless given), warm up,
    cap memory, answer ("ready", seeds) — or ("error", message) — then judge each (point, bytes)."""
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    try:
        points = extreme_points(named_rate_points([name])[name])
        with torch.inference_mode():
            if seeds is None:
                seeds = [(i, str(point.rate), label, point.encode(x)) for i, point in enumerate(points)
                         for label, x in seed_images()]
            for i, _, _, data in seeds:
                points[i].decode(data)
    except CodecError as err:
        conn.send(("error", f"{name}: {err}"))
        return
    _limit_address_space(memory)
    conn.send(("ready", seeds))
    with torch.inference_mode():
        while True:
            try:
                point, data = conn.recv()
            except EOFError:  # the fuzzer is gone
                return
            conn.send(judge(points[point], data))


class Worker:
    """A decoding process for one codec, restarted after a hang or a death."""

    def __init__(self, name: str, memory: int):
        self.name, self.memory, self.seeds = name, memory, None
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, self.name, self.memory, self.seeds), daemon=True)
        self.process.start()
        child.close()
        if not self.conn.poll(STARTUP_SECONDS):
            self.stop()
            raise CodecError(f"{self.name}: the decoding worker did not start within {STARTUP_SECONDS} s")
        try:
            status, payload = self.conn.recv()
        except EOFError:
            death = self._death()
            self.stop()
            raise CodecError(f"{self.name}: the decoding worker died while loading the codec ({death})") from None
        if status == "error":
            self.stop()
            raise CodecError(payload)
        self.seeds = payload

    def decode(self, point: int, data: bytes, timeout: float) -> tuple[str, str]:
        try:
            self.conn.send((point, data))
            if not self.conn.poll(timeout):
                self.restart()
                return "timeout", f"no answer within {timeout:g} s"
            return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            death = self._death()
            self.restart()
            return "crash", f"the worker died ({death})"

    def _death(self) -> str:
        self.process.join(5)
        code = self.process.exitcode
        if code is None:
            return "still running"
        return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"

    def restart(self) -> None:
        self.stop()
        self._start()

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


# --- the loop and the report ----------------------------------------------------------------
@dataclass
class Tally:
    codec: str
    rates: list[str] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    # case, kind, description, outcome, detail
    unclean: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    note: str = ""

    @property
    def cases(self) -> int:
        return sum(self.outcomes.values())

    @property
    def clean(self) -> int:
        return sum(self.outcomes[outcome] for outcome in CLEAN)

    def examples(self) -> list[str]:
        """Up to EXAMPLES unclean cases, one per kind of mutation, outcome and exception type."""
        shown = {}
        for case, kind, what, outcome, detail in self.unclean:
            key = (kind, outcome, detail.split(":")[0])
            if key not in shown and len(shown) < EXAMPLES:
                shown[key] = f"#{case} {kind} ({what}): {outcome}: {detail}"
        return list(shown.values())


def fuzz_codec(name: str, seconds: float, seed: int, timeout: float, memory: int) -> Tally:
    """Feed one codec's decoder mutated streams for ``seconds``; the mutations depend only on ``seed``."""
    tally = Tally(name)
    try:
        worker = Worker(name, memory)
    except CodecError as err:
        tally.note = str(err)
        return tally
    tally.rates = list(dict.fromkeys(rate for _, rate, _, _ in worker.seeds))
    rng = random.Random(f"{seed}:{name}")
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            point, rate, image, stream = rng.choice(worker.seeds)
            kind, what, data = mutate(stream, rng)
            outcome, detail = worker.decode(point, data, timeout)
            tally.outcomes[outcome] += 1
            if outcome not in CLEAN:
                tally.unclean.append((tally.cases, kind, f"{what}; {image} @ {rate}", outcome, detail))
    except CodecError as err:  # a restart failed
        tally.note = str(err)
    finally:
        worker.stop()
    return tally


def markdown(tallies: list[Tally]) -> str:
    lines = ["| codec | rate points | cases | clean (refused / decoded) | unclean | examples of unclean cases |",
             "|---|---|---|---|---|---|"]
    for t in tallies:
        examples = "<br>".join(e.replace("|", "/") for e in t.examples()) or "—"
        if t.note:
            note = f"{'stopped early' if t.cases else 'not run'}: {t.note}".replace("|", "/")
            examples = note + ("<br>" + examples if t.unclean else "")
        lines.append(f"| {t.codec} | {', '.join(t.rates) or '—'} | {t.cases} | {t.clean} ({t.outcomes['refused']} / "
                     f"{t.outcomes['decoded']}) | {t.cases - t.clean} | {examples} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codecs", required=True, help="comma-separated codec names (conf/codec/ or conf/model/)")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float, help="total time budget, split evenly between codecs")
    budget.add_argument("--seconds", type=float, help="the same in seconds")
    parser.add_argument("--seed", type=int, default=0, help="the mutations are a function of the seed (default 0)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a decode may take (default 10)")
    parser.add_argument("--memory-gb", type=float, default=2.0, help="address space a decode may add (default 2 GiB)")
    parser.add_argument("--out", help="also write the table, with the command and the git revision, to a Markdown file")
    args = parser.parse_args(argv)
    names = [name for name in args.codecs.split(",") if name]
    seconds = (args.seconds if args.seconds is not None else 60 * args.minutes) / max(len(names), 1)
    notes = [f"seed {args.seed}; {seconds:.0f} s per codec; per case: {args.timeout:g} s, {args.memory_gb:g} GiB of "
             "address space over the loaded codec, one thread",
             "clean: `CodecError`, or a float [3, H, W] image in [0, 1] of the declared size; unclean: any other "
             "exception, a timeout, a crash, memory over the bound, or another output"]
    tallies = []
    for name in names:
        tallies.append(fuzz_codec(name, seconds, args.seed, args.timeout, int(args.memory_gb * 2**30)))
        t = tallies[-1]
        print(f"{name}: {t.cases} cases, {t.cases - t.clean} unclean" + (f" ({t.note})" if t.note else ""), flush=True)
    table = markdown(tallies)
    print(table)
    if args.out:
        write_figures(args.out, "Decoder fuzzing", "licbench.tools.fuzz", table, argv, notes)
    return int(any(t.cases > t.clean or t.note for t in tallies))


if __name__ == "__main__":
    sys.exit(main())
