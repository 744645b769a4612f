"""Images jstyle uses when the user passes none, so it runs offline on a fresh machine.

The default content image is scikit-image's bundled photograph of Chelsea the cat.
The default style image is drawn here, procedurally and deterministically: an
original "painting" of swirling brush strokes in a bold blue-and-gold palette, in
the spirit of a Post-Impressionist night sky. It is built from

* a smooth flow field: a few vortices (some spiralling), small swirled "stars" and
  a gentle wavy drift, all given as one stream function;
* brush-stroke texture: coarse white noise smeared along the field lines by a
  vectorised line-integral convolution (LIC), so every stroke follows the flow;
* colour: a palette indexed by bands of the stream function, perturbed per stroke
  by a second LIC texture, with glowing yellow stars and a large moon.

All lengths are fractions of the image size, so strokes look alike at 256 and 512.
"""

from __future__ import annotations

import numpy as np

DEFAULT_CONTENT_NAME = "chelsea"
DEFAULT_STYLE_NAME = "swirl_painting"

# Blue night-sky ramp, from deep navy through ultramarine and cobalt to cyan and a pale
# whitish blue; stars and moon are coloured separately with _GOLD.
_SKY = np.array(
    [
        [0.03, 0.06, 0.20],
        [0.07, 0.13, 0.42],
        [0.12, 0.24, 0.62],
        [0.20, 0.40, 0.75],
        [0.35, 0.60, 0.82],
        [0.55, 0.78, 0.86],
        [0.86, 0.91, 0.84],
    ],
    dtype=np.float32,
)
# Hills, from lit to shadowed: slate blue, muted green, dark teal, near-black navy.
_LAND = np.array(
    [
        [0.30, 0.42, 0.55],
        [0.22, 0.36, 0.30],
        [0.10, 0.22, 0.26],
        [0.05, 0.10, 0.18],
        [0.02, 0.04, 0.09],
    ],
    dtype=np.float32,
)
_GOLD = np.array(
    [
        [0.80, 0.42, 0.08],
        [0.93, 0.62, 0.14],
        [0.98, 0.82, 0.25],
        [1.00, 0.95, 0.62],
        [1.00, 1.00, 0.90],
    ],
    dtype=np.float32,
)


def _ramp(palette: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Piecewise-linear colour ramp: ``t`` in [0, 1] -> RGB, shape t.shape + (3,)."""
    n = len(palette) - 1
    s = np.clip(t, 0.0, 1.0) * n
    i = np.minimum(s.astype(np.int32), n - 1)
    f = (s - i)[..., None]
    return palette[i] * (1.0 - f) + palette[i + 1] * f


def _coarse_noise(rng: np.random.Generator, height: int, width: int, grain: float) -> np.ndarray:
    """White noise whose cells are about ``grain`` pixels wide, bilinearly upsampled."""
    gh = max(2, int(round(height / grain)) + 1)
    gw = max(2, int(round(width / grain)) + 1)
    small = rng.random((gh, gw), dtype=np.float32)
    yy = np.linspace(0.0, gh - 1.0, height, dtype=np.float32)
    xx = np.linspace(0.0, gw - 1.0, width, dtype=np.float32)
    from scipy import ndimage  # here: 0.3 s to import, which a run on one's own photos skips

    return ndimage.map_coordinates(small, np.meshgrid(yy, xx, indexing="ij"), order=1)


def _lic(
    textures: np.ndarray,
    vy: np.ndarray,
    vx: np.ndarray,
    steps: int,
    step_len: float,
) -> np.ndarray:
    """Line-integral convolution of ``textures`` (k, H, W) along the unit field (vy, vx).

    Each pixel averages the textures, sampled bilinearly, at ``steps`` points traced
    forwards and backwards along its streamline (Euler steps of ``step_len`` pixels),
    with a tapering weight so strokes fade out at their ends like a brush.
    """
    k, h, w = textures.shape
    flat_vy = vy.ravel()
    flat_vx = vx.ravel()
    flat_tex = textures.reshape(k, -1)
    y0, x0 = np.mgrid[0:h, 0:w].astype(np.float32)
    total = textures.copy()
    weight_sum = 1.0
    for direction in (1.0, -1.0):
        y = y0.copy()
        x = x0.copy()
        for s in range(1, steps + 1):
            # The field is smooth, so its nearest sample is enough to steer by.
            iy = np.clip(np.rint(y), 0, h - 1).astype(np.int32)
            ix = np.clip(np.rint(x), 0, w - 1).astype(np.int32)
            idx = iy * w + ix
            y += direction * step_len * flat_vy[idx].reshape(h, w)
            x += direction * step_len * flat_vx[idx].reshape(h, w)
            np.clip(y, 0.0, h - 1.001, out=y)
            np.clip(x, 0.0, w - 1.001, out=x)
            fy = np.floor(y)
            fx = np.floor(x)
            ty = y - fy
            tx = x - fx
            i00 = (fy.astype(np.int32) * w + fx.astype(np.int32)).ravel()
            wt = 1.0 - (s / (steps + 1.0)) ** 2
            sample = (
                flat_tex[:, i00] * ((1 - ty) * (1 - tx)).ravel()
                + flat_tex[:, i00 + 1] * ((1 - ty) * tx).ravel()
                + flat_tex[:, i00 + w] * (ty * (1 - tx)).ravel()
                + flat_tex[:, i00 + w + 1] * (ty * tx).ravel()
            )
            total += wt * sample.reshape(k, h, w)
            weight_sum += wt
    return total / weight_sum


def _stretch(a: np.ndarray, lo: float = 1.0, hi: float = 99.0) -> np.ndarray:
    """Map the ``lo``..``hi`` percentile range of ``a`` onto [0, 1], clipped."""
    p0, p1 = np.percentile(a, [lo, hi])
    return np.clip((a - p0) / max(p1 - p0, 1e-6), 0.0, 1.0)


def swirl_painting(height: int = 512, width: int = 512, seed: int = 0) -> np.ndarray:
    """Draw an original swirly night-sky "painting" with visible brush strokes.

    Args:
        height: image height in pixels.
        width: image width in pixels.
        seed: seed for the stroke noise and the small variations of the layout; the
            result is fully determined by ``(height, width, seed)``.

    Returns:
        float32 RGB array of shape (height, width, 3) with values in [0, 1].
    """
    if height < 8 or width < 8:
        raise ValueError(f"swirl_painting needs at least 8x8 pixels, not {height}x{width}")
    rng = np.random.default_rng(seed)
    scale = float(min(height, width))

    # Coordinates in units of the shorter side; the layout is placed in frame fractions.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    v = yy / scale
    u = xx / scale
    hh = height / scale
    ww = width / scale

    def jitter(amount: float) -> float:
        return float(rng.uniform(-amount, amount))

    # Stream function: a gentle wavy drift to the right, plus vortices.
    phase = jitter(np.pi)
    psi = 0.55 * (v + 0.06 * np.sin(2 * np.pi * (1.3 * u + 0.2 * v) + phase))
    # Spiralling (divergent) part of the field, added to the velocity separately.
    phi = np.zeros_like(u)
    # (x, y as frame fractions, radius, strength, spiral)
    vortices = [
        (0.42 + jitter(0.04), 0.40 + jitter(0.04), 0.17, 1.6, 0.35),
        (0.70 + jitter(0.04), 0.30 + jitter(0.04), 0.11, -1.2, 0.0),
        (0.18 + jitter(0.04), 0.25 + jitter(0.04), 0.10, 1.0, 0.0),
        (0.80 + jitter(0.03), 0.14 + jitter(0.03), 0.10, 1.4, 0.0),  # the moon
        (0.20 + jitter(0.04), 0.72 + jitter(0.04), 0.14, -1.1, 0.2),
        (0.65 + jitter(0.04), 0.70 + jitter(0.04), 0.13, 1.2, 0.0),
    ]
    for cx, cy, r, strength, spiral in vortices:
        d2 = (u - cx * ww) ** 2 + (v - cy * hh) ** 2
        g = np.exp(-d2 / (2 * r * r))
        psi += strength * r * g
        phi += spiral * strength * r * g

    # Stars: small tight vortices at random spots (keeping away from each other a bit).
    moon_x, moon_y, moon_r = vortices[3][0] * ww, vortices[3][1] * hh, 0.06
    stars: list[tuple[float, float, float]] = []
    for _ in range(9):
        for _attempt in range(30):
            sx, sy = float(rng.uniform(0.06, 0.94)), float(rng.uniform(0.06, 0.58))
            far_from_stars = all((sx - a) ** 2 + (sy - b) ** 2 > 0.02 for a, b, _ in stars)
            far_from_moon = (sx * ww - moon_x) ** 2 + (sy * hh - moon_y) ** 2 > 0.045
            if far_from_stars and far_from_moon:
                break
        stars.append((sx, sy, float(rng.uniform(0.018, 0.032))))
    star_core = np.zeros_like(u)  # 1 inside a star's (or the moon's) disc
    star_halo = np.zeros_like(u)  # glow around it, fading outwards
    star_ring = np.zeros_like(u)  # 0..1 ring pattern inside the glow
    star_centre = np.zeros_like(u)  # 1 at a star's centre, 0 at its rim
    for i, (sx, sy, r) in enumerate([*stars, (moon_x / ww, moon_y / hh, moon_r)]):
        d = np.sqrt((u - sx * ww) ** 2 + (v - sy * hh) ** 2)
        if i < len(stars):
            psi += 1.4 * r * np.exp(-(d * d) / (2 * (2.0 * r) ** 2)) * (1 if i % 2 else -1)
        star_core = np.maximum(star_core, np.clip((r - d) * scale / 2.0, 0.0, 1.0))
        star_centre = np.maximum(star_centre, np.clip(1.0 - d / r, 0.0, 1.0))
        halo = np.exp(-np.maximum(d - r, 0.0) / (1.6 * r))
        closer = halo > star_halo
        star_ring = np.where(closer, 0.5 + 0.5 * np.cos(2 * np.pi * (d - r) / (1.3 * r)), star_ring)
        star_halo = np.maximum(star_halo, halo)

    # Rolling hills along the bottom; there the strokes follow the hill line instead.
    hill = (
        0.80
        + 0.05 * np.sin(2 * np.pi * (0.9 * u / ww) + phase)
        + 0.025 * np.sin(2 * np.pi * (2.7 * u / ww) + 1.0)
    ) * hh
    land = np.clip((v - hill) * scale / 2.0, 0.0, 1.0)
    land_soft = np.clip((v - hill + 0.03) / 0.06, 0.0, 1.0)
    psi_land = v - hill + 0.015 * np.sin(2 * np.pi * 5.0 * u / ww + 3.0 * v)

    # Velocity: perpendicular gradient of psi (swirl) + gradient of phi (spiral outwards).
    def unit_field(stream: np.ndarray, pot: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        sy_, sx_ = np.gradient(stream)
        fy, fx = -sx_, sy_
        if pot is not None:
            py_, px_ = np.gradient(pot)
            fy, fx = fy + py_, fx + px_
        n = np.sqrt(fy * fy + fx * fx) + 1e-12
        return fy / n, fx / n

    vy_sky, vx_sky = unit_field(psi, phi)
    vy_land, vx_land = unit_field(psi_land, None)
    vy = vy_sky * (1 - land_soft) + vy_land * land_soft
    vx = vx_sky * (1 - land_soft) + vx_land * land_soft
    norm = np.sqrt(vy * vy + vx * vx) + 1e-12
    vy = (vy / norm).astype(np.float32)
    vx = (vx / norm).astype(np.float32)

    # Stroke texture: two coarse noises smeared along the flow.
    grain = max(1.0, scale / 140.0)
    tex = np.stack(
        [
            _coarse_noise(rng, height, width, grain),
            _coarse_noise(rng, height, width, 3.0 * grain),
        ]
    )
    steps = 20
    step_len = scale / 512.0 * 1.6
    lic = _lic(tex, vy, vx, steps, step_len)
    fine = _stretch(lic[0])
    broad = _stretch(lic[1])

    # Sky colour: bands of the stream function, perturbed per stroke, then partly
    # posterised so that strokes read as separate dabs of paint.
    bands = 0.5 + 0.5 * np.sin(psi * 38.0 + 1.3 * (broad - 0.5))
    t_sky = 0.15 + 0.55 * bands + 0.5 * (fine - 0.5) + 0.15 * (broad - 0.5)
    levels = len(_SKY) - 1
    t_sky = 0.45 * t_sky + 0.55 * np.round(t_sky * levels) / levels
    img = _ramp(_SKY, t_sky)

    # Golden swirls: some bands of the stream function turn yellow/orange.
    gold_band = np.clip((np.sin(psi * 11.0 + 2.0) - 0.62) / 0.2, 0.0, 1.0)
    gold_band *= np.clip(broad * 1.6 - 0.3, 0.0, 1.0) * (1 - land_soft)
    gold = _ramp(_GOLD, 0.25 + 0.6 * fine)
    img = img * (1 - 0.75 * gold_band[..., None]) + gold * (0.75 * gold_band[..., None])

    # Stars and moon: yellow-white cores inside ringed haloes, all carrying the strokes.
    halo_a = np.clip(1.5 * star_halo - 0.45 * (1 - fine) - 0.1, 0.0, 0.95)[..., None]
    ring = star_ring[..., None]
    halo_gold = _ramp(_GOLD, 0.5 + 0.4 * star_halo + 0.3 * (fine - 0.5))
    halo_col = halo_gold * ring + _ramp(_SKY, 0.75 + 0.3 * fine) * (1 - ring)
    img = img * (1 - halo_a) + halo_col * halo_a
    core_col = _ramp(_GOLD, 0.05 + 0.45 * fine + 0.15 * broad + 0.5 * star_centre)
    img = img * (1 - star_core[..., None]) + core_col * star_core[..., None]

    # The hills: dark blue-greens and slate blues, with a few ochre strokes.
    land_t = 0.55 * fine + 0.45 * broad + 0.25 * np.clip((v - hill) / 0.15, 0.0, 1.0) - 0.1
    land_t = 0.5 * land_t + 0.5 * np.round(land_t * 4.0) / 4.0
    land_col = _ramp(_LAND, 1.0 - land_t)
    ochre = np.clip((fine - 0.82) / 0.1, 0.0, 1.0) * np.clip(broad * 2.0 - 0.8, 0.0, 1.0)
    ochre = 0.8 * ochre[..., None]
    land_col = land_col * (1 - ochre) + np.array([0.66, 0.54, 0.24], np.float32) * ochre
    img = img * (1 - land[..., None]) + land_col * land[..., None]

    # Impasto: a little light from the upper left on the stroke relief.
    relief_y, relief_x = np.gradient(fine)
    shade = 1.0 + 0.9 * (-(relief_y + relief_x)) * (scale / 512.0)
    img = img * np.clip(shade, 0.85, 1.15)[..., None]
    return np.clip(img, 0.0, 1.0).astype(np.float32)


# Stained glass, warm: crimson, vermilion, orange, amber, ochre, with a few deep-teal panes.
_GLASS = np.array(
    [
        [0.55, 0.05, 0.08],
        [0.80, 0.18, 0.08],
        [0.93, 0.45, 0.10],
        [0.98, 0.70, 0.20],
        [0.78, 0.58, 0.22],
        [0.05, 0.35, 0.38],
    ],
    dtype=np.float32,
)


def mosaic_painting(height: int = 512, width: int = 512, seed: int = 0) -> np.ndarray:
    """Draw an original stained-glass "mosaic": warm panes between dark lead lines.

    A second style for examples that need two (spatial control, several styles): flat
    angular panes where :func:`swirl_painting` has flowing strokes, warm where it is blue.
    Panes are the cells of a random Voronoi tessellation (about 14 across the shorter
    side), each a palette colour with a soft glow towards its centre and a faint grain.

    Args:
        height: image height in pixels.
        width: image width in pixels.
        seed: seed of the tessellation and colours; the result is fully determined by
            ``(height, width, seed)``.

    Returns:
        float32 RGB array of shape (height, width, 3) with values in [0, 1].
    """
    if height < 8 or width < 8:
        raise ValueError(f"mosaic_painting needs at least 8x8 pixels, not {height}x{width}")
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    scale = float(min(height, width))
    cell = scale / 14.0
    count = max(4, round(height * width / (cell * cell)))
    seeds = rng.uniform((0.0, 0.0), (height, width), size=(count, 2))
    yy, xx = np.mgrid[0:height, 0:width]
    points = np.stack([yy.ravel(), xx.ravel()], axis=-1).astype(np.float64)
    distance, nearest = cKDTree(seeds).query(points, k=2)
    pane = nearest[:, 0].reshape(height, width)
    gap = (distance[:, 1] - distance[:, 0]).reshape(height, width)  # 0 on a cell border
    weights = np.array([3, 4, 4, 3, 2, 1], np.float64)
    colours = _GLASS[rng.choice(len(_GLASS), size=count, p=weights / weights.sum())]
    colours = colours * rng.uniform(0.85, 1.1, size=(count, 1)).astype(np.float32)
    img = colours[pane]
    glow = np.exp(-distance[:, 0].reshape(height, width) / (0.9 * cell))
    img = img * (0.75 + 0.35 * glow)[..., None]
    grain = _coarse_noise(rng, height, width, max(1.0, scale / 200.0))
    img = img * (0.92 + 0.16 * _stretch(grain))[..., None]
    lead = np.clip((gap - 0.006 * scale) / (0.006 * scale), 0.0, 1.0)[..., None]
    img = img * lead + np.array([0.06, 0.05, 0.05], np.float32) * (1 - lead)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def default_content_image() -> np.ndarray:
    """The default content image: scikit-image's ``chelsea`` cat, float32 RGB in [0, 1].

    Read straight from scikit-image's data folder (importing scikit-image itself would
    slow every run's start-up); through ``skimage.data`` where that file is not there.

    Raises:
        JStyleError: if scikit-image is not installed.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("skimage")  # finds the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / f"{DEFAULT_CONTENT_NAME}.png"
        if path.is_file():
            from PIL import Image

            with Image.open(path) as image:
                return (np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0)
    try:
        from skimage import data
    except ImportError as exc:
        from jstyle.errors import JStyleError

        raise JStyleError(
            "the default content image needs scikit-image: pip install scikit-image, "
            "or pass --content PATH"
        ) from exc
    return (np.asarray(data.chelsea(), dtype=np.float32) / 255.0)[..., :3]


def default_style_image(height: int, width: int) -> np.ndarray:
    """The default style image, :func:`swirl_painting` at ``height`` x ``width``, drawn once
    and then kept in jstyle's cache folder (drawing it is a visible part of a warm run's
    start-up: see the README's Performance), under a name that changes with this module's code (the
    drawing, its helpers and palettes). Drawn afresh, and not kept, where that folder
    cannot be written."""
    import hashlib
    from pathlib import Path

    from jstyle.cache import cache_dir
    from jstyle.fileio import atomic_path

    digest = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    path = cache_dir() / "default-images" / f"{DEFAULT_STYLE_NAME}-{height}x{width}-{digest}.npy"
    try:
        kept = np.load(path, allow_pickle=False)
        if kept.shape == (height, width, 3) and kept.dtype == np.float32:
            return kept
    except (OSError, ValueError):
        pass
    image = swirl_painting(height, width)
    try:
        with atomic_path(path) as part, open(part, "wb") as f:  # whole or absent
            np.save(f, image, allow_pickle=False)
    except OSError:
        pass
    return image
