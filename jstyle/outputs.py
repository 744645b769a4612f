"""What a run leaves on disk, and how an interrupted run is picked up again.

Beside ``out.png`` (or ``out.tif``: the ``output_format``, see
:func:`jstyle.options.output_format_for`) a run writes ``out.json`` (its record: resolved
config, losses, history, timings, the file's format and what it carries over from the
content photo for printing, ...). A run that stops early also writes ``out.resume.npz`` -- the
phase it stopped in, its iterations there, the float32 image it had reached and the
optimiser's state (the L-BFGS history included), in a versioned format -- and marks the
record ``incomplete``; ``--resume`` continues from it exactly. Every file is written
atomically.
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from jstyle.errors import JStyleError
from jstyle.fileio import write_bytes_atomic
from jstyle.images import PrintInfo, save_image
from jstyle.options import OUTPUT_BITS, output_format_for


def sidecar_path(output: Path) -> Path:
    """``out.png`` -> ``out.json``."""
    return output.with_suffix(".json")


def frame_path(output: Path, iteration: int) -> Path:
    """``out.png`` -> ``out_00100.png``: the image at an iteration (``save_every``), in the
    output's format (``out.tif`` -> ``out_00100.tif``)."""
    return output.with_name(f"{output.stem}_{iteration:05d}{output.suffix}")


def save_frame(output: Path, iteration: int, image: np.ndarray, config,
               info: PrintInfo | None = None) -> Path:
    """The image at an iteration (``save_every``) beside ``output``, written as the output
    is (its format, the content photo's ICC profile and DPI)."""
    return save_image(frame_path(output, iteration), image,
                      output_format_for(str(output), config.output_format), info=info)


def loss_curve_path(output: Path) -> Path:
    """``out.png`` -> ``out.loss.png``."""
    return output.with_suffix(".loss.png")


def progression_paths(output: Path) -> tuple[Path, Path]:
    """``out.png`` -> ``out_progress.gif`` and ``out_progress.png`` (``save_every``)."""
    return output.with_name(f"{output.stem}_progress.gif"), \
        output.with_name(f"{output.stem}_progress.png")


def write_report(output: Path, record: dict[str, Any], image: np.ndarray) -> None:
    """The loss curve beside the output (total after every iteration, the weighted content
    and style terms at every progress report) and, for a finished run with ``save_every``,
    the progression as an animated GIF and a montage of the saved frames."""
    from jstyle import report
    from jstyle.images import read_image, to_array

    config = record["config"]
    terms = record.get("terms_history", [])
    series = {
        "total": list(enumerate(record["history"], start=1)),
        "content": [(t["iteration"], config["content_weight"] * t["content"]) for t in terms],
        "style": [(t["iteration"], config["style_weight"] * t["style"]) for t in terms],
    }
    report.loss_curve(series, loss_curve_path(output), title=f"{output.name}: loss "
                      f"(content x {config['content_weight']:g}, style x "
                      f"{config['style_weight']:g})")
    every = config.get("save_every") or 0
    if not every or record.get("incomplete"):
        return
    steps = [i for i in range(every, config["iterations"], every) if frame_path(output, i).exists()]
    frames = [to_array(read_image(frame_path(output, i), deep=True)) for i in steps] + [image]
    labels = [str(i) for i in steps] + [str(config["iterations"])]
    gif, sheet = progression_paths(output)
    report.progression_gif(frames, gif)
    report.montage(frames, sheet, labels=labels)


def resume_path(output: Path) -> Path:
    """``out.png`` -> ``out.resume.npz``: where an incomplete run stopped, exactly."""
    return output.with_suffix(".resume.npz")


def _legacy_resume_path(output: Path) -> Path:
    """``out.resume.npy``: jstyle 0.2's resume file (the full-size image only)."""
    return output.with_suffix(".resume.npy")


#: The resume file's format name and version (a file of another version is refused).
RESUME_FORMAT = "jstyle-resume"
RESUME_VERSION = 1


class SavedPoint(NamedTuple):
    """The contents of a resume file: phase (index into the run's phases), iterations done
    in it, the image there (the phase's size, the colours optimised), and the optimiser's
    state as leaves and their structure (None: restart the optimiser from the image)."""

    phase: int
    done: int
    image: np.ndarray
    leaves: list[np.ndarray] | None
    structure: str | None


def _resume_bytes(point: SavedPoint) -> bytes:
    meta = {"format": RESUME_FORMAT, "version": RESUME_VERSION, "phase": point.phase,
            "done": point.done, "structure": point.structure,
            "leaves": None if point.leaves is None else len(point.leaves)}
    arrays = {"image": np.asarray(point.image, np.float32),
              "meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    for i, leaf in enumerate(point.leaves or []):
        arrays[f"state_{i}"] = np.asarray(leaf)
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    return buffer.getvalue()


def write_outputs(output: Path, image: np.ndarray, record: dict[str, Any],
                  resume: SavedPoint | None = None, info: PrintInfo | None = None) -> None:
    """The image in its format (its config in a PNG text chunk or the TIFF's description;
    ``info``: the content photo's ICC profile and DPI), the JSON record and, for an
    incomplete run, the resume file (removed again once a run completes)."""
    image_format = output_format_for(str(output), record["config"].get("output_format"))
    save_image(output, image, image_format, {"jstyle:config": json.dumps(record["config"])},
               info)
    if record.get("incomplete") and resume is not None:
        write_bytes_atomic(resume_path(output), _resume_bytes(resume))
    else:
        resume_path(output).unlink(missing_ok=True)
    _legacy_resume_path(output).unlink(missing_ok=True)
    write_bytes_atomic(sidecar_path(output), json.dumps(record, indent=2).encode())


def config_from_image(path: str | Path) -> dict[str, Any]:
    """The config a jstyle image carries: a PNG's ``jstyle:config`` text chunk, a TIFF's
    description (:func:`jstyle.images.read_image_text`)."""
    from jstyle.images import read_image_text

    text = read_image_text(Path(path)).get("jstyle:config")
    if text is None:
        raise JStyleError(f"{path} carries no jstyle config (only the PNGs and TIFFs jstyle "
                          "writes do)")
    try:
        values = json.loads(text)
    except ValueError:
        raise JStyleError(f"the jstyle config in {path} is damaged (not JSON)") from None
    if not isinstance(values, dict):
        raise JStyleError(f"the jstyle config in {path} is damaged (not a mapping)")
    return values


def read_resume(output: Path, config: dict[str, Any]) -> tuple[SavedPoint, dict[str, Any]]:
    """Where the interrupted run at ``output`` stopped, and its record; it must have been
    made with the same ``config`` (as :meth:`jstyle.config.Config.to_dict` gives it)."""
    sidecar = sidecar_path(output)
    try:
        record = json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JStyleError(f"nothing to resume: {sidecar} does not exist") from None
    except (OSError, ValueError) as e:
        raise JStyleError(f"cannot read {sidecar} to resume: {e}") from None
    if not record.get("incomplete"):
        raise JStyleError(f"nothing to resume: the run recorded in {sidecar} is complete")
    config = json.loads(json.dumps(config))
    if record.get("config") != config:
        changed = sorted(k for k in config if record.get("config", {}).get(k) != config[k])
        raise JStyleError(f"{sidecar} was made with other settings ({', '.join(changed)}); "
                          "resume with the same config and options")
    path = resume_path(output)
    if not path.exists() and _legacy_resume_path(output).exists():  # jstyle 0.2: the image
        try:
            image = np.load(_legacy_resume_path(output), allow_pickle=False)
        except (OSError, ValueError) as e:
            raise JStyleError(f"cannot read {_legacy_resume_path(output)} to resume: {e}") \
                from None
        return SavedPoint(len(config.get("coarse_sizes") or []), len(record["history"]),
                          image, None, None), record
    fix = "start the run again without --resume"
    try:
        with np.load(path, allow_pickle=False) as saved:
            meta = json.loads(saved["meta"].tobytes().decode())
            if meta.get("format") != RESUME_FORMAT or meta.get("version") != RESUME_VERSION:
                raise JStyleError(f"{path} is not a jstyle resume file of version "
                                  f"{RESUME_VERSION}; {fix}")
            leaves = None if meta["leaves"] is None else \
                [saved[f"state_{i}"] for i in range(meta["leaves"])]
            point = SavedPoint(int(meta["phase"]), int(meta["done"]), saved["image"], leaves,
                               meta["structure"])
    except FileNotFoundError:
        raise JStyleError(f"cannot resume: {path} is missing; {fix}") from None
    except (OSError, ValueError, KeyError) as e:
        raise JStyleError(f"cannot read {path} to resume ({e}); {fix}") from None
    return point, record


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory so far (None where the OS does not say)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def weights_record(weights) -> dict[str, Any]:
    """Which weights a run used: file, digests, source, variant (and calibration)."""
    return {"path": str(weights.path), "sha256": weights.sha256,
            "params_sha256": weights.params_sha256, "source": weights.source,
            "variant": weights.variant,
            **({"calibration": weights.normalization.calibration}
               if weights.normalization else {})}


def balance_record(config, content_weight: float, result) -> dict[str, Any]:
    """``balance: auto``'s sidecar entry: the ratio asked for, the alpha it set at the
    full size, and the weighted terms' ratio alpha L_content / (beta L_style) the delivered
    image ends at (None when the run stopped before the full size)."""
    out: dict[str, Any] = {"ratio": config.balance_ratio, "content_weight": content_weight}
    terms = result.delivered
    if terms and terms.get("style"):
        out["delivered_terms_ratio"] = (content_weight * terms["content"]
                                        / (config.style_weight * terms["style"]))
    return out


def icc_description(profile: bytes) -> str | None:
    """An ICC profile's own description (``sRGB IEC61966-2.1``), None where Pillow's
    ImageCms is missing or cannot read the profile (it is embedded all the same)."""
    try:
        from PIL import ImageCms
    except ImportError:  # Pillow built without littlecms
        return None
    try:
        text = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(profile)))
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None
    return text.strip() or None


def output_record(config, info: PrintInfo | None) -> dict[str, Any]:
    """The sidecar's account of the file written: its format and bits per channel, and what
    it carries over from the content photo for printing: the ICC profile (its size, SHA-256
    and description) and the resolution in DPI, each None where the photo had none."""
    import hashlib

    info = info or PrintInfo()
    icc = info.icc_profile
    return {
        "format": config.image_format, "bits": OUTPUT_BITS[config.image_format],
        "icc_profile": None if not icc else {
            "bytes": len(icc), "sha256": hashlib.sha256(icc).hexdigest(),
            "description": icc_description(icc)},
        "dpi": None if info.dpi is None else [round(d, 4) for d in info.dpi],
    }


def run_record(config, inputs, weights, result, stages: list, history: list[float],
               terms_history: list[dict], evaluations: int, estimate: int,
               started: float) -> dict[str, Any]:
    """The JSON sidecar of one output: its config, inputs, losses, timings and environment."""
    import jax

    from jstyle import __version__
    from jstyle import precision as precisions
    from jstyle.memory import tiling_record

    height, width = inputs.content.shape[:2]
    record = {
        "jstyle_version": __version__,
        "config": config.to_dict(),
        "inputs": inputs.sources,
        "size": {"height": height, "width": width},
        "losses": result.terms,
        # eq. 7 of the image as saved (quantised at output.bits); "losses" are the
        # optimiser's, of its float image
        "delivered_losses": result.delivered,
        "output": output_record(config, inputs.print_info),
        "history": history,
        "terms_history": terms_history,
        "coarse_stages": stages,
        "evaluations": evaluations,
        "evaluations_per_iteration": result.evaluations_history,
        "timings": {**result.timings, "total_s": time.perf_counter() - started},
        "memory": {"estimate_bytes": estimate, "peak_rss_bytes": peak_rss_bytes()},
        "tiling": tiling_record(height, width, config),
        "jax": {
            "version": jax.__version__,
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
            "processes": jax.process_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""),  # what XLA ran with (jstyle.xla_cpu)
        },
        "python": platform.python_version(),
        "weights": weights_record(weights),
        "precision": precisions.record(precisions.resolve(config.precision, config.sharding,
                                                         config.winograd)),
    }
    if config.preserve_color == "luminance":  # the file recombines it with the photo's colours
        record["delivered_losses_note"] = (f"of the optimised image in {config.image_bits} "
                                           "bits, before the content's colours were restored")
    return record
