"""One transfer on one device (jstyle.transfer): its start, its stop on a non-finite loss,
its interrupt, and the blend of several styles."""

import numpy as np
import pytest

from jstyle.optimize import LBFGS, Adam
from jstyle.options import NOISE_AMPLITUDE
from jstyle.transfer import initial_image, stylize
from tests.helpers import PAPER_OBJECTIVE

OBJECTIVE = PAPER_OBJECTIVE


def _images(rng, h=32, w=48):
    return [rng.random((h, w, 3), dtype=np.float32) for _ in range(3)]


def test_initial_image(rng):
    content, style, _ = _images(rng)
    noise = initial_image("noise", content, style, seed=3)
    assert noise.shape == content.shape and 0.0 <= float(noise.min()) < float(noise.max()) <= 1.0
    np.testing.assert_array_equal(noise, initial_image("noise", content, style, seed=3))
    assert not np.array_equal(noise, initial_image("noise", content, style, seed=4))
    np.testing.assert_array_equal(initial_image("content", content, style, 0), content)
    np.testing.assert_array_equal(initial_image("style", content, style, 0), style)
    np.testing.assert_array_equal(initial_image(style, content, content, 0), style)
    with pytest.raises(ValueError):
        initial_image(style[:4], content, style, 0)


def test_noise_amplitude_is_the_spread_around_grey(rng):
    content, style, _ = _images(rng)
    full = np.asarray(initial_image("noise", content, style, 3, noise_amplitude=1.0))
    quiet = np.asarray(initial_image("noise", content, style, 3, noise_amplitude=0.1))
    assert full.min() < 0.05 and full.max() > 0.95
    np.testing.assert_allclose(quiet, 0.5 + 0.1 * (full - 0.5), atol=1e-6)
    assert quiet.min() >= 0.45 and quiet.max() <= 0.55
    default = np.asarray(initial_image("noise", content, style, 3))
    np.testing.assert_allclose(default, 0.5 + NOISE_AMPLITUDE * (full - 0.5), atol=1e-6)


def test_a_non_finite_loss_stops_and_keeps_the_last_finite_image(random_params, rng):
    import dataclasses

    content, style, _ = _images(rng)
    exploding = dataclasses.replace(OBJECTIVE, style_weight=1e38)  # float32 overflows to inf
    result = stylize(random_params, content, [style], exploding, LBFGS(5), iterations=6,
                     init="content")
    assert result.stopped is not None
    assert "NaN or infinite at iteration 1" in result.stopped and "style" in result.stopped
    assert result.history == []
    np.testing.assert_array_equal(result.image, content)  # never left the last finite image


def test_interrupt_returns_the_work_done(random_params, rng):
    from jstyle.transfer import Interrupted

    content, style, _ = _images(rng)

    def stop_at_4(progress):
        if progress.iteration >= 4:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        stylize(random_params, content, [style], OBJECTIVE, Adam(0.05), iterations=10,
                save_every=2, on_progress=stop_at_4)
    result = info.value.result
    assert len(result.history) == 4
    assert result.stopped == "interrupted after iteration 4"
    assert np.isfinite(result.image).all() and not np.array_equal(result.image, content)
    assert isinstance(info.value, KeyboardInterrupt)


def test_stylize_blends_styles_with_the_given_weights(random_params, rng):
    content, s1, s2 = _images(rng)
    only_first = stylize(random_params, content, [s1, s2], OBJECTIVE, Adam(0.05), iterations=1,
                         init="content", style_blend=[1.0, 0.0])
    first = stylize(random_params, content, [s1], OBJECTIVE, Adam(0.05), iterations=1,
                    init="content")
    assert only_first.terms["style"] == pytest.approx(first.terms["style"], rel=1e-5)
