"""What a run leaves on disk, and how an interrupted run is picked up again.

Beside ``out.png`` a run writes ``out.json`` (its record: resolved config, losses,
history, timings, ...). A run that stops early also writes ``out.resume.npy``,
the unclipped float32 image, and marks the record ``incomplete``; ``--resume``
continues from it. Every file is written atomically.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from jstyle.errors import JStyleError
from jstyle.fileio import atomic_path, write_bytes_atomic
from jstyle.images import save_png


def sidecar_path(output: Path) -> Path:
    """``out.png`` -> ``out.json``."""
    return output.with_suffix(".json")


def frame_path(output: Path, iteration: int) -> Path:
    """``out.png`` -> ``out_00100.png``: the image at an iteration (``save_every``)."""
    return output.with_name(f"{output.stem}_{iteration:05d}.png")


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
    frames = [to_array(read_image(frame_path(output, i))) for i in steps] + [image]
    labels = [str(i) for i in steps] + [str(config["iterations"])]
    gif, sheet = progression_paths(output)
    report.progression_gif(frames, gif)
    report.montage(frames, sheet, labels=labels)


def resume_path(output: Path) -> Path:
    """``out.png`` -> ``out.resume.npy``: the exact image an incomplete run stopped at."""
    return output.with_suffix(".resume.npy")


def write_outputs(output: Path, image: np.ndarray, record: dict[str, Any]) -> None:
    """The PNG (its config in a text chunk), the JSON record and, for an incomplete run,
    the float image to resume from (removed again once a run completes)."""
    save_png(output, image, {"jstyle:config": json.dumps(record["config"])})
    if record.get("incomplete"):
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(image, np.float32), allow_pickle=False)
        with atomic_path(resume_path(output)) as tmp:
            tmp.write_bytes(buffer.getvalue())
    else:
        resume_path(output).unlink(missing_ok=True)
    write_bytes_atomic(sidecar_path(output), json.dumps(record, indent=2).encode())


def config_from_image(path: str | Path) -> dict[str, Any]:
    """The config a jstyle PNG carries in its ``jstyle:config`` text chunk."""
    from jstyle.images import read_png_text

    text = read_png_text(Path(path)).get("jstyle:config")
    if text is None:
        raise JStyleError(f"{path} carries no jstyle config (only PNGs written by jstyle do)")
    try:
        values = json.loads(text)
    except ValueError:
        raise JStyleError(f"the jstyle config in {path} is damaged (not JSON)") from None
    if not isinstance(values, dict):
        raise JStyleError(f"the jstyle config in {path} is damaged (not a mapping)")
    return values


def read_resume(output: Path, config: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    """The image and record of the interrupted run at ``output``, which must have been made
    with the same ``config`` (as :meth:`jstyle.config.Config.to_dict` gives it)."""
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
    try:
        image = np.load(resume_path(output), allow_pickle=False)
    except (OSError, ValueError) as e:
        raise JStyleError(f"cannot read {resume_path(output)} to resume: {e}") from None
    return image, record
