"""Configs: defaults are the paper's, the shipped files resolve, and every mistake is one line."""

import re
from pathlib import Path

import pytest

from jstyle.config import FIELDS, Config, parse_override, read_yaml, resolve
from jstyle.errors import JStyleError
from tests.helpers import one_line_error

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_are_the_paper():
    c = Config()
    assert c.content_layers == (("relu4_2", 1.0),)
    assert c.style_layers == tuple((f"relu{b}_1", 0.2) for b in range(1, 6))
    assert c.content_weight / c.style_weight == pytest.approx(1e-3)
    assert (c.pooling, c.init, c.optimizer, c.tv_weight) == ("avg", "noise", "lbfgs", 0.0)


def test_the_defaults_differ_from_paper_yaml_where_the_readme_says():
    """The README: paper.yaml differs from the defaults in the network and alpha/beta."""
    paper = resolve(read_yaml(CONFIGS / "paper.yaml")).to_dict()
    defaults = Config().to_dict()
    assert {k for k in defaults if defaults[k] != paper[k]} == {
        "weights", "style_weight", "output"}


def test_paper_yaml_is_the_paper_as_written():
    """The paper's layers, pooling, init and optimiser, on its normalised network; alpha/beta
    is re-struck for eqs. 1 and 4 as printed (README), and quick.yaml keeps that balance at
    256 px by scaling beta with the pixel count."""
    c = resolve(read_yaml(CONFIGS / "paper.yaml"))
    d = Config()
    for key in ("content_layers", "style_layers", "pooling", "init", "optimizer", "tv_weight"):
        assert getattr(c, key) == getattr(d, key), key
    assert (c.size, c.iterations, c.weights) == (512, 500, "vgg19-normalized")
    assert c.content_weight / c.style_weight == pytest.approx(2e-7)
    q = resolve(read_yaml(CONFIGS / "quick.yaml"))
    assert (q.size, q.weights) == (256, "vgg19-normalized")
    assert q.style_weight == pytest.approx(c.style_weight * (q.size / c.size) ** 2)
    for key in ("content_layers", "style_layers", "pooling", "init", "content_weight"):
        assert getattr(q, key) == getattr(c, key), key


def test_gatys_code_yaml_is_the_authors_released_settings():
    """Their losses (means over Gram matrices divided by M) folded into eqs. 1 and 4: style
    weights 1e3/N_l^2 times 4, alpha = 2 / (N M) at relu4_2 for a 4:3 image at 512 px."""
    from jstyle.layers import channels

    c = resolve(read_yaml(CONFIGS / "gatys-code.yaml"))
    assert (c.pooling, c.init, c.optimizer, c.iterations, c.size) == (
        "max", "content", "lbfgs", 500, 512)
    assert c.weights == "vgg19-normalized"
    assert c.content_layers == (("relu4_2", 1.0),)
    assert c.style_weight == 1.0
    for name, weight in c.style_layers:
        assert weight == pytest.approx(4 * 1e3 / channels(name) ** 2), name
    assert [n for n, _ in c.style_layers] == [f"relu{b}_1" for b in range(1, 6)]
    assert c.content_weight == pytest.approx(2 / (channels("relu4_2") * (512 // 8) * (384 // 8)))


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_resolves(path):
    resolve(read_yaml(path))


def test_exponents_without_a_dot_are_numbers():
    """YAML 1.1 reads 1e5 as a string; a config means the number."""
    assert resolve({"style_weight": "1e5"}).style_weight == 1e5
    assert resolve(dict([parse_override("content_weight=2E-3")])).content_weight == 2e-3
    assert resolve({"iterations": "1e3"}).iterations == 1000
    with pytest.raises(JStyleError, match="must be a finite number"):
        resolve({"style_weight": "inf"})


def test_layers_as_list_or_mapping():
    c = resolve({"style_layers": ["relu1_1", "relu2_1"], "content_layers": "relu3_2"})
    assert c.style_layers == (("relu1_1", 0.5), ("relu2_1", 0.5))
    assert c.content_layers == (("relu3_2", 1.0),)
    c = resolve({"style_layers": {"relu1_1": 3, "conv2_1": 1}})
    assert c.style_layers == (("relu1_1", 3.0), ("conv2_1", 1.0))


def test_style_path_or_list():
    assert resolve({"style": "a.jpg"}).style == ("a.jpg",)
    assert resolve({"style": ["a.jpg", "b.png"]}).style == ("a.jpg", "b.png")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sise": 256}, "unknown config key 'sise' (did you mean 'size'?)"),
        ({"style_layers": ["relu9_1"]}, "unknown layer 'relu9_1'"),
        ({"content_layers": {"conv4_2x": 1}}, "valid layers: conv1_1"),
        ({"size": 0}, "must be at least 1"),
        ({"size": 20}, "too small for the deepest requested layer; use at least 32"),
        ({"iterations": 0}, "'iterations': must be at least 1"),
        ({"iterations": 2.5}, "whole number"),
        ({"iterations": "many"}, "expected a number"),
        ({"style_weight": -1}, "must be at least 0.0"),
        ({"style_layers": {"relu1_1": -0.5}}, "'style_layers.relu1_1': must be at least 0.0"),
        ({"learning_rate": 0}, "greater than 0.0"),
        ({"optimizer": "sgd"}, "must be one of lbfgs, adam"),
        ({"pooling": "median"}, "must be one of avg, max"),
        ({"lbfgs_backend": "scipy"}, "must be one of jstyle, jaxopt"),
        ({"lbfgs_backend": "optax"}, "'optax' is gone"),
        ({"line_search": "zoom"}, "zoom is not offered by lbfgs_backend jstyle"),
        ({"line_search": "wolfe"}, "must be one of backtracking, none, zoom"),
        ({"bounds": "clip"}, "must be one of box, none"),
        ({"noise_amplitude": 2}, "must be at most 1"),
        ({"noise_amplitude": -0.1}, "must be at least 0.0"),
        ({"style_layers": []}, "needs at least one layer"),
        ({"style": [1, 2]}, "expected a path or a list of paths"),
        ({"size": True}, "expected a number"),
    ],
)
def test_bad_values_are_one_clear_line(values, message):
    with pytest.raises(JStyleError) as info:
        resolve(values)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("size: 256\nstyle: [a.jpg\n")
    with pytest.raises(JStyleError, match=r"not valid YAML at line \d+, column \d+"):
        read_yaml(bad)
    evil = tmp_path / "evil.yaml"
    evil.write_text("size: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(JStyleError, match="tags that build Python objects are refused"):
        read_yaml(evil)
    assert not Path("pwned").exists()
    listy = tmp_path / "list.yaml"
    listy.write_text("- size\n")
    with pytest.raises(JStyleError, match="must hold a mapping"):
        read_yaml(listy)
    with pytest.raises(JStyleError, match="config file not found"):
        read_yaml(tmp_path / "missing.yaml")
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_yaml(empty) == {}


def test_overrides_parse_as_yaml():
    assert parse_override("size=256") == ("size", 256)
    assert parse_override("style_layers=[relu1_1, relu2_1]") == (
        "style_layers", ["relu1_1", "relu2_1"])
    assert parse_override("output=out/a b.png") == ("output", "out/a b.png")
    assert parse_override("weights=") == ("weights", None)
    with pytest.raises(JStyleError, match="key=value"):
        parse_override("size")


def test_every_key_has_help():
    assert all(f.metadata["help"] for f in FIELDS.values())


def test_to_dict_round_trips():
    c = resolve({"style": ["a.jpg"], "size": 64, "style_layers": {"relu1_1": 1.0}})
    assert resolve(c.to_dict()) == c


def test_style_blend_weights_are_normalised_and_checked():
    c = resolve({"style": ["a.jpg", "b.jpg"], "style_blend_weights": [3, 1]})
    assert c.style_blend == (0.75, 0.25)
    assert resolve({"style": ["a.jpg", "b.jpg"]}).style_blend is None  # equal weights
    assert resolve({"style_blend_weights": [2]}).style_blend == (1.0,)  # the default style
    with pytest.raises(JStyleError, match="has 1 weights for 2 style image"):
        resolve({"style": ["a.jpg", "b.jpg"], "style_blend_weights": [1]})
    with pytest.raises(JStyleError, match="must not all be 0"):
        resolve({"style": ["a.jpg"], "style_blend_weights": [0]})
    with pytest.raises(JStyleError, match=r"style_blend_weights\[1\]': must be at least 0"):
        resolve({"style": ["a.jpg", "b.jpg"], "style_blend_weights": [1, -1]})


def test_style_scale():
    assert Config().style_scale == 1.0  # the paper: the content's size
    assert resolve({"style_scale": 0.5}).style_scale == 0.5
    with pytest.raises(JStyleError, match="greater than 0"):
        resolve({"style_scale": 0})


def test_preserve_color_choices():
    assert Config().preserve_color == "none"
    assert resolve({"preserve_color": "luminance"}).preserve_color == "luminance"
    with pytest.raises(JStyleError, match="must be one of none, luminance, histogram"):
        resolve({"preserve_color": "yes"})


def test_coarse_sizes():
    c = resolve({"size": 512, "coarse_sizes": [128, 256], "coarse_iterations": 50})
    assert c.coarse_sizes == (128, 256) and c.stage_iterations == 50
    assert resolve({"iterations": 7}).stage_iterations == 7
    with pytest.raises(JStyleError, match="must grow, smallest first, and stay below size"):
        resolve({"size": 256, "coarse_sizes": [256]})
    with pytest.raises(JStyleError, match="must grow"):
        resolve({"size": 512, "coarse_sizes": [256, 128]})
    with pytest.raises(JStyleError, match="too small for the deepest requested layer"):
        resolve({"size": 512, "coarse_sizes": [16]})


def test_sharding_remat_and_winograd_keys():
    c = resolve({"sharding": "spatial", "remat": True, "winograd": False})
    assert (c.sharding, c.remat, c.winograd) == ("spatial", True, False)
    assert resolve({}).winograd is True
    for values, fragment in [
        ({"sharding": "rows"}, "must be one of none, batch, spatial"),
        ({"remat": "yes"}, "expected true or false"),
        ({"winograd": "off"}, "expected true or false"),
        ({"sharding": "batch", "masks": ["m.png"]}, "masks"),
        ({"sharding": "batch", "coarse_sizes": [128]}, "drop coarse_sizes"),
        ({"sharding": "batch", "preserve_color": "luminance"}, "preserve_color"),
    ]:
        with pytest.raises(JStyleError, match=fragment):
            resolve(values)


def test_tile_size_key():
    assert Config().tile_size == "auto"
    assert resolve({"tile_size": 0}).tile_size == 0
    assert resolve({"tile_size": "512"}).tile_size == 512  # as --set gives it
    assert resolve({"tile_size": 256, "masks": ["m.png"], "style": ["s.jpg"]}).tile_size == 256
    for values, fragment in [
        ({"tile_size": "big"}, "must be 0 (off), auto or a tile size in pixels"),
        ({"tile_size": 32}, "at least 64 px"),
        ({"tile_size": -1}, "at least 0"),
        ({"tile_size": 256, "style_loss": "wasserstein"}, "not a sum over positions"),
    ]:
        with pytest.raises(JStyleError, match=re.escape(fragment)):
            resolve(values)
    # auto stands aside where tiles cannot go
    assert resolve({"style_loss": "mrf"}).tile_size == "auto"
    assert resolve({"sharding": "spatial"}).tile_size == "auto"


def test_a_config_states_only_what_differs_from_its_base(tmp_path):
    """``base:`` reads the named file first (relative to the config's folder); the config's
    own keys win, and a base may have its own base."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "root.yaml").write_text("size: 300\niterations: 7\npooling: max\n")
    (tmp_path / "sub" / "middle.yaml").write_text("base: ../root.yaml\niterations: 9\n")
    (tmp_path / "sub" / "leaf.yaml").write_text("base: middle.yaml\npooling: avg\n")
    c = resolve(read_yaml(tmp_path / "sub" / "leaf.yaml"))
    assert (c.size, c.iterations, c.pooling) == (300, 9, "avg")
    quick = read_yaml(CONFIGS / "quick.yaml")
    paper = read_yaml(CONFIGS / "paper.yaml")
    assert {k for k in quick if quick[k] != paper.get(k)} == {
        "size", "iterations", "style_weight", "output"}


@pytest.mark.parametrize("text, fragment", [
    ("base: missing.yaml\n", "config file not found"),
    ("base: [a.yaml]\n", "base must name a YAML config file"),
    ("base: loop.yaml\n", "a config cannot be its own base"),
])
def test_a_bad_base_is_one_line(tmp_path, text, fragment):
    (tmp_path / "loop.yaml").write_text(text)
    with pytest.raises(JStyleError, match=fragment):
        read_yaml(tmp_path / "loop.yaml")


def test_a_weights_file_named_like_a_home_folder_is_a_file(tmp_path, monkeypatch):
    """``~draft.h5`` names no user: it is a (missing) file, not a crash (Hypothesis found
    Path.expanduser raising here)."""
    monkeypatch.chdir(tmp_path)
    assert resolve({"weights": "~draft.h5"}).weights == "~draft.h5"
    from jstyle.weights.provision import ensure_weights

    with pytest.raises(JStyleError, match="does not exist"):
        ensure_weights("~draft.h5")


def test_style_loss_is_a_name_a_list_or_a_mapping():
    assert resolve({}).style_loss == (("gram", 1.0),)
    assert resolve({"style_loss": "wasserstein"}).style_loss == (("wasserstein", 1.0),)
    assert resolve({"style_loss": ["gram", "histogram"]}).style_loss == (
        ("gram", 1.0), ("histogram", 1.0))
    both = resolve({"style_loss": {"gram": 1.0, "mean_std": 0.5}})
    assert both.style_loss == (("gram", 1.0), ("mean_std", 0.5))
    assert resolve(both.to_dict()).style_loss == both.style_loss


@pytest.mark.parametrize(("values", "message"), [
    ({"style_loss": "wasserstien"}, "did you mean 'wasserstein'"),
    ({"style_loss": {"gram": 0.0}}, "needs at least one loss with a weight above 0"),
    ({"style_loss": {"gram": -1}}, "style_loss.gram"),
    ({"style_loss": 3}, "expected a loss name or a mapping"),
    ({"style_loss": "mean_std", "masks": ["m.png"]}, "masks need style_loss: gram"),
    ({"style_loss": "sliced_wasserstein", "style": ["a.jpg", "b.jpg"]},
     "matches one style image's distribution, and 2 are given"),
    ({"redraw_every": 50}, "only sliced_wasserstein, mrf, remd draw anything"),
    ({"redraw_every": -1, "style_loss": "sliced_wasserstein"}, "redraw_every"),
])
def test_style_loss_refusals_are_one_line(values, message):
    one_line_error(lambda: resolve(values), message)


def test_redraw_every_takes_the_losses_that_draw():
    assert resolve({"style_loss": {"gram": 1, "sliced_wasserstein": 1},
                    "redraw_every": 64}).redraw_every == 64
    assert resolve({}).redraw_every == 0


def test_blending_style_losses_take_several_styles():
    for name in ("gram", "mean_std", "wasserstein"):
        config = resolve({"style_loss": name, "style": ["a.jpg", "b.jpg"],
                          "style_blend_weights": [1, 3]})
        assert config.style_loss == ((name, 1.0),)


def test_mrf_needs_a_3x3_patch_at_the_deepest_layer():
    assert resolve({"style_loss": "mrf", "size": 48}).smallest_side == 48
    one_line_error(lambda: resolve({"style_loss": "mrf", "size": 40}),
                   "(style_loss mrf: a 3x3 patch); use at least 48")


@pytest.mark.parametrize(("values", "image_format", "bits"), [
    ({}, "png8", 8),  # out/stylized.png
    ({"output": "print.tif"}, "tiff16", 16),
    ({"output": "print.TIFF"}, "tiff16", 16),
    ({"output_format": "png16"}, "png16", 16),
    ({"output": "a.png", "output_format": "png8"}, "png8", 8),
    ({"output": "a.tiff", "output_format": "tiff16"}, "tiff16", 16),
])
def test_the_output_format_follows_the_extension_unless_given(values, image_format, bits):
    config = resolve(values)
    assert (config.image_format, config.image_bits) == (image_format, bits)
    assert config.to_dict()["output_format"] == values.get("output_format")


@pytest.mark.parametrize(("values", "fragments"), [
    ({"output_format": "tiff16"}, ["config key 'output_format': tiff16 writes .tif/.tiff",
                                   "name the output out/stylized.tif", "png8 or png16"]),
    ({"output": "a.tif", "output_format": "png16"}, ["png16 writes .png files",
                                                    "name the output a.png", "tiff16"]),
    ({"output": "a.jpg"}, ["config key 'output': a.jpg must end in .png", ".tif/.tiff"]),
    ({"output": "a", "output_format": "png8"}, ["ends in no extension", "name the output a.png"]),
    ({"output_format": "tiff8"}, ["must be one of png8, png16, tiff16"]),
])
def test_an_output_that_does_not_fit_its_format_is_one_line(values, fragments):
    one_line_error(lambda: resolve(values), *fragments)
