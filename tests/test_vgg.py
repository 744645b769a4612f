"""The network: layer names and shapes, early stop, max vs avg pooling, params as a pytree."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jstyle import layers
from jstyle.vgg import VGG19, conv3x3, extract_features


def test_layer_table():
    assert len(layers.CONV_LAYERS) == 16
    assert len(layers.LAYERS) == 16 * 2 + 5
    assert layers.CONV_CHANNELS["conv1_1"] == (3, 64)
    assert layers.CONV_CHANNELS["conv5_4"] == (512, 512)
    assert layers.channels("relu3_4") == 256
    assert layers.downsampling("relu1_1") == 1
    assert layers.downsampling("pool1") == 2
    assert layers.downsampling("relu5_1") == 16
    assert layers.deepest(["relu5_1", "relu1_1", "relu4_2"]) == "relu5_1"
    with pytest.raises(KeyError, match="valid layers"):
        layers.layer_index("conv6_1")


def test_every_layer_has_its_shape(random_params):
    x = jnp.zeros((2, 64, 96, 3))
    out = extract_features(random_params, x, layers.LAYERS)
    assert list(out) == list(layers.LAYERS)
    for name, F in out.items():
        d = layers.downsampling(name)
        assert F.shape == (2, 64 // d, 96 // d, layers.channels(name)), name


def test_relu_is_rectified_conv(random_params, rng):
    x = jnp.asarray(rng.standard_normal((1, 32, 32, 3)) * 50, jnp.float32)
    out = extract_features(random_params, x, ["conv4_2", "relu4_2"])
    np.testing.assert_allclose(out["relu4_2"], np.maximum(out["conv4_2"], 0), rtol=1e-6)
    assert float(jnp.min(out["conv4_2"])) < 0


def _convolutions(fn, x):
    return str(jax.make_jaxpr(fn)(x)).count("conv_general_dilated")


def test_stops_at_the_deepest_requested_layer(random_params):
    x = jnp.zeros((1, 32, 32, 3))
    count = {
        name: _convolutions(lambda x, n=name: extract_features(random_params, x, [n]), x)
        for name in ("relu1_1", "relu2_1", "relu4_2", "relu5_1", "pool5")
    }
    assert count == {"relu1_1": 1, "relu2_1": 3, "relu4_2": 10, "relu5_1": 13, "pool5": 16}
    # Only the layers up to the deepest are given parameters at init.
    params = VGG19(outputs=("relu2_1", "relu1_1")).init(jax.random.key(0), x)["params"]
    assert sorted(params) == ["conv1_1", "conv1_2", "conv2_1"]


def test_returns_only_what_was_asked(random_params):
    out = extract_features(random_params, jnp.zeros((1, 32, 32, 3)), ["relu3_1", "relu1_1"])
    assert set(out) == {"relu1_1", "relu3_1"}


def test_max_and_avg_pooling(random_params, rng):
    x = jnp.asarray(rng.standard_normal((1, 32, 32, 3)) * 50, jnp.float32)
    avg = extract_features(random_params, x, ["relu1_2", "pool1", "relu2_1"], "avg")
    mx = extract_features(random_params, x, ["relu1_2", "pool1", "relu2_1"], "max")
    np.testing.assert_array_equal(avg["relu1_2"], mx["relu1_2"])  # before the first pooling
    f = np.asarray(avg["relu1_2"][0])
    blocks = f.reshape(16, 2, 16, 2, 64)
    np.testing.assert_allclose(avg["pool1"][0], blocks.mean(axis=(1, 3)), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mx["pool1"][0], blocks.max(axis=(1, 3)), rtol=1e-6)
    assert not np.allclose(avg["relu2_1"], mx["relu2_1"])
    with pytest.raises(ValueError, match="pooling"):
        extract_features(random_params, x, ["pool1"], "median")


@pytest.mark.parametrize("pooling", ["avg", "max"])
def test_pooling_by_reshape_is_flax_pooling(rng, pooling):
    """bfloat16's pooling (a reshape and a reduction) is flax's 2x2, stride 2, VALID
    pooling, odd sizes and leading axes included, and its gradient too; in bfloat16 the
    network's program has no reduce-window left."""
    import flax.linen as nn

    from jstyle.vgg import _pool_by_reshape

    x = jnp.asarray(rng.standard_normal((2, 9, 13, 4)), jnp.float32)
    flax_pool = nn.avg_pool if pooling == "avg" else nn.max_pool

    def ours(x):
        return _pool_by_reshape(x, pooling)

    def theirs(x):
        return flax_pool(x, (2, 2), strides=(2, 2))

    np.testing.assert_allclose(ours(x), theirs(x), rtol=1e-6, atol=1e-6)
    g = jnp.asarray(rng.standard_normal((2, 4, 6, 4)), jnp.float32)
    np.testing.assert_allclose(jax.vjp(ours, x)[1](g)[0], jax.vjp(theirs, x)[1](g)[0],
                               rtol=1e-6, atol=1e-6)
    network = VGG19(outputs=("relu3_1",), pooling=pooling)
    image = jnp.zeros((1, 32, 32, 3), jnp.bfloat16)
    params = network.init(jax.random.PRNGKey(0), image)
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    text = jax.jit(network.apply).lower(params, image).as_text()
    assert "reduce_window" not in text


def test_params_are_a_plain_pytree(random_params):
    assert sorted(random_params) == sorted(layers.CONV_LAYERS)
    for name, (cin, cout) in layers.CONV_CHANNELS.items():
        assert random_params[name]["kernel"].shape == (3, 3, cin, cout)
        assert random_params[name]["bias"].shape == (cout,)
    # A pure function of (params, image): jit and grad with respect to the image.
    def f(x):
        return jnp.sum(extract_features(random_params, x, ["relu2_1"])["relu2_1"])

    g = jax.jit(jax.grad(f))(jnp.ones((1, 16, 16, 3)))
    assert g.shape == (1, 16, 16, 3) and bool(jnp.isfinite(g).all())


def test_real_weights_respond_like_vgg(real_weights, rng):
    """On the real weights, rectified responses are sparse but alive at every style layer."""
    from jstyle.preprocessing import to_network

    image = jnp.asarray(rng.random((1, 64, 64, 3)), jnp.float32)
    x = to_network(image, real_weights.preprocessing)
    out = extract_features(real_weights.params, x, layers.PAPER_STYLE_LAYERS + ("relu4_2",))
    for name, F in out.items():
        active = float(jnp.mean(F > 0))
        assert 0.01 < active < 0.9, (name, active)


def test_conv3x3_derivatives_match_autodiff(rng):
    """conv3x3's hand-written VJP equals lax.conv_general_dilated's own, for input and kernel."""
    x = jnp.asarray(rng.standard_normal((2, 9, 7, 5)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 5, 4)), jnp.float32)
    g = jnp.asarray(rng.standard_normal((2, 9, 7, 4)), jnp.float32)

    def plain(x, k):
        return jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

    np.testing.assert_allclose(conv3x3(x, k), plain(x, k), rtol=1e-5, atol=1e-5)
    ours = jax.vjp(conv3x3, x, k)[1](g)
    theirs = jax.vjp(plain, x, k)[1](g)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_input_gradient_inside_a_loop_uses_library_convolutions(random_params):
    """Inside lax loops XLA:CPU must not fall back to naive loop-nest convolutions (4x slower):
    every convolution of the gradient keeps the HWIO ('01io') kernel layout."""
    def loss(x):
        return jnp.sum(extract_features(random_params, x, ["relu5_1"])["relu5_1"])

    def loop(x):
        return jax.lax.fori_loop(0, 2, lambda i, x: x - jax.grad(loss)(x), x)

    hlo = jax.jit(loop).lower(jnp.zeros((1, 32, 32, 3))).compile().as_text()
    assert "01oi" not in hlo
    assert hlo.count("convolution(") >= 26
