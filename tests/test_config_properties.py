"""Property tests of config.resolve: valid values normalise, every bad value is one line naming it.

Values are drawn from what ``yaml.safe_load`` can produce (None, bools, ints of any size,
floats with NaN and infinities, strings, dates, bytes, lists, mappings), since configs and
``--set KEY=VALUE`` overrides are YAML.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import one_line_error
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from jstyle.config import FIELDS, MAX_WEIGHT, Config, resolve
from jstyle.errors import JStyleError
from jstyle.layers import LAYERS

PROPERTY = settings(max_examples=25, deadline=None)

#: Whole-number keys and their minimum.
INT_KEYS: dict[str, int] = {"size": 1, "iterations": 1, "lbfgs_memory": 1, "seed": 0,
                            "save_every": 0}
#: Real-number keys; learning_rate must be above 0, the others at least 0.
FLOAT_KEYS: tuple[str, ...] = ("content_weight", "style_weight", "tv_weight", "learning_rate")
CHOICE_KEYS: dict[str, tuple[str, ...]] = {
    k: tuple(f.metadata["choices"]) for k, f in FIELDS.items() if f.metadata.get("choices")
}
LAYER_KEYS: tuple[str, ...] = ("content_layers", "style_layers")
#: A size large enough for every layer, so the size check never interferes with layer tests.
BIG = 512

scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
           | st.dates() | st.binary(max_size=4))
yaml_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
def _float_text(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


non_numbers = yaml_values.filter(
    lambda v: (isinstance(v, bool) or not isinstance(v, (int, float))) and not _float_text(v))
finite = st.floats(allow_nan=False, allow_infinity=False)
#: Valid weights: finite, non-negative, at most config.MAX_WEIGHT.
weight = st.floats(min_value=0.0, max_value=MAX_WEIGHT, allow_nan=False)


def refused(values: dict[str, Any], *fragments: str) -> str:
    """``resolve(values)`` raises one JStyleError line holding every fragment."""
    return one_line_error(lambda: resolve(values), *fragments)


# --- valid values ---------------------------------------------------------------------------


@PROPERTY
@given(st.sampled_from(sorted(INT_KEYS)), st.integers(0, 10**12), st.booleans())
@example("seed", 0, False)
@example("size", 10**12, True)
def test_whole_numbers_normalise_to_int(key: str, value: int, as_float: bool) -> None:
    value = max(value, INT_KEYS[key], 32 if key == "size" else 0)  # 32 px: the paper's layers
    assume(not as_float or value < 2**53)  # exactly representable
    config = resolve({key: float(value) if as_float else value})
    assert getattr(config, key) == value and type(getattr(config, key)) is int


@PROPERTY
@given(st.sampled_from(FLOAT_KEYS), weight | st.integers(0, 10**30))
@example("learning_rate", 5e-324)
@example("style_weight", 0)
def test_real_numbers_normalise_to_float(key: str, value: float) -> None:
    assume(key != "learning_rate" or value > 0)
    got = getattr(resolve({key: value}), key)
    assert type(got) is float and got == float(value)


@PROPERTY
@given(st.sampled_from(sorted(CHOICE_KEYS)), st.data())
def test_choices(key: str, data: st.DataObject) -> None:
    value = data.draw(st.sampled_from(CHOICE_KEYS[key]))
    # zoom is jaxopt's line search alone (a combination test_config checks)
    extra = {"lbfgs_backend": "jaxopt"} if (key, value) == ("line_search", "zoom") else {}
    if (key, value) == ("output_format", "tiff16"):  # a TIFF: the output's name says so
        extra = {"output": "out/stylized.tif"}
    assert getattr(resolve({key: value, **extra}), key) == value


@PROPERTY
@given(st.sampled_from(LAYER_KEYS), st.lists(st.sampled_from(LAYERS), min_size=1, unique=True))
def test_layer_lists(key: str, names: list[str]) -> None:
    got = getattr(resolve({key: names, "size": BIG}), key)
    assert [n for n, _ in got] == names
    weight = 1.0 / len(names) if key == "style_layers" else 1.0  # eq. 5's w_l = 1/count
    assert all(w == weight and type(w) is float for _, w in got)


@PROPERTY
@given(st.sampled_from(LAYER_KEYS), st.dictionaries(
    st.sampled_from(LAYERS), finite.filter(lambda x: 0 <= x <= 1e30) | st.integers(0, 10**6),
    min_size=1))
def test_layer_mappings(key: str, weights: dict[str, float]) -> None:
    got = getattr(resolve({key: weights, "size": BIG}), key)
    assert got == tuple((n, float(w)) for n, w in weights.items())
    assert all(type(w) is float for _, w in got)


@PROPERTY
@given(st.sampled_from(LAYER_KEYS), st.sampled_from(LAYERS))
def test_one_layer_name(key: str, name: str) -> None:
    assert getattr(resolve({key: name, "size": BIG}), key) == ((name, 1.0),)


@PROPERTY
@given(st.text(min_size=1), st.text(min_size=1), st.none() | st.text(),
       st.none() | st.text(min_size=1) | st.lists(st.text(min_size=1), max_size=4))
def test_paths(output: str, init: str, content: str | None, style: Any) -> None:
    output += "_out.png"  # any name, with an image format's extension (output_format_for)
    weights = f"{content}.h5" if content else content  # a file (bare words are variant names)
    config = resolve({"output": output, "init": init, "content": content, "weights": weights,
                      "style": style})
    assert (config.output, config.init) == (output, init)
    assert config.content == (content or None)
    assert config.weights == (weights or None)
    expected = () if style is None else (style,) if isinstance(style, str) else tuple(style)
    assert config.style == expected


@PROPERTY
@given(st.fixed_dictionaries({}, optional={
    "size": st.integers(64, 2048), "iterations": st.integers(1, 10**6),
    "style_weight": weight, "pooling": st.sampled_from(["avg", "max"]),
    "style_layers": st.lists(st.sampled_from(LAYERS), min_size=1, max_size=5, unique=True),
}))
def test_several_keys_at_once(values: dict[str, Any]) -> None:
    config = resolve(values)
    assert isinstance(config, Config)
    for key in FIELDS.keys() - values.keys():
        assert getattr(config, key) == getattr(Config(), key), key


# --- bad values -----------------------------------------------------------------------------


@PROPERTY
@given(st.sampled_from(sorted(INT_KEYS) + list(FLOAT_KEYS)), non_numbers)
def test_numbers_refuse_other_types(key: str, value: Any) -> None:
    refused({key: value}, f"config key {key!r}", "expected a number")


@PROPERTY
@given(st.sampled_from(sorted(INT_KEYS)), st.integers(max_value=-1) | finite)
def test_whole_numbers_out_of_range_or_fractional(key: str, value: float) -> None:
    assume(value < INT_KEYS[key] or value != int(value))
    refused({key: value}, f"config key {key!r}")


@PROPERTY
@given(st.sampled_from(FLOAT_KEYS),
       st.floats(max_value=-1e-300, allow_nan=False) | st.integers(-(10**300), -1) | st.just(
           float("nan")))
@example("learning_rate", 0.0)
@example("tv_weight", float("-inf"))
def test_real_numbers_out_of_range(key: str, value: float) -> None:
    refused({key: value}, f"config key {key!r}", "must be")


@PROPERTY
@given(st.sampled_from(sorted(CHOICE_KEYS)), yaml_values)
def test_choices_refuse_anything_else(key: str, value: Any) -> None:
    assume(value not in CHOICE_KEYS[key])
    assume(not (key == "output_format" and value is None))  # none: from output's extension
    message = refused({key: value}, f"config key {key!r}", "must be one of")
    assert all(choice in message for choice in CHOICE_KEYS[key])


@PROPERTY
@given(st.sampled_from(LAYER_KEYS), st.text(max_size=10))
@example("style_layers", "relu5_5")
def test_unknown_layer(key: str, name: str) -> None:
    assume(name not in LAYERS)
    for value in (name, [name], {name: 1.0}, ["relu1_1", name]):
        refused({key: value, "size": BIG}, f"config key {key!r}", "unknown layer",
                "valid layers")


@PROPERTY
@given(st.sampled_from(LAYER_KEYS), st.sampled_from(LAYERS),
       st.floats(max_value=-1e-300) | st.integers(max_value=-1) | non_numbers)
def test_bad_layer_weight(key: str, name: str, weight: Any) -> None:
    refused({key: {name: weight}, "size": BIG}, f"config key '{key}.{name}'")


@PROPERTY
@given(st.sampled_from(LAYER_KEYS),
       st.none() | st.integers() | finite | st.just([]) | st.just({}) | st.dates())
def test_layers_refuse_non_layers(key: str, value: Any) -> None:
    refused({key: value}, f"config key {key!r}")


@PROPERTY
@given(yaml_values.filter(lambda v: not (isinstance(v, str) and v) and not (
    isinstance(v, list) and all(isinstance(s, str) and s for s in v)) and v is not None))
def test_style_refuses_non_paths(value: Any) -> None:
    refused({"style": value}, "config key 'style'")


@PROPERTY
@given(st.sampled_from(["output", "init", "content", "weights"]), yaml_values)
def test_path_keys_refuse_non_strings(key: str, value: Any) -> None:
    assume(not isinstance(value, str))
    assume(value is not None or key in ("output", "init"))
    refused({key: value}, f"config key {key!r}")


@PROPERTY
@given(st.text(max_size=20) | st.integers() | st.none())
def test_unknown_keys(key: Any) -> None:
    assume(key not in FIELDS)
    refused({key: 1}, f"unknown config key {key!r}", "valid keys: content")


@PROPERTY
@given(st.sampled_from(sorted(FIELDS)), st.integers(0, 100), st.sampled_from("xq_"),
       st.sampled_from(["replace", "insert", "delete", "upper"]))
def test_unknown_key_close_to_a_real_one_gets_a_suggestion(
        key: str, where: int, letter: str, edit: str) -> None:
    i = where % len(key)
    typo = {"replace": key[:i] + letter + key[i + 1:], "insert": key[:i] + letter + key[i:],
            "delete": key[:i] + key[i + 1:], "upper": key.upper()[:1] + key[1:]}[edit]
    assume(typo not in FIELDS)
    message = refused({typo: 1}, f"unknown config key {typo!r}", "(did you mean '")
    suggestion = message.split("(did you mean '")[1].split("'")[0]
    assert suggestion in FIELDS


@PROPERTY
@given(st.sampled_from(sorted(FIELDS)), yaml_values)
def test_any_yaml_value_for_any_key_is_a_config_or_one_line(key: str, value: Any) -> None:
    try:
        config = resolve({key: value})
    except JStyleError as e:
        assert "\n" not in str(e) and key in str(e)
    else:
        assert isinstance(config, Config)


# --- inputs that once escaped resolve as other exceptions, or were accepted unusable ---------

CRASHES = [
    pytest.param({"size": float("inf")}, id="size=.inf (OverflowError)"),
    pytest.param({"iterations": float("-inf")}, id="iterations=-.inf (OverflowError)"),
    pytest.param({"seed": float("nan")}, id="seed=.nan (ValueError)"),
    pytest.param({"style_weight": 10**400}, id="style_weight=10**400 (OverflowError)"),
    pytest.param({"style_layers": {"relu1_1": 10**400}}, id="layer weight 10**400 (Overflow)"),
    pytest.param({"style_layers": [["relu1_1"]]}, id="nested list of layers (TypeError)"),
    pytest.param({"content_layers": [{"relu4_2": 1}]}, id="list of mappings (TypeError)"),
]


@pytest.mark.parametrize("values", CRASHES)
def test_former_crashes_are_one_line(values: dict[str, Any]) -> None:
    refused(values, f"config key '{next(iter(values))}")


ACCEPTED_BUT_UNUSABLE = [
    pytest.param({"style_weight": float("inf")}, id="style_weight=.inf"),
    pytest.param({"learning_rate": float("inf")}, id="learning_rate=.inf"),
    pytest.param({"style_layers": {"relu1_1": float("inf")}}, id="layer weight .inf"),
    pytest.param({"seed": 2**63}, id="seed=2**63 (jax.random.key raises OverflowError later)"),
]


@pytest.mark.parametrize("values", ACCEPTED_BUT_UNUSABLE)
def test_unusable_values_are_refused(values: dict[str, Any]) -> None:
    refused(values, f"config key '{next(iter(values))}")


def test_duplicate_layers_are_refused() -> None:
    with pytest.raises(JStyleError, match="lists relu1_1 more than once"):
        resolve({"style_layers": ["relu1_1", "relu1_1", "relu2_1"]})
