"""The benchmark harness's arithmetic and report (no torch needed; the runs are benchmarks)."""

import json

import pytest

from jstyle.bench.harness import conv_flops, markdown, shape_for


def test_conv_flops_match_vgg19s_known_cost():
    # VGG-19's 16 convolutions at 224 x 224: 19.6 G multiply-adds (Simonyan & Zisserman).
    forward = conv_flops(224, 224, "pool5") / 2
    assert forward / 2 / 1e9 == pytest.approx(19.5, abs=0.2)
    # The paper's objective stops at conv5_1: 13 convolutions.
    assert conv_flops(224, 224, "relu5_1") < conv_flops(224, 224, "pool5")
    assert conv_flops(224, 224, "relu1_1") == 2 * 2 * 9 * 3 * 64 * 224 * 224


def test_shapes_are_four_by_three():
    assert shape_for(512) == (384, 512)
    assert shape_for(128) == (96, 128)


def test_markdown_report_has_ratios_first_and_failures():
    m = {"median_s": 0.5, "gflops": 100.0, "of_ceiling": 0.5, "peak_rss_mb": 900.0}
    record = {
        "ceiling_gflops": 200.0,
        "matmul": {"jax": {"gflops": 200.0}, "torch": {"gflops": 150.0}},
        "evaluations": [{"size": 128, "width": 128, "height": 96, "gflop": 17.7,
                         "jax": m, "torch": {**m, "median_s": 1.0},
                         "torch_compile": {"error": "no compiler"},
                         "jax_vs_torch": 0.5, "jax_vs_torch_compile": None}],
        "startup": {"cold": {"compile_s": 5.0, "since_start_s": 9.0},
                    "warm": {"compile_s": 0.5, "since_start_s": 2.5}},
        "lbfgs": {"size": 256, "iterations": 100, "memory": 20,
                  "jax": {"seconds": 10.0, "evaluations": 110, "final_loss": 1e9},
                  "torch": {"seconds": 20.0, "evaluations": 120, "final_loss": 2e9},
                  "jax_vs_torch": 0.5},
    }
    text = markdown(json.loads(json.dumps(record)))
    assert "| 128x96 | 0.50 | n/a | 500 | n/a | 1000 | n/a |" in text
    assert "| ratio jstyle / torch | 0.50 |" in text
    assert "torch_compile: no compiler" in text
