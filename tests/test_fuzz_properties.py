"""Property: every decoder — the container parser, the baselines and the committed zoo's learned
codecs — fed arbitrary or mutated bytes either raises CodecError or returns a [3, H, W] image
in [0, 1] of the size the stream declares. Forged sizes stay small here (decoding runs in this
process); `python -m licbench.tools.fuzz` forges them up to 2^32 − 1 in a bounded worker."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licbench.core.bitstream import Container
from licbench.core.codec import CodecError
from licbench.core.zoo import extreme_points, named_rate_points
from licbench.datamodules.synthetic import synthetic_image
from licbench.tools import fuzz

CODECS = ["jpeg", "jpeg2000", "webp", "avif", "balle2017", "theis2017", "jiang2017", "toderici2017", "toderici2016",
          "fmm", "fmm_packed"]
KINDS = [kind for kind in fuzz.CONTAINER_MUTATIONS if kind != "forged size"]  # sizes: small_size() below
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True, database=None)


@pytest.fixture(scope="module")
def streams() -> dict:
    """Each codec's lowest and highest rate point with a valid stream of a small odd-sized image."""
    x = synthetic_image(30, 45, seed=0)
    return {name: [(point, point.encode(x)) for point in extreme_points(points)]
            for name, points in named_rate_points(CODECS).items()}


def hostile(stream: bytes):
    """Arbitrary bytes, a mutation of the valid stream, or the stream declaring another small size."""
    small_size = st.tuples(st.integers(0, 80), st.integers(0, 80))
    return st.one_of(st.binary(max_size=2 * len(stream)),
                     st.randoms(use_true_random=False).map(lambda rng: fuzz.mutate(stream, rng, KINDS)[2]),
                     small_size.map(lambda size: fuzz.with_declared_size(stream, *size)))


@pytest.mark.parametrize("name", CODECS)
@SETTINGS
@given(case=st.data())
def test_decoders_refuse_or_decode_the_declared_size(streams, name, case):
    point, stream = case.draw(st.sampled_from(streams[name]))
    data = case.draw(hostile(stream))
    try:
        x = point.decode(data)
    except CodecError:
        return
    assert fuzz.output_problem(x, fuzz.declared_size(data)) is None


VALID = Container("balle2017", 45, 70, [b"\x01\x02\x03", b"", b"x" * 40], model_id="balle2017-abc").to_bytes()


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(data=st.one_of(st.binary(max_size=120),
                      st.randoms(use_true_random=False).map(lambda rng: fuzz.mutate(VALID, rng)[2])))
def test_container_parser_refuses_or_reads_exactly_what_it_was_given(data):
    try:
        container = Container.from_bytes(data)
    except CodecError:
        return
    assert container.to_bytes() == data


def test_the_fuzzer_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "fuzz.md"
    assert fuzz.main(["--seconds", "3", "--codecs", "fmm_packed", "--out", str(out)]) == 0
    text = out.read_text()
    assert "- git revision: " in text and "python -m licbench.tools.fuzz --seconds 3 --codecs fmm_packed" in text
    row = next(line for line in text.splitlines() if line.startswith("| fmm_packed |"))
    cells = [cell.strip() for cell in row.split("|")[1:-1]]
    assert cells[1] == "3, 73" and int(cells[2]) > 0 and cells[4] == "0", row
