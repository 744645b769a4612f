"""The benchmark harness's arithmetic and report (no torch needed; the runs are benchmarks)."""

import json

import pytest

from jstyle.bench import harness
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
                    "warm": {"compile_s": 0.5, "since_start_s": 2.5},
                    "warm_since_start_s": [2.4, 2.5, 2.9]},
        "lbfgs": {"size": 256, "iterations": 100, "memory": 20,
                  "jax": {"seconds": 10.0, "evaluations": 110, "final_loss": 1e9},
                  "torch": {"seconds": 20.0, "evaluations": 120, "final_loss": 2e9},
                  "jax_vs_torch": 0.5},
    }
    text = markdown(json.loads(json.dumps(record)))
    assert "| 128x96 | 0.50 | n/a | 500 | n/a | 1000 | n/a |" in text
    assert "| cold | warm cache (median of 3) |" in text
    assert "| process start to first step s | 9.00 | 2.50 |" in text
    assert "| ratio jstyle / torch | 0.50 |" in text
    assert "torch_compile: no compiler" in text
    assert "bfloat16" not in text  # float32 alone unless asked


def test_start_up_is_the_median_warm_run_with_bytecode_kept(tmp_path, monkeypatch):
    runs = [{"since_start_s": 2.4}, {"error": "x"}, {"since_start_s": 1.9},
            {"since_start_s": 2.0}]
    assert harness._median_run(runs, "since_start_s") == {"since_start_s": 2.0}
    assert harness._median_run([{"error": "x"}], "since_start_s") == {"error": "x"}
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    env = harness._installed_env(tmp_path)
    assert "PYTHONDONTWRITEBYTECODE" not in env and env["PYTHONPYCACHEPREFIX"] == str(tmp_path)


def test_markdown_report_sets_bfloat16_beside_float32():
    m = {"median_s": 0.4, "in_loop_s": 0.3, "loss": 2.0}
    record = {
        "ceiling_gflops": 200.0, "precisions": ["float32", "bfloat16"],
        "matmul": {"jax": {"gflops": 200.0}, "torch": {"gflops": 150.0}},
        "evaluations": [{"size": 128, "width": 128, "height": 96, "gflop": 17.7,
                         "jax": {**m, "loss": 4.0}, "torch": {"median_s": 0.5},
                         "jax_bfloat16": {**m, "median_s": 0.2},
                         "torch_bfloat16": {"error": "no bf16"},
                         "jax_vs_torch": 0.8, "jax_vs_torch_compile": None}],
        "startup": {"cold": {}, "warm": {}},
        "lbfgs": {"size": 256, "iterations": 100, "memory": 20,
                  "jax": {"seconds": 10.0}, "torch": {"seconds": 20.0},
                  "jax_bfloat16": {"seconds": 5.0, "evaluations": 101, "final_loss": 1e9},
                  "torch_bfloat16": {"error": "no bf16"}},
    }
    text = markdown(record)
    # bf16 / f32, bf16 / torch bf16 (failed), bf16 / torch f32, ms, in loop, torch, loss
    assert "| 128x96 | 0.50 | n/a | 0.40 | 200 | 300 | n/a | 0.5000 |" in text
    assert "| jstyle (L-BFGS), bfloat16 | 5.0 | 101 | 1e+09 |" in text
    assert "| ratio jstyle bfloat16 / torch float32 | 0.25 |" in text


def test_markdown_report_sets_winograd_beside_xla_and_pastiche_beside_jstyle():
    record = {
        "ceiling_gflops": 200.0, "float32_convolutions": "onednn:jit_wino_4x3:avx512_core",
        "matmul": {"jax": {"gflops": 200.0}, "torch": {"gflops": 150.0}},
        "evaluations": [{"size": 128, "width": 128, "height": 96, "gflop": 17.7,
                         "jax": {"median_s": 0.4, "in_loop_s": 0.3, "loss": 2.0},
                         "jax_xla": {"median_s": 0.8, "in_loop_s": 0.75, "loss": 2.0},
                         "torch": {"median_s": 0.5},
                         "jax_vs_torch": 0.8, "jax_vs_torch_compile": None}],
        "startup": {"cold": {}, "warm": {}},
        "lbfgs": {"size": 256, "iterations": 100, "memory": 20,
                  "jax": {"seconds": 10.0, "evaluations": 104, "final_loss": 1e9},
                  "jax_cold": {"seconds": 12.5, "evaluations": 104, "final_loss": 1e9},
                  "jax_xla": {"seconds": 20.0, "evaluations": 104, "final_loss": 1e9},
                  "torch": {"seconds": 30.0}, "torch_none": {"seconds": 25.0}},
    }
    text = markdown(record)
    assert "| jstyle, compiling (the first run) | 12.5 | 104 | 1e+09 |" in text
    assert "| ratio jstyle compiling / torch, no line search | 0.50 |" in text
    assert "onednn:jit_wino_4x3:avx512_core against XLA's" in text
    # Winograd / XLA (in a loop), / torch (in a loop), ms, XLA ms, loss ratio
    assert "| 128x96 | 0.50 (0.40) | 0.80 (0.60) | 400 (300) | 800 (750) | 1.000000 |" in text
    assert "| jstyle, XLA's convolutions, compiling | 20.0 | 104 | 1e+09 |" in text
    assert "| ratio jstyle / torch, no line search | 0.40 |" in text


def test_quality_report_reads_delivered_losses_at_evaluation_counts():
    from jstyle.bench.quality import at_evaluations, markdown, seconds_to

    points = [{"iteration": i, "evaluations": e, "seconds": s, "loss": d, "delivered": d}
              for i, (e, s, d) in enumerate([(2, 1.0, 9.0), (49, 5.0, 4.0), (52, 5.5, 3.0),
                                             (101, 9.0, 2.0), (200, 15.0, 1.0)], start=1)]
    assert at_evaluations(points, 50) == 4.0  # the last iterate within 50 evaluations
    assert at_evaluations(points, 100) == 3.0 and at_evaluations(points, 200) == 1.0
    assert at_evaluations(points, 1) is None
    assert seconds_to(points, 3.0) == 5.5 and seconds_to(points, 0.5) is None
    torch = [dict(p, delivered=p["delivered"] * 2) for p in points]
    torch[3]["iteration"] = 100  # torch's 100th iteration delivers 4.0 after 9 s
    record = {"machine": {"cpu": "Test CPU", "cores": 2}, "objective": "eq. 7", "memory": 20,
              "sizes": {"128": {"width": 128, "height": 96, "runs": {
                  "jstyle backtracking": {"points": points, "noise_ratio": 1.5,
                                          "range": [0.0, 1.0]},
                  "scipy L-BFGS-B": {"points": torch, "noise_ratio": 2.0, "range": [0.0, 1.0]},
                  "torch none": {"points": torch, "noise_ratio": 3.0, "range": [-0.5, 1.5]},
                  "broken": {"error": "boom"}}}}}
    text = markdown(record)
    assert "Test CPU" in text and "failed: boom" in text
    row = next(line for line in text.splitlines() if line.startswith("| jstyle backtracking"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["4", "3", "1"]
    assert cells[4:6] == ["0.50", "0.50"]  # against scipy at 100 and 200 evaluations
    assert cells[6] == "5.0 (0.56)"  # reaches torch's 4.0 at 5 s, torch took 9 s
    assert cells[7:] == ["1.50", "0.00..1.00"]


def test_quality_report_gives_each_starts_ratio_and_their_median():
    from jstyle.bench.quality import markdown, ratios_over_starts

    def run(*delivered):  # delivered loss at 50, 100 and 200 evaluations
        return {"points": [{"iteration": i, "evaluations": e, "seconds": float(i), "loss": d,
                            "delivered": d} for i, (e, d) in
                           enumerate(zip((50, 100, 200), delivered, strict=True), start=1)],
                "noise_ratio": 1.0, "range": [0.0, 1.0]}

    starts = [{"jstyle none": run(5.0, 4.0, 3.0), "scipy L-BFGS-B": run(5.0, 4.0, 2.0)},
              {"jstyle none": run(5.0, 2.0, 1.0), "scipy L-BFGS-B": run(5.0, 4.0, 2.0)},
              {"jstyle none": {"error": "boom"}, "scipy L-BFGS-B": run(5.0, 4.0, 2.0)}]
    assert ratios_over_starts(starts, "jstyle none") == {100: [1.0, 0.5, None],
                                                         200: [1.5, 0.5, None]}
    record = {"machine": {"cpu": "Test CPU", "cores": 2}, "objective": "eq. 7", "memory": 20,
              "sizes": {"128": {"width": 128, "height": 96, "runs": starts[0],
                                "starts": starts}}}
    text = markdown(record)
    assert "128x96 px, 3 starts" in text
    assert "| jstyle none | 1.000, 0.500, n/a; median 0.750 | 1.500, 0.500, n/a; median 1.000 |" \
        in text


@pytest.mark.slow
def test_quality_runs_score_the_delivered_images(real_weights):
    """A tiny quality run of jstyle's solver and of scipy's L-BFGS-B: the same start, each
    iterate's delivered loss scored, jstyle's image inside the box, evaluations counted."""
    from jstyle.bench.quality import quality_jax, quality_scipy

    spec = {"height": 24, "width": 32, "memory": 5, "max_evaluations": 8}
    ours = quality_jax({**spec, "backend": "jstyle", "line_search": "none", "bounds": "box"})
    theirs = quality_scipy(spec)
    for run in (ours, theirs):
        points = run["points"]
        assert points and all(p["delivered"] > 0 for p in points)
        assert [p["evaluations"] for p in points] == sorted(p["evaluations"] for p in points)
        assert points[-1]["delivered"] < points[0]["delivered"]
        assert run["range"][0] >= 0.0 and run["range"][1] <= 1.0 and run["noise_ratio"] > 0
    # one evaluation per iteration without a line search, plus the initial one
    assert [p["evaluations"] for p in ours["points"]] == [p["iteration"] + 1
                                                         for p in ours["points"]]
    assert ours["points"][-1]["evaluations"] == 8
    # the optimiser's loss and the delivered one agree inside the box
    assert ours["points"][-1]["delivered"] == pytest.approx(ours["points"][-1]["loss"], rel=0.02)


@pytest.mark.parametrize("argv", [["--sizes", "128"], ["quality", "--sizes", "128"]])
def test_a_missing_dependency_is_named_before_anything_is_measured(argv, monkeypatch, capsys):
    import sys

    from jstyle.bench import harness, quality

    def measured(*_):
        raise AssertionError("measured without matplotlib")

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # find_spec: not installed
    monkeypatch.setattr(harness, "run_benchmarks", measured)
    monkeypatch.setattr(quality, "run", measured)
    assert harness.main(argv) == 2
    err = capsys.readouterr().err
    assert "matplotlib" in err and "pip install -e '.[bench]'" in err
    assert "Traceback" not in err


def test_layer_profile_pieces_follow_vgg19_to_the_deepest_loss_layer():
    from jstyle.bench.layer_profile import pieces
    from jstyle.layers import PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS

    got = pieces(96, 128, PAPER_CONTENT_LAYERS, PAPER_STYLE_LAYERS)
    names = [p["name"] for p in got]
    assert names[:4] == ["conv1_1", "gram relu1_1", "conv1_2", "pool1"]
    assert names[-2:] == ["conv5_1", "gram relu5_1"]  # nothing past the deepest loss layer
    assert sum(p["op"] == "conv" for p in got) == 13 and "content relu4_2" in names
    conv51 = got[names.index("conv5_1")]
    assert (conv51["h"], conv51["w"], conv51["cin"], conv51["cout"]) == (6, 8, 512, 512)
    assert got[names.index("pool3")]["h"] == 24  # pooled to 12 after it


def test_layer_profile_table_has_ratios_totals_and_the_whole_evaluation():
    from jstyle.bench.layer_profile import markdown, pieces

    def result(scale):
        return {"pieces": [{**p, "forward": 0.002 * scale, "gradient": 0.004 * scale}
                           for p in pieces(48, 64, ("relu4_2",), ("relu1_1", "relu2_1"))],
                "evaluation_s": 0.1 * scale, "call_s": 1e-5}

    record = {"machine": {"cpu": "Test CPU", "cores": 2, "isa": ["avx2"]}, "repeats": 3,
              "sizes": {"64": {"height": 48, "width": 64, "jax": result(1),
                               "torch": result(2)}}}
    text = markdown(record)
    assert "Test CPU" in text and "| conv1_1 | 64x48, 3->64 | 2.00 | 4.00 | 4.00 | 8.00 |" \
        " 0.50 | 0.50 |" in text
    assert "| one whole evaluation | 100.0 | 200.0 | 0.50 |" in text
    convs = 10  # conv1_1 .. conv4_2
    assert f"| conv (forward + gradient) | {convs * 6.0:.1f} | {convs * 12.0:.1f} | 0.50 |" \
        in text
    failed = {**record, "sizes": {"64": {**record["sizes"]["64"],
                                         "torch": {"error": "boom"}}}}
    assert "Failed: torch: boom" in markdown(failed)


def test_style_loss_cost_report_holds_each_loss_to_the_bound_but_the_pairwise_ones():
    from jstyle.bench.style_loss_cost import BOUND, markdown

    record = {"machine": {"cpu": "x", "cores": 2, "isa": [], "jax": "0"}, "objective": "eq. 7",
              "repeats": 3, "sizes": {"512": {"height": 384, "width": 512, "runs": {
                  "gram": {"median_s": 1.0}, "mean_std": {"median_s": BOUND},
                  "histogram": {"median_s": 2.0}, "mrf": {"median_s": 9.0},
                  "remd": {"error": "timed out"}}}}}
    text = markdown(record)
    assert "| gram | 1000 | 1.00 | yes |" in text
    assert "| mean_std | 1500 | 1.50 | yes |" in text
    assert "| histogram | 2000 | 2.00 | **no** |" in text
    assert "| mrf | 9000 | 9.00 | stated |" in text
    assert "| remd | failed: timed out | | |" in text
