"""Compose the README's example image: content | style | result, from a finished run.

    python -m jstyle.run --config configs/quick.yaml
    python scripts/readme_example.py out/quick.png docs/default_example.png

Only jstyle's own default images may be shown (never ../shared/images), so the run
must have used the defaults; the panels are rebuilt from the run's sidecar.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from jstyle import default_images
from jstyle.images import fit_longest, from_array, to_array


def main(result: str, output: str) -> int:
    record = json.loads(Path(result).with_suffix(".json").read_text())
    if record["inputs"]["content"] != f"default:{default_images.DEFAULT_CONTENT_NAME}" or \
            record["inputs"]["style"] != [f"default:{default_images.DEFAULT_STYLE_NAME}"]:
        print("readme_example: the run must use jstyle's default images", file=sys.stderr)
        return 2
    image = to_array(Image.open(result))
    h, w = image.shape[:2]
    content = to_array(fit_longest(from_array(default_images.default_content_image()), max(h, w)))
    style = default_images.swirl_painting(h, w)
    gap = np.ones((h, 4, 3), np.float32)
    strip = np.concatenate([content, gap, style, gap, image], axis=1)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    from_array(strip).save(output, optimize=True)
    print(f"wrote {output} ({Path(output).stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
