"""Assertions and fixtures' values shared by the test modules."""

from __future__ import annotations

import pytest

from jstyle.errors import JStyleError
from jstyle.layers import PAPER_STYLE_LAYERS
from jstyle.objective import Objective
from jstyle.preprocessing import CAFFE

#: The paper's objective (eq. 7 with alpha/beta = 1e-3), for the tests' tiny random networks.
PAPER_OBJECTIVE = Objective(
    content_layers=(("relu4_2", 1.0),),
    style_layers=tuple((n, 0.2) for n in PAPER_STYLE_LAYERS),
    content_weight=1.0,
    style_weight=1e3,
    tv_weight=0.0,
    pooling="avg",
    preprocessing=CAFFE,
)


def one_line_error(call, *fragments: str) -> str:
    """``call()`` raises one :class:`JStyleError` line holding every fragment; its message."""
    with pytest.raises(JStyleError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "\r" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def file_loss(path, record: dict) -> float:
    """Eq. 7 of an image file a run wrote (PNG or TIFF, read at its full depth), recomputed
    from its sidecar's config and inputs: what ``delivered_losses`` must say."""
    import jax.numpy as jnp

    from jstyle.config import resolve
    from jstyle.images import read_image, to_array
    from jstyle.inputs import load_inputs
    from jstyle.objective import compute_targets, loss_terms
    from jstyle.pipeline import load_cached_weights, objective_and_solver

    config = resolve(record["config"])
    weights = load_cached_weights(record["weights"]["path"])
    objective, _ = objective_and_solver(config, weights.preprocessing)
    inputs = load_inputs(config, check=lambda h, w: None)
    targets = compute_targets(weights.params, jnp.asarray(inputs.content),
                              [jnp.asarray(s) for s in inputs.styles], objective)
    image = jnp.asarray(to_array(read_image(path, deep=True)))
    return float(loss_terms(image, weights.params, targets, objective)["total"])
