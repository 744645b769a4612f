"""Several devices with JAX's SPMD (jstyle.sharding), checked on fake CPU devices.

Each check runs a script in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (the rest of the suite keeps
one device): data-parallel and spatial results equal one-device runs, the arrays really
are split over the devices, and XLA exchanges halos instead of gathering the image. One
test runs two processes of two devices each, joined by ``jax.distributed``, as on two
hosts. Correctness only: 4 fake devices on a few cores say nothing of speed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

from jstyle import sharding
from jstyle.objective import Objective
from jstyle.preprocessing import CAFFE
from tests.helpers import one_line_error

#: Shared by the scripts: a 3-block objective (relu3_1 is 4x smaller than the image, so a
#: 32-row image gives each of 4 devices 8 rows, and 2 rows at relu3_1: every convolution
#: needs its neighbours' rows), the random network up to it, and a spy on the compiled
#: optimisation chunk that records how its inputs are laid out and its program's text.
PRELUDE = """
import json, sys
import numpy as np, jax, jax.numpy as jnp
from jstyle import engine, sharding, transfer
from jstyle.objective import Objective, compute_targets, total_objective
from jstyle.optimize import make_solver
from jstyle.preprocessing import CAFFE
from jstyle.vgg import VGG19

OBJ = Objective((("relu3_1", 1.0),), (("relu1_1", 0.5), ("relu2_1", 0.25), ("relu3_1", 0.25)),
                1.0, 1e3, 0.0, "avg", CAFFE)
PARAMS = VGG19(outputs=("relu3_1",)).init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
SOLVER = make_solver("lbfgs")
rng = np.random.default_rng(0)
SEEN = {}

def layout(a):
    spec = list(a.sharding.spec)
    return {"spec": spec + [None] * (a.ndim - len(spec)), "shards": len(a.addressable_shards),
            "shard_shape": list(a.addressable_shards[0].data.shape),
            "replicated": a.sharding.is_fully_replicated}

class Spy:
    def __init__(self, jitted):
        self.jitted = jitted
    def lower(self, image, state, n, params, targets, **kw):
        SEEN["image"] = layout(image)
        SEEN["state"] = [layout(x) for x in jax.tree.leaves(state)
                         if x.ndim >= 3 and x.shape[-3:] == image.shape[-3:]]
        SEEN["content_targets"] = [layout(x) for x in targets.content.values()]
        SEEN["style_targets"] = [layout(x) for x in targets.style.values()]
        lowered = self.jitted.lower(image, state, n, params, targets, **kw)
        class Lowered:
            def compile(_):
                compiled = lowered.compile()
                SEEN["hlo"] = compiled.as_text()
                return compiled
        return Lowered()

engine._run_chunk = Spy(engine._run_chunk)

def report(**values):
    hlo = SEEN.pop("hlo")
    SEEN["all_gathers"] = hlo.count("all-gather")
    SEEN["halo_exchanges"] = hlo.count("collective-permute")
    print("RESULT " + json.dumps({**values, **SEEN}), flush=True)
"""

SPATIAL = """
mesh = sharding.make_mesh(sharding.HEIGHT_AXIS)
content, style, image = (rng.random((32, 24, 3), dtype=np.float32) for _ in range(3))

# Eq. 7 and its gradient for an image split by rows, against one device.
value_and_grad = jax.jit(jax.value_and_grad(total_objective), static_argnums=3)
targets = jax.jit(compute_targets, static_argnums=3)
v1, g1 = value_and_grad(image, PARAMS, targets(PARAMS, content, [style], OBJ), OBJ)
rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("height"))
put = lambda a: jax.device_put(a, rows)
split_targets = targets(PARAMS, put(content), [put(style)], OBJ)
v4, g4 = value_and_grad(put(image), PARAMS, split_targets, OBJ)

# A few L-BFGS iterations, against jstyle.transfer.stylize on one device.
one = transfer.stylize(PARAMS, content, [style], OBJ, SOLVER, iterations=5)
progress = []
split = sharding.stylize_spatial(PARAMS, content, [style], OBJ, SOLVER, iterations=5, mesh=mesh,
                                 on_progress=lambda p: progress.append(
                                     [p.iteration, p.history, p.terms["total"], p.image.shape]))
report(loss=[float(v1), float(v4)], grad_error=float(jnp.abs(g4 - g1).max()),
       grad_scale=float(jnp.abs(g1).max()),
       image_error=float(np.abs(split.image - one.image).max()),
       final=[one.terms["total"], split.terms["total"]], history=[one.history, split.history],
       evaluations=[one.evaluations, split.evaluations], devices=len(jax.devices()),
       progress=progress)
"""

SPATIAL_TILES = """
import dataclasses, re
mesh = sharding.make_mesh(sharding.HEIGHT_AXIS)
TILED = dataclasses.replace(OBJ, tile=16)  # 64 x 48: 4 x 3 tiles, 3 for each of 4 devices
content, style = (rng.random((64, 48, 3), dtype=np.float32) for _ in range(2))
plan = TILED.plan(64, 48)
whole = transfer.stylize(PARAMS, content, [style], OBJ, SOLVER, iterations=4)
one = transfer.stylize(PARAMS, content, [style], TILED, SOLVER, iterations=4)
split = sharding.stylize_spatial(PARAMS, content, [style], TILED, SOLVER, iterations=4,
                                 mesh=mesh)
hlo = SEEN["hlo"]
trips = sorted({int(n) for n in re.findall(r'trip_count":[{]"n":"([0-9]+)"', hlo)})
report(tiles=plan.count, trips=trips, history=[whole.history, one.history, split.history],
       image_error=float(np.abs(split.image - one.image).max()),
       whole_error=float(np.abs(split.image - whole.image).max()))
"""

BATCH = """
mesh = sharding.make_mesh(sharding.BATCH_AXIS)
contents = rng.random((5, 16, 16, 3), dtype=np.float32)  # 5 photos on 4 devices: padded to 8
style = rng.random((16, 16, 3), dtype=np.float32)
alone = [transfer.stylize(PARAMS, c, [style], OBJ, SOLVER, iterations=4, seed=3)
         for c in contents]  # first: the spy keeps the layout of the last program compiled
batch = sharding.stylize_batch(PARAMS, contents, [style], OBJ, SOLVER, iterations=4, seed=3,
                               mesh=mesh)
# A photo whose loss is NaN from the start stops alone; the others run on unchanged.
start = np.stack([r.image for r in sharding.stylize_batch(
    PARAMS, contents, [style], OBJ, SOLVER, iterations=0, seed=3, mesh=mesh)])
start[1, 0, 0, 0] = np.nan
broken = sharding.stylize_batch(PARAMS, contents, [style], OBJ, SOLVER, iterations=4, init=start,
                                mesh=mesh)
report(count=len(batch), stopped=[r.stopped for r in broken],
       broken=[[b.terms["total"], r.terms["total"]] for b, r in zip(batch, broken)],
       image_error=max(float(np.abs(b.image - a.image).max()) for a, b in zip(alone, batch)),
       final=[[a.terms["total"], b.terms["total"]] for a, b in zip(alone, batch)],
       history=[[a.history, b.history] for a, b in zip(alone, batch)],
       evaluations=[[a.evaluations, b.evaluations] for a, b in zip(alone, batch)],
       distinct=len({round(b.terms["total"], 1) for b in batch}))
"""

TWO_HOSTS = """
rank = jax.process_index()
OBJ = Objective((("relu2_1", 1.0),), (("relu1_1", 0.5), ("relu2_1", 0.5)), 1.0, 1e3, 0.0, "avg",
                CAFFE)  # two blocks: shorter compilations, as both processes share two cores
contents = rng.random((4, 16, 16, 3), dtype=np.float32)
style = rng.random((16, 16, 3), dtype=np.float32)
big, big_style = (rng.random((32, 16, 3), dtype=np.float32) for _ in range(2))
values = {}
if rank == 0:  # one device of this process alone, for reference (first: the spy keeps the
    # layout of the last program compiled)
    values["alone"] = transfer.stylize(PARAMS, contents[2], [style], OBJ, SOLVER,
                                       iterations=3).terms["total"]
    alone_run = transfer.stylize(PARAMS, big, [big_style], OBJ, SOLVER, iterations=3)
    values["spatial_alone"] = alone_run.terms["total"]
    values["spatial_alone_history"] = alone_run.history
batch = sharding.stylize_batch(PARAMS, contents, [style], OBJ, SOLVER, iterations=3)
split = sharding.stylize_spatial(PARAMS, big, [big_style], OBJ, SOLVER, iterations=3)
values.update(rank=rank, processes=jax.process_count(), devices=len(jax.devices()),
              batch=[b.terms["total"] for b in batch], spatial=split.terms["total"],
              spatial_history=split.history,
              spatial_image=float(np.abs(split.image).sum()))
report(**values)
"""


def _env(devices: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (
        sharding.COORDINATOR_ENV, sharding.NUM_PROCESSES_ENV, sharding.PROCESS_ID_ENV)}
    return {**env, "JAX_PLATFORMS": "cpu", **extra,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _result(output: str) -> dict:
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise AssertionError(f"no result; the script printed:\n{output[-3000:]}")


def _run(script: str, devices: int = 4) -> dict:
    code = PRELUDE + textwrap.dedent(script)
    proc = subprocess.run([sys.executable, "-c", code], env=_env(devices), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _result(proc.stdout)


def _close(a: float, b: float, rel: float) -> bool:
    return abs(a - b) <= rel * abs(b)


def test_spatial_shard_loss_gradient_and_lbfgs_equal_one_device():
    r = _run(SPATIAL)
    assert r["devices"] == 4
    v1, v4 = r["loss"]
    assert _close(v4, v1, 1e-4), r["loss"]
    assert r["grad_error"] <= 1e-4 * r["grad_scale"], (r["grad_error"], r["grad_scale"])
    assert r["image_error"] <= 1e-3, r["image_error"]
    assert _close(r["final"][1], r["final"][0], 1e-4), r["final"]
    one, split = r["history"]
    assert len(one) == len(split) == 5
    assert all(_close(s, o, 1e-4) for o, s in zip(one, split, strict=True)), r["history"]
    assert r["evaluations"][0] == r["evaluations"][1]
    # Progress as jstyle.transfer.stylize reports it: each chunk's iterations, terms, image.
    assert [p[0] for p in r["progress"]] == [1, 2, 3, 4, 5]
    assert [h for p in r["progress"] for h in p[1]] == split
    assert r["progress"][-1][2] == r["final"][1] and r["progress"][-1][3] == [32, 24, 3]
    # The image, every image-sized L-BFGS buffer and P^l lie in 4 row slices; A^l everywhere.
    assert r["image"] == {"spec": ["height", None, None], "shards": 4,
                          "shard_shape": [8, 24, 3], "replicated": False}
    assert len(r["state"]) >= 3  # L-BFGS keeps the gradient and the s and y histories
    for leaf in r["state"]:
        assert leaf["shards"] == 4 and leaf["spec"][-3] == "height", leaf
        assert leaf["shard_shape"][-3:] == [8, 24, 3], leaf
    assert [t["shard_shape"][0] for t in r["content_targets"]] == [2]  # relu3_1: 8 rows / 4
    assert all(t["spec"][0] == "height" for t in r["content_targets"])
    assert all(t["replicated"] for t in r["style_targets"])
    # XLA split the convolutions: neighbours' rows are exchanged, the image never gathered.
    assert r["halo_exchanges"] > 0 and r["all_gathers"] == 0, r


def test_spatial_shard_with_tiles_deals_the_tiles_out_and_equals_one_device():
    r = _run(SPATIAL_TILES)
    assert r["tiles"] == 12
    # Each device scans its own 3 tiles (forward and backward), never all 12.
    assert 3 in r["trips"] and 12 not in r["trips"], r["trips"]
    whole, one, split = r["history"]
    assert all(_close(s, o, 1e-4) for o, s in zip(one, split, strict=True)), r["history"]
    assert all(_close(s, w, 1e-4) for w, s in zip(whole, split, strict=True)), r["history"]
    assert r["image_error"] <= 1e-3 and r["whole_error"] <= 1e-3, r


def test_data_parallel_shard_equals_each_image_alone():
    r = _run(BATCH)
    assert r["count"] == 5
    assert r["image_error"] <= 1e-3, r["image_error"]
    for (alone, batch), (ha, hb), (ea, eb) in zip(r["final"], r["history"], r["evaluations"],
                                                  strict=True):
        assert _close(batch, alone, 1e-4), r["final"]
        assert len(ha) == len(hb) == 4
        assert all(_close(b, a, 1e-4) for a, b in zip(ha, hb, strict=True))
        assert ea == eb  # each photo ran its own line searches
    assert r["distinct"] == 5  # five different problems, not one
    # 5 photos padded to 8: 2 per device, the batch axis split, nothing gathered.
    assert r["image"] == {"spec": ["batch", None, None, None], "shards": 4,
                          "shard_shape": [2, 16, 16, 3], "replicated": False}
    assert all(leaf["spec"][0] == "batch" and leaf["shards"] == 4 for leaf in r["state"])
    assert all(t["spec"][0] == "batch" for t in r["content_targets"] + r["style_targets"])
    assert r["all_gathers"] == 0
    assert r["stopped"][0] is None and r["stopped"][2:] == [None] * 3
    assert "NaN or infinite at iteration 1" in r["stopped"][1], r["stopped"]
    assert all(_close(b, a, 1e-6) for a, b in r["broken"][:1] + r["broken"][2:]), r["broken"]


def test_two_processes_shard_over_jax_distributed():
    """Two processes of two CPU devices each, joined as two hosts would be."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    code = PRELUDE.replace("import json, sys", "import json, sys\nfrom jstyle import sharding\n"
                           "sharding.initialize_distributed()") + textwrap.dedent(TWO_HOSTS)
    procs = [subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(2, JSTYLE_COORDINATOR=f"localhost:{port}", JSTYLE_NUM_PROCESSES="2",
                 JSTYLE_PROCESS_ID=str(rank))) for rank in (0, 1)]
    outputs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        assert proc.returncode == 0, err[-3000:]
        outputs.append(_result(out))
    first, second = outputs
    assert first["processes"] == 2 and first["devices"] == 4  # every host sees all 4
    assert first["batch"] == second["batch"] and first["spatial"] == second["spatial"]
    assert first["spatial_image"] == second["spatial_image"]  # each host got the whole image
    assert _close(first["batch"][2], first["alone"], 1e-4), (first["batch"], first["alone"])
    # The first step agrees to float32 sums in another order; three L-BFGS steps on, the
    # two paths have moved apart by more on some CPUs (7e-4 on an AVX-512 EPYC, under 1e-4
    # on an AVX2 one): the cross-host all-reduce sums the Gram matrices in its own order.
    assert _close(first["spatial_history"][0], first["spatial_alone_history"][0], 1e-4), (
        first["spatial_history"], first["spatial_alone_history"])
    assert _close(first["spatial"], first["spatial_alone"], 2e-3)
    assert first["image"]["shards"] == 2  # of the 4, this host holds 2


def test_spatial_shard_needs_a_height_that_divides():
    paper = Objective((("relu4_2", 1.0),), (("relu1_1", 0.5), ("relu5_1", 0.5)), 1.0, 1e3, 0.0,
                      "avg", CAFFE)
    sharding.check_spatial(128, paper, 4)  # relu5_1: 16x smaller; 128 = 2 x 4 x 16
    one_line_error(lambda: sharding.check_spatial(100, paper, 4), "multiple of 4 x 16 = 64",
                   "relu5_1", "not 100", "64 or 128 px high", "fewer devices")
    one_line_error(lambda: sharding.check_spatial(40, paper, 4), "resize the content to 64 px")


def test_shard_distributed_setup_from_the_environment(monkeypatch):
    assert sharding.initialize_distributed({}) is False  # one host: nothing to do
    coordinator = {"JSTYLE_COORDINATOR": "10.0.0.1:1234"}
    one_line_error(lambda: sharding.initialize_distributed(coordinator),
                   "JSTYLE_NUM_PROCESSES and JSTYLE_PROCESS_ID not")
    one_line_error(lambda: sharding.initialize_distributed(
        {**coordinator, "JSTYLE_NUM_PROCESSES": "2", "JSTYLE_PROCESS_ID": "2"}),
        "JSTYLE_PROCESS_ID=2 is out of range", "0 .. 1")
    one_line_error(lambda: sharding.initialize_distributed(
        {**coordinator, "JSTYLE_NUM_PROCESSES": "two", "JSTYLE_PROCESS_ID": "0"}),
        "whole numbers")
    calls = []
    monkeypatch.setattr(sharding.jax.distributed, "initialize",
                        lambda *a, **k: calls.append((a, k)))
    env = {**coordinator, "JSTYLE_NUM_PROCESSES": "2", "JSTYLE_PROCESS_ID": "1"}
    assert sharding.initialize_distributed(env) is True
    assert calls == [(("10.0.0.1:1234",), {"num_processes": 2, "process_id": 1})]


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "jstyle.run", *args], capture_output=True,
                          text=True, env=env, timeout=600, cwd=cwd)


def test_cli_shard_batch_and_spatial(real_weights, tmp_path):
    """The command line's sharding key: a batch of photos split over 4 fake devices, one
    output each, and one image's rows split over them; a height that does not divide is
    one line before anything compiles."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        pixels = (rng.random((48, 64, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(photos / f"{name}.png")
    common = ["--set", f"weights={real_weights.path}", "--set", "iterations=3", "--quiet",
              "--set", "content_layers=[relu2_2]", "--set", "style_layers=[relu1_1, relu2_1]"]
    proc = _cli("--content", str(photos), "--output", str(tmp_path / "out.png"),
                "--set", "size=64", "--set", "sharding=batch", *common)
    assert proc.returncode == 0, proc.stderr
    for name in ("a", "b", "c"):
        record = json.loads((tmp_path / "out" / f"{name}.json").read_text())
        assert record["sharding"] == {"mode": "batch", "devices": 4, "batch": 3}
        assert len(record["history"]) == 3 and len(record["jax"]["devices"]) == 4
        assert Image.open(tmp_path / "out" / f"{name}.png").size == (64, 48)
    proc = _cli("--content", str(photos / "a.png"), "--output", str(tmp_path / "big.png"),
                "--set", "size=64", "--set", "sharding=spatial", *common)
    assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp_path / "big.png").size == (64, 48)
    proc = _cli("--content", str(photos / "a.png"), "--output", str(tmp_path / "odd.png"),
                "--set", "size=80", "--set", "sharding=spatial", *common)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "multiple of 4 x 2 = 8" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
