"""Shared fixtures: tiny random networks for fast tests, the real weights when provisioned."""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle.vgg import VGG19

SHARED_IMAGES = Path(__file__).resolve().parents[2] / "shared" / "images"

# Tests patch jstyle's functions (a loss, a halo) and expect the next run to trace them:
# programs kept on disk would be loaded instead. tests/test_programs.py turns them on.
os.environ.setdefault("JSTYLE_PROGRAMS", "off")


@pytest.fixture(scope="session")
def random_params() -> dict:
    """He-initialised VGG-19 parameters: the real architecture, no download."""
    return VGG19(outputs=("pool5",)).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]


@pytest.fixture(scope="session")
def real_weights():
    """The real VGG-19 weights (converted by scripts/convert_vgg_weights.py).

    Skips when they are not provisioned, unless JSTYLE_REQUIRE_WEIGHTS is set
    (CI sets it, so the end-to-end tests can never silently skip there).
    """
    from jstyle.weights import default_weights_path, load_weights

    path = default_weights_path()
    if not path.is_file():
        message = f"real VGG-19 weights not at {path}: run scripts/convert_vgg_weights.py"
        if os.environ.get("JSTYLE_REQUIRE_WEIGHTS"):
            pytest.fail(message)
        pytest.skip(message)
    return load_weights(path)


@pytest.fixture(scope="session")
def shared_images() -> Path:
    """../shared/images (the paper's photo and paintings) when present; developers and CI only."""
    if not (SHARED_IMAGES / "tubingen.jpg").is_file():
        pytest.skip(f"{SHARED_IMAGES} not present (it is not part of the product)")
    return SHARED_IMAGES


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
