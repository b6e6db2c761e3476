"""Streams written before the package was split into rooms (fixtures/legacy_streams, made by the
commit named in their index) still decode, with the committed zoo, to the very same pixels; the
weights of the streams whose models the zoo has since retrained are kept in fixtures/legacy_streams/weights."""
import hashlib
import json
from pathlib import Path

import pytest
import torch

from conftest import REPO
from licbench.core.bitstream import Container
from licbench.core.checkpoint import load_checkpoint
from licbench.core.images import to_uint8_hwc
from licbench.core.zoo import find_weights

FIXTURES = Path(__file__).parent / "fixtures" / "legacy_streams"
INDEX = json.loads((FIXTURES / "index.json").read_text())["streams"]


@pytest.mark.parametrize("stream", sorted(INDEX))
def test_a_stream_written_before_the_change_decodes_to_the_same_pixels(stream):
    expected, data = INDEX[stream], (FIXTURES / stream).read_bytes()
    container = Container.from_bytes(data)
    assert (container.codec, container.model_id) == (expected["codec"], expected["model_id"])
    codec = load_checkpoint(find_weights(container.model_id, [str(REPO / "results/zoo/**/*.ckpt"),
                                                              str(FIXTURES / "weights" / "*.ckpt")]))
    with torch.inference_mode():
        pixels = to_uint8_hwc(codec.decode(data))
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == expected["decoded_sha256"]
