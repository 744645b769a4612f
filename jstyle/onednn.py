"""jstyle's C++ kernels for XLA:CPU, as FFI custom calls: convolutions through oneDNN
(bfloat16, and float32 by Winograd's minimal filtering), and a sort of columns.

XLA:CPU computes a bfloat16 convolution by converting both operands to float32, running
its float32 kernel and rounding the result (see the README's "Performance"): bfloat16 is
never faster there, even on a CPU with AVX512-BF16 or AMX. oneDNN runs the same
convolution with those instructions, which accumulate in float32 and round each response
to bfloat16, as ``precision: bfloat16`` asks (Gatys et al. 2016 do not use reduced
precision; it changes the delivered image's loss by the amount the README's "Quality"
table shows).

float32 (:func:`winograd_conv3x3`): XLA:CPU's convolutions are direct; oneDNN's
Winograd kernel F(4x4, 3x3) (Lavin & Gray 2016) makes a quarter of the multiplications of
a 3x3 convolution and runs about three times faster on CPUs with AVX-512. Its rounding
differs from the direct form's by a few parts in a million of a response (measured in
``tests/test_onednn.py``): the same objective, computed another way.

Sorting: the sliced Wasserstein and histogram losses sort every style layer's responses
at every evaluation, and XLA:CPU's comparison sort of 12.6 million values (``relu1_1`` at
512x384) takes about 3 s, its gradient 7-12 s. The kernels
(``jstyle/kernels/sort_columns.cc``) are a stable radix sort: :func:`match_rows`, what
the losses evaluate (each row's sorted target put at the ranks of the row's values: no
transposition, and no gradient, since the losses' gradient is elementwise given it), and
:func:`sort_columns` with its gradient, for the style's targets made once per run.

The kernels (``jstyle/kernels/*.cc``, one library) are compiled once per source, jaxlib and
compiler, into jstyle's cache folder, with the system's C++ compiler against the system's
oneDNN (Debian and Ubuntu: ``apt-get install g++ libdnnl-dev``). :func:`load` builds,
loads and registers it, or says in one line why it cannot; nothing here runs on import.

References:
  Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016 (F(4x4,
  3x3)).
  oneDNN, "Convolution" primitive: https://oneapi-src.github.io/oneDNN/dev_guide_convolution.html
  JAX, "Foreign function interface (FFI)": https://docs.jax.dev/en/latest/ffi.html
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Kernels", "NoKernelError", "SOURCES", "TARGET", "WINOGRAD_TARGET", "SORT_TARGET",
           "UNSORT_TARGET", "MATCH_TARGET", "library_path", "build", "load", "loaded",
           "conv3x3", "winograd_conv3x3", "sort_columns", "match_rows", "MIN_WINOGRAD_CHANNELS",
           "winograd_jobs", "prepare_winograd", "transforms_made"]

#: The C++ sources of the custom calls, shipped in the package: one library.
SOURCES = tuple(Path(__file__).with_name("kernels") / name
                for name in ("onednn_conv.cc", "sort_columns.cc"))
#: The FFI target's name in XLA's registry.
TARGET = "jstyle_conv3x3_bf16"
#: The float32 Winograd convolution's.
WINOGRAD_TARGET = "jstyle_conv3x3_f32_winograd"
#: The column sort's, and its gradient's.
SORT_TARGET = "jstyle_sort_columns"
UNSORT_TARGET = "jstyle_unsort_columns"
MATCH_TARGET = "jstyle_match_rows"
#: The fewest input and output channels a convolution takes the Winograd kernel with:
#: below it (VGG-19's first layer, 3 -> 64, and its input gradient) the transforms cost more
#: than they save (oneDNN: 7.5 ms against the direct form's 3.6 ms at 512x384 px).
MIN_WINOGRAD_CHANNELS = 16


@dataclass(frozen=True)
class Kernels:
    """A loaded kernel library: its path and the oneDNN implementation it dispatches to
    on this CPU (``brgconv:avx512_core_bf16``, ``...amx...``; a name without ``bf16`` or
    ``amx`` means oneDNN would emulate bfloat16 here)."""

    path: Path
    implementation: str
    #: oneDNN's float32 Winograd implementation here (``jit_wino_4x3:avx512_core``), or
    #: None where it has none.
    winograd: str | None = None

    @property
    def native(self) -> bool:
        """Whether the CPU's own bfloat16 instructions run the convolutions."""
        return "bf16" in self.implementation or "amx" in self.implementation


class NoKernelError(RuntimeError):
    """The library built and loaded, but oneDNN offers no bfloat16 convolution for this
    CPU (one without AVX-512): a fact of the machine, not a broken install."""


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


def library_path(cache_dir: Path, compiler: str) -> Path:
    """Where the library built from this source, jaxlib and compiler lives."""
    from importlib import metadata

    key = hashlib.sha256()
    for source in SOURCES:
        key.update(source.read_bytes())
    key.update(metadata.version("jaxlib").encode())
    key.update(compiler.encode())
    return cache_dir / f"onednn_conv-{key.hexdigest()[:16]}.so"


def build(cache_dir: Path) -> Path:
    """Compile the kernel into ``cache_dir`` unless it is there; its path. ``RuntimeError``
    with one line (what is missing and how to install it) when it cannot be built."""
    compiler = _compiler()
    if compiler is None:
        raise RuntimeError("no C++ compiler found (install g++, or set CXX)")
    target = library_path(cache_dir, compiler)
    if target.is_file():
        return target
    import jax.ffi

    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        out = Path(tmp) / target.name
        cmd = [compiler, "-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-w",
               f"-I{jax.ffi.include_dir()}", *map(str, SOURCES), "-o", str(out), "-ldnnl"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            if "dnnl.hpp" in done.stderr or "-ldnnl" in done.stderr or "ldnnl" in done.stderr:
                raise RuntimeError("oneDNN's headers or library are missing "
                                   "(Debian/Ubuntu: apt-get install libdnnl-dev)")
            lines = done.stderr.strip().splitlines() or ["no message"]
            # the compiler's first error names the cause; its last line is often a caret
            first = next((line for line in lines if "error" in line), lines[-1])
            raise RuntimeError(f"the oneDNN kernel did not compile: {first.strip()}")
        os.replace(out, target)  # atomic: a concurrent build finds a whole file or none
    return target


def _describe(library, name: str) -> str:
    """What one of the library's ``Jstyle...Impl`` functions says: the oneDNN
    implementation that runs a kernel on this CPU, or ``error: ...`` where none does."""
    describe = getattr(library, name)
    describe.restype = ctypes.c_char_p
    return describe().decode()


@functools.cache
def _register(path: str) -> Kernels:
    import jax

    library = ctypes.CDLL(path)
    # The sort needs no particular instructions: registered on every CPU, first, once
    # (a CPU without oneDNN's convolutions raises below, and a later load comes back here).
    if not _SORTING[0]:
        for target, handler in ((SORT_TARGET, library.JstyleSortColumns),
                                (UNSORT_TARGET, library.JstyleUnsortColumns),
                                (MATCH_TARGET, library.JstyleMatchRows)):
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(handler), platform="cpu")
        _SORTING[0] = True
    implementation = _describe(library, "JstyleConv3x3Impl")
    if implementation.startswith("error"):
        # oneDNN builds no bfloat16 convolution for a CPU without AVX-512 (AVX2 only)
        raise NoKernelError(f"oneDNN has no bfloat16 convolution for this CPU "
                       f"({implementation.removeprefix('error: ')})")
    jax.ffi.register_ffi_target(TARGET, jax.ffi.pycapsule(library.JstyleConv3x3Bf16),
                                platform="cpu")
    winograd = _describe(library, "JstyleConv3x3WinogradImpl")
    if winograd.startswith("error"):
        winograd = None
    else:
        jax.ffi.register_ffi_target(WINOGRAD_TARGET,
                                    jax.ffi.pycapsule(library.JstyleConv3x3F32Winograd),
                                    platform="cpu")
    return Kernels(Path(path), implementation, winograd)


def load(cache_dir: Path) -> Kernels:
    """Build (once), load and register the kernel; ``RuntimeError`` with one line if any
    step fails. After it, :func:`conv3x3` may be traced."""
    try:
        path = build(cache_dir)
        return _register(str(path))
    except OSError as e:  # the library loads but libdnnl does not (removed since)
        raise RuntimeError(f"the oneDNN kernel does not load: {e}") from None


def winograd_jobs(params, height: int, width: int, deepest: str, batch: int = 1) -> list:
    """The kernel transforms the Winograd network makes on its first evaluation of an
    image ``height`` x ``width`` (``batch`` at once) up to the response ``deepest``: for
    each convolution with at least :data:`MIN_WINOGRAD_CHANNELS` channels on both sides, its
    shape ``(N, H, W, C, O)`` at that depth, its HWIO kernel from ``params`` and False
    (forward); then, in the same order, the input gradients' (``(N, H, W, O, C)``, the same
    kernel, True): the order a run needs them in (its targets are forward passes).
    Each pooling halves the size, rounding down (VGG-19's 2x2 ``VALID`` windows)."""
    import numpy as np

    from jstyle.layers import CONV_CHANNELS, downsampling, layer_index

    jobs = []
    for layer, (c, o) in CONV_CHANNELS.items():
        if layer_index(layer) > layer_index(deepest):
            break
        if min(c, o) < MIN_WINOGRAD_CHANNELS:
            continue
        h, w = height // downsampling(layer), width // downsampling(layer)
        kernel = np.ascontiguousarray(params[layer]["kernel"], np.float32)
        jobs.append(((batch, h, w, c, o), kernel, False))
    return jobs + [((n, h, w, o, c), kernel, True) for (n, h, w, c, o), kernel, _ in jobs]


def _library(cache_dir: Path):
    """The built library, loaded (not registered: no JAX needed), or None where it is not
    built yet."""
    compiler = _compiler()
    if compiler is None:
        return None
    path = library_path(cache_dir, compiler)
    if not path.is_file():
        return None
    try:
        return ctypes.CDLL(str(path))  # the same handle :func:`load` gets: one cache
    except OSError:
        return None


def _laid_out(library) -> int:
    count = library.JstyleKernelsLaidOut
    count.restype = ctypes.c_int64
    return int(count())


def prepare_winograd(cache_dir: Path, jobs: list, cancel=None) -> int:
    """Transform and keep the kernels of ``jobs`` (:func:`winograd_jobs`) in the library
    :func:`load` finds in ``cache_dir``, as the convolutions' first calls would: a run
    starts this on a thread of its own while the process is still starting (the kernel
    transforms are much of a warm start's first evaluation), and its first evaluation
    then finds them kept. It needs no JAX; where the library is not built yet, or the CPU
    has no Winograd kernel, it does nothing. ``cancel``: a ``threading.Event`` that stops
    it between two kernels. Returns how many it transformed."""
    library = _library(cache_dir)
    if library is None or _describe(library, "JstyleConv3x3WinogradImpl").startswith("error"):
        return 0
    prepare = library.JstylePrepareWinograd
    prepare.restype = ctypes.c_int
    prepare.argtypes = [ctypes.c_int64] * 5 + [ctypes.c_void_p, ctypes.c_int]
    before = _laid_out(library)
    for shape, kernel, flipped in jobs:
        if cancel is not None and cancel.is_set():
            break
        prepare(*shape, kernel.ctypes.data, int(flipped))
    return _laid_out(library) - before


def transforms_made(cache_dir: Path) -> int:
    """How many kernels the library in ``cache_dir`` has laid out for its convolutions in
    this process (Winograd transforms and bfloat16 reorders; -1 where it is not loaded and
    built)."""
    library = _library(cache_dir)
    return -1 if library is None else _laid_out(library)


def loaded() -> bool:
    """Whether :func:`load` has registered the kernels in this process."""
    return _register.cache_info().currsize > 0


#: Whether the sort is registered (also where the CPU has no oneDNN convolution, whose
#: load raises :class:`NoKernelError` after registering it).
_SORTING = [False]


def conv3x3(x, kernel, flipped: bool = False):
    """A 3x3, stride 1, SAME convolution of bfloat16 NHWC images ``(..., H, W, C)`` with a
    bfloat16 HWIO kernel ``(3, 3, C, O)``, through oneDNN (:func:`load` first): float32
    accumulation, responses rounded to bfloat16. The kernel in oneDNN's layout is kept per
    kernel content, as :func:`winograd_conv3x3`'s transform is. No derivative of its own:
    :func:`jstyle.vgg.conv3x3` differentiates it with the same call.

    ``flipped``: as :func:`winograd_conv3x3`'s."""
    import jax
    import jax.numpy as jnp

    out = jax.ShapeDtypeStruct((*x.shape[:-1], kernel.shape[-2 if flipped else -1]),
                               jnp.bfloat16)
    return jax.ffi.ffi_call(TARGET, out, vmap_method="expand_dims")(x, kernel,
                                                                   flipped=bool(flipped))


def winograd_conv3x3(x, kernel, flipped: bool = False):
    """A 3x3, stride 1, SAME convolution of float32 NHWC images ``(..., H, W, C)`` with a
    float32 HWIO kernel ``(3, 3, C, O)`` by oneDNN's Winograd kernel (:func:`load` first,
    and ``Kernels.winograd`` set). The kernel's transform is kept per kernel content, so a
    run's evaluations transform each layer's weights once. No derivative of its own:
    :func:`jstyle.vgg.winograd_conv3x3` differentiates it with the same call.

    ``flipped``: ``kernel`` is ``(3, 3, O, C)`` and the convolution is with its flipped,
    transposed self, ``flip(kernel, (0, 1)).swapaxes(2, 3)`` (the input gradient of the
    convolution with ``kernel``), made in the kernel's library once per kept transform
    rather than by XLA at every call."""
    import jax
    import jax.numpy as jnp

    out = jax.ShapeDtypeStruct((*x.shape[:-1], kernel.shape[-2 if flipped else -1]),
                               jnp.float32)
    return jax.ffi.ffi_call(WINOGRAD_TARGET, out, vmap_method="expand_dims")(
        x, kernel, flipped=bool(flipped))


@functools.cache
def _sorted():
    """The column sort's custom call, its gradient the permutation's inverse applied
    (the second handler), made once."""
    import jax
    import jax.numpy as jnp

    def call(X):
        shapes = (jax.ShapeDtypeStruct(X.shape, jnp.float32),
                  jax.ShapeDtypeStruct(X.shape, jnp.int32))
        return jax.ffi.ffi_call(SORT_TARGET, shapes, vmap_method="broadcast_all")(X)

    def backward(rows, g):
        out = jax.ShapeDtypeStruct(g.shape, g.dtype)
        return (jax.ffi.ffi_call(UNSORT_TARGET, out, vmap_method="broadcast_all")(g, rows),)

    sort = jax.custom_vjp(lambda X: call(X)[0])
    sort.defvjp(call, backward)
    return sort


def match_rows(X, T):
    """Each row of ``T`` (float32 ``(..., M)``, sorted values) put at the ranks of ``X``'s
    values in the same row: ``out[..., rank(X[..., i])] = T[..., i]``, ranks stable (equal
    values in order of position). With ``T`` the sorted target of a 1-D optimal transport,
    ``out`` is what each value of ``X`` is matched to. No derivative: a constant of the
    losses that use it. Through the kernel where :func:`load` registered it on the CPU,
    else ``jnp.argsort``."""
    import jax
    import jax.numpy as jnp

    X, T = jnp.asarray(X), jnp.asarray(T)
    if X.shape != T.shape:
        raise ValueError(f"match_rows: X {X.shape} and T {T.shape} differ in shape")
    X, T = jax.lax.stop_gradient(X), jax.lax.stop_gradient(T)
    if not (_SORTING[0] and X.dtype == jnp.float32 and T.dtype == jnp.float32
            and X.ndim >= 1 and jax.default_backend() == "cpu"):
        ranks = jnp.argsort(jnp.argsort(X, axis=-1, stable=True), axis=-1, stable=True)
        return jnp.take_along_axis(T, ranks, axis=-1)
    out = jax.ShapeDtypeStruct(X.shape, jnp.float32)
    return jax.ffi.ffi_call(MATCH_TARGET, out, vmap_method="broadcast_all")(X, T)


def sort_columns(X):
    """``jnp.sort(X, axis=-2)`` for float32 ``(..., M, K)``: every column sorted over its M
    rows, stably (equal values keep their order, as ``jnp.sort``'s), with the same
    gradient (each sorted value's back to the row it came from). Through the kernel where
    :func:`load` registered it on the CPU, else ``jnp.sort``."""
    import jax
    import jax.numpy as jnp

    X = jnp.asarray(X)
    if not (_SORTING[0] and X.dtype == jnp.float32 and X.ndim >= 2
            and jax.default_backend() == "cpu"):
        return jnp.sort(X, axis=-2)
    return _sorted()(X)
