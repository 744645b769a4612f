"""The PyTorch reference (jstyle.bench.torch_reference) computes exactly jstyle's objective.

Loss terms and gradients of ``jax.grad(total_objective)`` and of the torch twin
agree to 1e-4 relative, on the real weights and on random ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from jstyle.bench.torch_reference import (  # noqa: E402 - after the importorskip
    TorchObjective,
    TorchVGG19,
    torch_lbfgs,
    value_and_grad,
)
from jstyle.config import Config  # noqa: E402
from jstyle.objective import (  # noqa: E402
    Objective,
    compute_targets,
    loss_terms,
    total_objective,
)
from jstyle.preprocessing import CAFFE, TORCHVISION, Preprocessing, to_network  # noqa: E402
from jstyle.vgg import extract_features  # noqa: E402

RTOL = 1e-4


def _objective(prep: Preprocessing, pooling: str = "avg", tv_weight: float = 0.0) -> Objective:
    """The paper's objective (Config's defaults), with the given pooling and TV weight."""
    c = Config()
    return Objective(c.content_layers, c.style_layers, c.content_weight, c.style_weight,
                     tv_weight, pooling, prep)


def _check_parity(params, objective, content, styles, x, style_blend=None) -> None:
    jax_targets = compute_targets(params, jnp.asarray(content), [jnp.asarray(s) for s in styles],
                                  objective, style_blend)
    jax_terms = {k: float(v) for k, v in
                 loss_terms(jnp.asarray(x), params, jax_targets, objective).items()}
    jax_grad = np.asarray(jax.grad(total_objective)(jnp.asarray(x), params, jax_targets, objective))

    ref = TorchObjective(params, objective)
    ref.set_targets(content, styles, style_blend)
    for name, P in jax_targets.content.items():
        np.testing.assert_allclose(ref.content_targets[name][0].permute(1, 2, 0).numpy(), P,
                                   rtol=RTOL, atol=RTOL * float(jnp.abs(P).max()), err_msg=name)
    for name, A in jax_targets.style.items():
        np.testing.assert_allclose(ref.style_targets[name].numpy(), A,
                                   rtol=RTOL, atol=RTOL * float(jnp.abs(A).max()), err_msg=name)

    with torch.no_grad():
        torch_terms = {k: float(v) for k, v in ref.loss_terms(torch.from_numpy(x)).items()}
    assert set(torch_terms) == set(jax_terms)
    for key, value in jax_terms.items():
        np.testing.assert_allclose(torch_terms[key], value, rtol=RTOL, err_msg=key)
    assert jax_terms["total"] > 0

    total, grad = value_and_grad(ref, x)
    np.testing.assert_allclose(total, jax_terms["total"], rtol=RTOL)
    assert grad.shape == x.shape and grad.dtype == np.float32
    np.testing.assert_allclose(grad, jax_grad, rtol=RTOL, atol=RTOL * np.abs(jax_grad).max())


@pytest.mark.parametrize(("pooling", "tv_weight"), [("avg", 0.0), ("max", 1e5)],
                         ids=["paper", "max-pool+tv"])
def test_parity_on_real_weights(real_weights, pooling, tv_weight):
    rng = np.random.default_rng(1)
    content, style, x = (rng.random((48, 64, 3), dtype=np.float32) for _ in range(3))
    objective = _objective(real_weights.preprocessing, pooling, tv_weight)
    _check_parity(real_weights.params, objective, content, [style], x)


@pytest.mark.parametrize("prep", [CAFFE, TORCHVISION], ids=["caffe", "torchvision"])
def test_parity_on_random_weights(random_params, prep):
    """Odd sizes (floor pooling), two blended styles, both input conventions, TV on."""
    rng = np.random.default_rng(2)
    content, style_a, style_b, x = (rng.random((36, 44, 3), dtype=np.float32) for _ in range(4))
    objective = _objective(prep, "avg", tv_weight=10.0)
    _check_parity(random_params, objective, content, [style_a, style_b], x, style_blend=(0.3, 0.7))


def test_network_matches_flax_and_stops_early(random_params):
    layers = ["conv1_1", "relu1_1", "pool1", "conv2_2", "relu2_2"]
    rng = np.random.default_rng(3)
    x = to_network(rng.random((1, 20, 28, 3), dtype=np.float32), CAFFE)
    for pooling in ("avg", "max"):
        net = TorchVGG19(random_params, layers, pooling)
        assert "conv2_2_weight" in net.state_dict() and "conv3_1_weight" not in net.state_dict()
        with torch.no_grad():
            out = net(torch.tensor(np.asarray(x)).permute(0, 3, 1, 2))
        expected = extract_features(random_params, x, layers, pooling)
        assert list(out) == layers
        assert float(out["conv1_1"].min()) < 0  # the pre-activation, not rectified in place
        for name in layers:
            got = out[name].permute(0, 2, 3, 1).numpy()
            scale = float(jnp.abs(expected[name]).max())
            np.testing.assert_allclose(got, expected[name], rtol=RTOL, atol=RTOL * scale,
                                       err_msg=f"{pooling} {name}")


@pytest.mark.parametrize("line_search", ["strong_wolfe", None])
def test_torch_lbfgs_smoke(random_params, line_search):
    rng = np.random.default_rng(4)
    content, style, x0 = (rng.random((32, 32, 3), dtype=np.float32) for _ in range(3))
    ref = TorchObjective(random_params, _objective(CAFFE))
    ref.set_targets(content, [style])
    start, _ = value_and_grad(ref, x0)
    iterations = 4
    result = torch_lbfgs(ref, x0, iterations, memory=5, line_search=line_search)
    assert set(result) >= {"image", "history", "evaluations", "seconds", "final_loss"}
    assert len(result["history"]) == iterations
    assert result["final_loss"] == result["history"][-1]
    assert result["image"].shape == x0.shape
    np.testing.assert_allclose(value_and_grad(ref, result["image"])[0], result["final_loss"],
                               rtol=1e-6)
    if line_search is None:
        # the start, then the one point each iteration moves to; none evaluated twice
        assert result["evaluations"] == iterations + 1
    else:
        assert result["evaluations"] >= iterations
        assert result["final_loss"] < start
        assert np.all(np.diff(result["history"]) <= 0)
