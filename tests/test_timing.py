"""The timing pass: what it times, in which order, on how many threads, and where its figures go.
No assertion here depends on how fast anything runs."""
import math

import pandas as pd
import torch

from licbench.bench import leaderboard
from licbench.bench.timing import overload_warning, time_codecs
from licbench.core.codec import Codec, CodecError

CALLS: list[tuple[str, str, int]] = []  # (codec, what, torch threads at the call)


class Recorder(Codec):
    """A codec that records its calls; ``fails``: it refuses every image."""

    def __init__(self, name: str, rate: int, fails: bool = False):
        self.name, self.rate, self.fails = name, rate, fails

    def encode(self, x):
        if self.fails:
            raise CodecError("no")
        CALLS.append((f"{self.name}@{self.rate}", "encode", torch.get_num_threads()))
        return b"x"

    def decode(self, data):
        CALLS.append((f"{self.name}@{self.rate}", "decode", torch.get_num_threads()))
        return torch.zeros(3, 4, 5)


IMAGES = [(f"im{i}", torch.rand(3, 100, 200), "") for i in range(4)]


def test_the_pass_times_the_median_point_after_a_warm_up_codecs_taking_turns_on_pinned_threads():
    CALLS.clear()
    codecs = {"a": [Recorder("a", r) for r in (1, 2, 3)], "b": [Recorder("b", r) for r in (5, 6)],
              "broken": [Recorder("broken", 1, fails=True)]}
    before = torch.get_num_threads()
    timed = time_codecs(codecs, IMAGES, {"images": 2, "repeats": 3, "threads": 1})
    assert torch.get_num_threads() == before
    assert set(timed) == {"a", "b"} and timed["a"]["rate"] == "2" and timed["b"]["rate"] == "5"
    encodes = [codec for codec, what, _ in CALLS if what == "encode"]
    assert encodes == ["a@2"] * 2 + ["b@5"] * 2 + (["a@2"] * 2 + ["b@5"] * 2) * 3  # warm-up, then 3 turns
    assert {threads for _, _, threads in CALLS} == {1}
    assert timed["a"]["images"] == 2 and timed["a"]["repeats"] == 3 and timed["a"]["threads"] == 1
    assert timed["a"]["enc ms/MP"] >= 0 and timed["a"]["cores"] >= 1


def test_no_images_is_no_pass():
    assert time_codecs({"a": [Recorder("a", 1)]}, IMAGES, {"images": 0, "repeats": 5}) == {}


def test_the_leaderboard_takes_the_pass_and_marks_the_rd_loop_times_and_an_overloaded_pass():
    rd = pd.DataFrame({"codec": ["a", "a", "b", "b"], "rate": [1, 2, 1, 2], "bpp": [0.5, 1.0, 0.5, 1.0],
                       "psnr": [30.0, 33.0, 29.0, 32.0], "ms_ssim": [0.95, 0.97, 0.94, 0.96]})
    rows = rd.assign(image="x", height=1000, width=1000, enc_s=0.5, dec_s=0.25, bytes=rd.bpp * 1e6 / 8)
    timed = {"rate": "1", "enc ms/MP": 12.5, "dec ms/MP": 7.5, "images": 3, "repeats": 5, "threads": 2,
             "load": 1.5, "cores": 2}
    facts = {"a": {"timing": timed}, "b": {"timing": None}}
    table = leaderboard.leaderboard(rd, rows, facts, ["b"]).set_index("codec")
    assert (table.loc["a", "enc ms/MP"], table.loc["a", "dec ms/MP"]) == (12.5, 7.5)
    assert "timing pass" in table.loc["a", "timed by"] and "best of 5" in table.loc["a", "timed by"]
    assert math.isclose(table.loc["b", "enc ms/MP"], 500.0) and "RD loop" in table.loc["b", "timed by"]
    assert overload_warning(facts) is None
    assert "above its 2 cores" in overload_warning({"a": {"timing": {**timed, "load": 3.2}}})
