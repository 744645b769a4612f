"""Re-render the README's gallery and example image from jstyle's own default images.

    python scripts/make_gallery.py            # about 10 minutes on 2 CPU cores

Every image is made by the commands the README's gallery table shows (the command
line, or for spatial control the Python API), on jstyle's default photo and generated
paintings only -- never ../shared/images. Outputs go to docs/gallery/ and
docs/default_example.png; each is checked to stay under 300 KB.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "gallery"
LIMIT = 300 * 1024
QUICK = ["--config", "configs/quick.yaml", "--set", "iterations=250", "--quiet"]

#: (gallery file, extra command-line arguments, output file of the run to keep).
RUNS = [
    ("plain.png", [], "out.png"),
    ("luminance.png", ["--set", "preserve_color=luminance"], "out.png"),
    ("scale_half.png", ["--set", "style_scale=0.5"], "out.png"),
    ("coarse_to_fine.gif", ["--set", "coarse_sizes=[128]", "--set", "coarse_iterations=200",
                            "--set", "iterations=150", "--set", "save_every=50"],
     "out_progress.gif"),
]


def _run(args: list[str], folder: Path) -> None:
    command = [sys.executable, "-m", "jstyle.run", *args, "--output", str(folder / "out.png")]
    print("$", " ".join(command[1:]), flush=True)
    subprocess.run(command, check=True, cwd=ROOT)


def _keep(source: Path, name: str) -> None:
    target = GALLERY / name
    shutil.copyfile(source, target)
    size = target.stat().st_size
    if size > LIMIT:
        raise SystemExit(f"{target} is {size // 1024} KB, over the gallery's 300 KB")
    print(f"wrote {target.relative_to(ROOT)} ({size // 1024} KB)", flush=True)


def spatial_control(path: Path) -> None:
    """The gallery's masks example, through the Python API."""
    import jstyle
    from jstyle import default_images
    from jstyle.config import read_yaml

    height, width = 170, 256  # the default photo at size 256
    left = np.zeros((height, width), np.float32)
    left[:, : width // 2] = 1.0
    styles = [default_images.swirl_painting(height, width),
              default_images.mosaic_painting(height, width)]
    settings = {k: v for k, v in read_yaml(ROOT / "configs" / "quick.yaml").items()
                if k != "output"}
    settings["iterations"] = 250
    image = jstyle.stylize(None, styles, masks=[left, 1.0 - left], **settings)
    image.save(path, optimize=True)


def main() -> int:
    GALLERY.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, extra, kept in RUNS:
            _run(QUICK + extra, folder)
            _keep(folder / kept, name)
            if name.endswith(".gif"):
                _keep(folder / "out.loss.png", name.replace(".gif", ".loss.png"))
        spatial_control(folder / "masks.png")
        _keep(folder / "masks.png", "masks.png")
        _run(["--config", "configs/quick.yaml", "--quiet"], folder)
        subprocess.run([sys.executable, "scripts/readme_example.py", str(folder / "out.png"),
                        "docs/default_example.png"], check=True, cwd=ROOT)
    print(f"gallery made in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
