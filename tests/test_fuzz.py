"""Fuzzing the input path: whatever bytes or arrays arrive, predict answers or raises ImageError."""

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from bear_classifier.model.images import ImageError
from tests.conftest import example
from tests.support import hard_inputs

FORMATS = ["JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP"]
MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "CMYK", "I", "F"]

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def predict_or_refuse(predictor, source) -> None:
    try:
        prediction = predictor.predict(source)
    except ImageError as e:
        assert str(e)  # a message for the user
        return
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-4


@st.composite
def encoded_images(draw) -> bytes:
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(FORMATS))
    image = Image.new("RGB", (width, height), tuple(draw(st.integers(0, 255)) for _ in range(3))).convert(mode)
    try:
        return hard_inputs.encode(image, fmt)
    except (OSError, ValueError, KeyError):  # this format cannot store this mode: send it as PNG
        return hard_inputs.encode(image.convert("RGB"), "PNG")


@st.composite
def damaged(draw) -> bytes:
    """Real image files with bytes flipped, cut or inserted."""
    data = bytearray(draw(encoded_images()))
    for _ in range(draw(st.integers(1, 20))):
        position = draw(st.integers(0, len(data) - 1))
        data[position] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=64))


@FUZZ
@given(st.one_of(encoded_images(), damaged(), st.binary(max_size=2048)))
def test_bytes(predictor, data):
    predict_or_refuse(predictor, data)


@FUZZ
@given(
    arrays(
        dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32]),
        shape=st.tuples(st.integers(0, 40), st.integers(0, 40))
        | st.tuples(st.integers(0, 40), st.integers(0, 40), st.integers(0, 5)),
    )
)
def test_arrays(predictor, array):
    predict_or_refuse(predictor, array)


@FUZZ
@given(st.binary(max_size=512))
def test_a_bad_item_never_fails_the_good_ones(predictor, data):
    """What the app serves: every item gets its own answer or its own refusal."""
    bad, good, empty = predictor.predict_batch([data, str(example("black")), None])
    assert good.label == "black"
    assert isinstance(empty, ImageError)
    assert isinstance(bad, ImageError) or abs(sum(bad.probabilities.values()) - 1) < 1e-4
