"""The paper's algorithm on the real VGG-19 weights, at a tiny size."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import default_images
from jstyle.config import Config
from jstyle.images import fit_longest, from_array, read_image, resize_to, to_array
from jstyle.objective import Objective, compute_targets, loss_terms
from jstyle.optimize import make_solver
from jstyle.transfer import initial_image, stylize

SIZE = 96


def _pair(shared: bool, shared_images=None):
    if shared:
        content = to_array(fit_longest(read_image(shared_images / "tubingen.jpg"), SIZE))
        h, w = content.shape[:2]
        style = to_array(resize_to(read_image(shared_images / "starry_night.jpg"), h, w))
    else:
        content = to_array(fit_longest(from_array(default_images.default_content_image()), SIZE))
        style = default_images.swirl_painting(*content.shape[:2])
    return content, style


@pytest.fixture(params=["default-images", "paper-images"])
def images(request):
    if request.param == "paper-images":
        return _pair(True, request.getfixturevalue("shared_images"))
    return _pair(False)


@pytest.mark.slow
def test_the_paper_on_real_weights(real_weights, images):
    content, style = images
    config = Config()  # the paper's layers, weights, pooling, init and optimiser
    objective = Objective(config.content_layers, config.style_layers, config.content_weight,
                          config.style_weight, config.tv_weight, config.pooling,
                          real_weights.preprocessing)
    solver = make_solver(config.optimizer, lbfgs_backend=config.lbfgs_backend,
                         lbfgs_memory=config.lbfgs_memory)
    result = stylize(real_weights.params, content, [style], objective, solver,
                     iterations=60, init="noise", seed=0)

    params = real_weights.params
    targets = compute_targets(params, jnp.asarray(content), [jnp.asarray(style)], objective)
    noise = initial_image("noise", jnp.asarray(content), jnp.asarray(style), 0)
    start = loss_terms(noise, params, targets, objective)
    photo = loss_terms(jnp.asarray(content), params, targets, objective)
    end = result.terms

    assert np.isfinite(result.history).all()
    assert end["total"] <= start["total"] / 10, (start["total"], end["total"])
    for name, _ in config.style_layers:
        # The output's Gram matrices moved toward the painting's: closer than the noise's
        # were, and closer than the photo's own.
        assert end[f"style/{name}"] < float(start[f"style/{name}"]), name
        assert end[f"style/{name}"] < float(photo[f"style/{name}"]), name
    assert np.isfinite(result.image).all()
