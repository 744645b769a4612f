"""jstyle.stylize: the command line's run, in memory, on arrays and PIL images."""

import numpy as np
import pytest
from PIL import Image

import jstyle
from jstyle.errors import JStyleError


@pytest.fixture
def weights_env(real_weights, monkeypatch):
    monkeypatch.setenv("JSTYLE_WEIGHTS", str(real_weights.path))


def test_arrays_in_array_out(weights_env, rng):
    content = rng.random((40, 60, 3), dtype=np.float32)
    styles = [rng.random((20, 20, 3), dtype=np.float32),
              (rng.random((30, 30)) * 255).astype(np.uint8)]  # grayscale uint8
    out = jstyle.stylize(content, styles, size=48, iterations=3, style_blend_weights=[2, 1])
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (32, 48, 3) and out.min() >= 0.0 and out.max() <= 1.0


def test_pil_in_pil_out_with_an_init_image(weights_env):
    photo = Image.new("RGBA", (64, 32), (200, 100, 50, 255))
    out = jstyle.stylize(photo, None, init=Image.new("RGB", (5, 5), "gray"), size=32,
                         iterations=2, optimizer="adam")
    assert isinstance(out, Image.Image) and out.size == (32, 16) and out.mode == "RGB"


def test_mistakes_are_one_line_errors(weights_env, rng):
    image = rng.random((32, 32, 3), dtype=np.float32)
    with pytest.raises(JStyleError, match=r"stylize\(\) writes no file"):
        jstyle.stylize(image, image, output="x.png")
    with pytest.raises(JStyleError, match=r"must be an image .* shape \(32, 32, 5\)"):
        jstyle.stylize(np.zeros((32, 32, 5)), image, size=32)
    with pytest.raises(JStyleError, match="unknown config key 'sise'"):
        jstyle.stylize(image, image, sise=32)
    with pytest.raises(JStyleError, match="has 1 weights for 2 style image"):
        jstyle.stylize(image, [image, image], style_blend_weights=[1])


def test_preserve_color(weights_env, rng):
    from jstyle.color import rgb_to_yiq

    content = np.full((32, 48, 3), (0.8, 0.4, 0.2), np.float32) + \
        rng.normal(0, 0.05, (32, 48, 3)).astype(np.float32)
    style = rng.random((32, 48, 3), dtype=np.float32)
    kept = jstyle.stylize(content, style, size=48, iterations=3, preserve_color="luminance")
    as_read = np.floor(np.clip(content, 0, 1) * 255 + 0.5) / 255  # arrays pass through 8 bits
    iq_out, iq_content = rgb_to_yiq(kept)[..., 1:], rgb_to_yiq(as_read)[..., 1:]
    inside = (kept > 0.01).all(-1) & (kept < 0.99).all(-1)  # where nothing was clipped
    np.testing.assert_allclose(iq_out[inside], iq_content[inside], atol=1e-3)
    matched = jstyle.stylize(content, style, size=48, iterations=3, preserve_color="histogram")
    assert matched.shape == (32, 48, 3) and np.isfinite(matched).all()


def test_init_by_name_is_the_init_key_not_a_file(weights_env, rng):
    content = rng.random((32, 32, 3), dtype=np.float32)
    style = rng.random((32, 32, 3), dtype=np.float32)
    start = jstyle.stylize(content, style, init="content", size=32, iterations=1,
                           optimizer="adam", learning_rate=1e-6)
    np.testing.assert_allclose(start, np.floor(content * 255 + 0.5) / 255, atol=1e-3)
    noise = jstyle.stylize(content, style, init="noise", size=32, iterations=1)
    assert np.abs(noise - start).mean() > 0.1
