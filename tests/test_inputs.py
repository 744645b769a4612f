"""Sizing the images of a run: content to `size`, styles to the content's size x style_scale."""

import numpy as np
import pytest
from PIL import Image

from jstyle.config import resolve
from jstyle.errors import JStyleError
from jstyle.inputs import prepare_inputs


def _image(w, h, value=128):
    return Image.new("RGB", (w, h), (value, value // 2, 255 - value))


def test_styles_take_the_contents_size_as_in_the_paper():
    inputs = prepare_inputs(resolve({"size": 64}), _image(200, 100), [_image(30, 90)])
    assert inputs.content.shape == (32, 64, 3)
    assert inputs.styles[0].shape == (32, 64, 3)
    assert inputs.init == "noise"


def test_style_scale_resizes_the_styles_only():
    inputs = prepare_inputs(resolve({"size": 128, "style_scale": 0.5}), _image(200, 100),
                            [_image(30, 90), _image(90, 30)])
    assert inputs.content.shape == (64, 128, 3)
    assert [s.shape for s in inputs.styles] == [(32, 64, 3), (32, 64, 3)]
    with pytest.raises(JStyleError, match="raise style_scale"):
        prepare_inputs(resolve({"size": 64, "style_scale": 0.25}), _image(200, 100), None)


def test_defaults_and_init_image():
    checked = []
    inputs = prepare_inputs(resolve({"size": 48, "init": "x.png"}), None, None,
                            init=_image(10, 10, 200), check=lambda h, w: checked.append((h, w)))
    h, w = inputs.content.shape[:2]
    assert max(h, w) == 48 and checked == [(h, w)]  # the default photo, checked before resizing
    assert inputs.styles[0].shape == (h, w, 3)  # the generated painting
    assert inputs.init.shape == (h, w, 3) and np.allclose(inputs.init[..., 0], 200 / 255)
