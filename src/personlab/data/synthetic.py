"""Procedural pedestrians in the exact Market-1501 layout, for the embedded CPU default.

Why this exists: the pipeline must run (and every re-ID model must visibly learn) with no internet and no
GPU. Real datasets cannot be shipped, so the ``download`` stage draws a small dataset that looks like
Market-1501 on disk -- ``bounding_box_train/``, ``bounding_box_test/``, ``query/``, file names such as
``0002_c1s1_000451_03.jpg``, junk (``-1``) and distractor (``0000``) gallery images -- so the parsers,
split builder, loaders and evaluator run the very code path they run on the real data.

What makes it learnable but not trivial (every item is a parameter of :class:`SyntheticReid`):

* identity attributes (top and bottom colours, torso pattern, hair, bag, backpack, logo, build) are drawn
  from small shared pools, so many identities look alike and only combinations tell them apart;
* each camera has its own colour cast, saturation, exposure, blur, noise, background scene and preferred
  walking direction, so the same person looks different across cameras;
* details depend on the viewpoint (a backpack is a big patch from behind, a strip from the side and two
  straps from the front; a logo is only visible from the front; a shoulder bag swaps sides);
* every image has its own walking phase, bounding-box jitter, background clutter and possibly an occluder.

Determinism: every random draw comes from a generator seeded by ``(seed, purpose, key...)`` -- one per
pool, camera, identity, track and image -- so a file's bytes depend only on the seed, the params and the
file's own key, never on the order in which files are produced. JPEGs are written by Pillow with a fixed
quality and chroma subsampling and no metadata, so the same seed gives byte-identical files.
"""

from __future__ import annotations

import dataclasses
import io
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from personlab.io import atomic_path
from personlab.params import SyntheticReid

__all__ = [
    "BOTTOM_COLOURS",
    "CLOTHING_COLOURS",
    "HAIR_COLOURS",
    "MARKET_NAME",
    "PATTERNS",
    "contact_sheet",
    "generate_market_like",
]

RGB = tuple[int, int, int]

# Attribute pools. The generator draws each dataset's pools as seeded subsets of these lists (sizes from
# params), so shrinking a pool makes more identities share a colour.
CLOTHING_COLOURS: tuple[RGB, ...] = (
    (30, 30, 34),  # black
    (228, 228, 222),  # white
    (128, 128, 132),  # grey
    (36, 48, 96),  # navy
    (52, 104, 186),  # blue
    (120, 176, 222),  # sky blue
    (186, 36, 40),  # red
    (112, 30, 44),  # maroon
    (46, 128, 66),  # green
    (110, 118, 52),  # olive
    (200, 180, 140),  # beige
    (110, 72, 44),  # brown
    (226, 196, 48),  # yellow
    (228, 120, 40),  # orange
    (226, 140, 170),  # pink
    (108, 60, 140),  # purple
)
BOTTOM_COLOURS: tuple[RGB, ...] = (
    (58, 82, 128),  # denim
    (34, 34, 38),  # black
    (110, 110, 114),  # grey
    (180, 160, 118),  # khaki
    (34, 42, 80),  # navy
    (96, 66, 44),  # brown
    (220, 218, 210),  # white
    (90, 96, 52),  # olive
    (40, 76, 52),  # dark green
    (100, 34, 44),  # maroon
)
HAIR_COLOURS: tuple[RGB, ...] = (
    (24, 20, 18),  # black
    (66, 44, 30),  # dark brown
    (116, 80, 48),  # brown
    (206, 170, 100),  # blonde
    (150, 148, 146),  # grey
    (140, 62, 36),  # auburn
)
SKIN_TONES: tuple[RGB, ...] = ((246, 212, 186), (228, 184, 150), (196, 146, 106), (150, 102, 70), (98, 66, 46))
SHOE_COLOURS: tuple[RGB, ...] = ((26, 26, 28), (222, 222, 218), (100, 66, 40), (120, 120, 124))
BAG_COLOURS: tuple[RGB, ...] = (
    (32, 32, 36), (104, 70, 42), (36, 44, 84), (168, 40, 40), (118, 118, 122), (196, 176, 136)
)
PATTERNS: tuple[str, ...] = ("plain", "stripes", "checks", "two-tone")
LOGO_SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# (width factor, height factor): thin, medium, broad.
BUILDS: tuple[tuple[float, float], ...] = ((0.84, 1.0), (1.0, 0.97), (1.2, 0.94))
VIEWS: tuple[str, ...] = ("front", "back", "left", "right")

MARKET_NAME = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
FOLDERS = ("bounding_box_train", "bounding_box_test", "query")

SUPERSAMPLE = 2  # shapes are drawn at twice the output size and filtered down, for smooth edges
NUM_SEQUENCES = 6  # Market-1501 has s1..s6 per camera
TURN_PROBABILITY = 0.15  # chance that one image of a track shows another view than the track's own
JITTER_CLIP = 2.5  # bbox jitter is a normal clipped at this many standard deviations

# Purposes of the seeded generators; a new purpose gets a new number, so old streams never shift.
_POOLS, _CAMERA, _SPLIT, _IDENTITY, _TRACK, _IMAGE, _DISTRACTOR, _JUNK = range(1, 9)
_PERSON, _FALSE_ALARM, _STRANGER, _FRAGMENT = range(4)


def _rng(seed: int, *key: int) -> np.random.Generator:
    """A generator owned by one purpose and key, independent of every other draw."""
    return np.random.default_rng(np.random.SeedSequence([seed, *key]))


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(min(255, max(0, round(c * factor)))) for c in colour)  # type: ignore[return-value]


def _jitter_colour(colour: RGB, rng: np.random.Generator, amount: float) -> RGB:
    """One identity's own shade of a pool colour: same name, slightly different dye and brightness."""
    gain = math.exp(amount * float(rng.standard_normal()))
    tint = 1.0 + 0.5 * amount * rng.standard_normal(3)
    return tuple(int(np.clip(round(c * gain * t), 0, 255)) for c, t in zip(colour, tint))  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------
# Identities, cameras and the dataset plan
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Pools:
    top: tuple[RGB, ...]
    bottom: tuple[RGB, ...]
    hair: tuple[RGB, ...]
    patterns: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class _Identity:
    """What a person wears and looks like; constant across cameras."""

    top: RGB
    top2: RGB  # the pattern's second colour
    pattern: str
    long_sleeves: bool
    bottom: RGB
    lower: str  # trousers, shorts, skirt
    hair: RGB
    long_hair: bool
    skin: RGB
    shoes: RGB
    width: float
    height: float
    bag: RGB | None
    bag_side: int  # +1: on the person's right, -1: left
    backpack: RGB | None
    logo: RGB | None
    logo_shape: str
    gait_period: float  # frames per stride, sets the walking phase from the frame number


@dataclasses.dataclass(frozen=True)
class _Camera:
    """What one camera does to every image it records."""

    gains: tuple[float, float, float]  # colour cast times exposure
    saturation: float
    blur: float  # Gaussian radius in output pixels
    noise: float  # sensor noise standard deviation in grey levels
    views: tuple[float, float, float, float]  # probability of each of VIEWS for a track
    panorama: Image.Image  # the scene behind the people; each image sees a window of it
    scene: RGB  # the panorama's mean colour, which clutter and occluders lean towards


@dataclasses.dataclass(frozen=True)
class _Shot:
    """One file to write: its name fields and what to draw."""

    folder: str
    pid: int  # -1 junk, 0 distractor, >0 identity
    cam: int  # 1-based, as in the file name
    seq: int
    frame: int
    det: int
    kind: int  # _PERSON, _FALSE_ALARM, _STRANGER, _FRAGMENT
    subject: int  # the identity drawn (pid for persons, the test pid a fragment comes from, index for strangers)
    view: int

    @property
    def name(self) -> str:
        pid = "-1" if self.pid < 0 else f"{self.pid:04d}"
        return f"{pid}_c{self.cam}s{self.seq}_{self.frame:06d}_{self.det:02d}.jpg"


def _pools(cfg: SyntheticReid, seed: int) -> _Pools:
    rng = _rng(seed, _POOLS)
    top = rng.choice(len(CLOTHING_COLOURS), cfg.num_top_colors, replace=False)
    bottom = rng.choice(len(BOTTOM_COLOURS), cfg.num_bottom_colors, replace=False)
    hair = rng.choice(len(HAIR_COLOURS), cfg.num_hair_colors, replace=False)
    return _Pools(
        top=tuple(CLOTHING_COLOURS[i] for i in sorted(top)),
        bottom=tuple(BOTTOM_COLOURS[i] for i in sorted(bottom)),
        hair=tuple(HAIR_COLOURS[i] for i in sorted(hair)),
        patterns=PATTERNS[: cfg.num_patterns],
    )


def _identity(rng: np.random.Generator, pools: _Pools, cfg: SyntheticReid) -> _Identity:
    """Draw one person. The number of draws is fixed, so changing a probability never shifts later draws."""
    u = rng.random(8)
    pick = rng.random(12)  # one uniform per categorical choice, scaled to each pool's size

    def choose(pool: tuple, k: int) -> int:
        return int(pick[k] * len(pool))

    top_i = choose(pools.top, 0)
    # the pattern's contrast colour: another pool colour, or a dark shade of a one-colour pool
    top2_i = (top_i + 1 + int(pick[1] * (len(pools.top) - 1))) % len(pools.top)
    top2 = pools.top[top2_i] if len(pools.top) > 1 else _shade(pools.top[0], 0.45)
    build = BUILDS[choose(BUILDS, 2)]
    z = rng.standard_normal(2)
    sj = cfg.shade_jitter
    return _Identity(
        top=_jitter_colour(pools.top[top_i], rng, sj),
        top2=_jitter_colour(top2, rng, sj),
        pattern=pools.patterns[choose(pools.patterns, 3)],
        long_sleeves=bool(u[0] < 0.5),
        bottom=_jitter_colour(pools.bottom[choose(pools.bottom, 4)], rng, sj),
        lower=("trousers", "shorts", "skirt")[int(np.searchsorted([0.6, 0.8], u[1], side="right"))],
        hair=_jitter_colour(pools.hair[choose(pools.hair, 5)], rng, sj),
        long_hair=bool(u[2] < 0.35),
        skin=SKIN_TONES[choose(SKIN_TONES, 6)],
        shoes=SHOE_COLOURS[choose(SHOE_COLOURS, 7)],
        width=build[0] * math.exp(0.05 * float(z[0])),
        height=build[1] * math.exp(0.02 * float(z[1])),
        bag=BAG_COLOURS[choose(BAG_COLOURS, 8)] if u[3] < cfg.bag_probability else None,
        bag_side=1 if u[4] < 0.5 else -1,
        backpack=BAG_COLOURS[choose(BAG_COLOURS, 9)] if u[5] < cfg.backpack_probability else None,
        logo=CLOTHING_COLOURS[choose(CLOTHING_COLOURS, 10)] if u[6] < cfg.logo_probability else None,
        logo_shape=LOGO_SHAPES[choose(LOGO_SHAPES, 11)],
        gait_period=18.0 + 10.0 * float(u[7]),
    )


def _canvas_size(cfg: SyntheticReid) -> tuple[int, int]:
    """The drawn scene around a detection box, big enough for any clipped jitter of that box."""
    j = cfg.bbox_jitter
    reach = math.exp(JITTER_CLIP * j)
    box_w, box_h = SUPERSAMPLE * cfg.width, SUPERSAMPLE * cfg.height
    return (math.ceil(box_w * (reach + 2 * JITTER_CLIP * j)) + 4, math.ceil(box_h * (reach + JITTER_CLIP * j)) + 4)


def _panorama(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """A camera's scene, three canvases wide: wall gradient, fixed structures, ground plane with tiles."""
    cw, ch = size
    w = 3 * cw
    # urban scenes are mostly greys and earth tones: a grey level with a mild tint
    wall_top, wall_bottom, ground_far, ground_near, struct = (
        np.clip(rng.uniform(60, 200) + rng.normal(0, 20, 3), 0, 255) for _ in range(5)
    )
    horizon = int(ch * rng.uniform(0.55, 0.75))
    t = np.linspace(0.0, 1.0, horizon)[:, None]
    wall = wall_top[None, :] * (1 - t) + wall_bottom[None, :] * t
    g = np.linspace(0.0, 1.0, ch - horizon)[:, None]
    ground = ground_far[None, :] * (1 - g) + ground_near[None, :] * g
    column = np.concatenate([wall, ground]).astype(np.uint8)
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(column[:, None, :], (ch, w, 3))))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(4, 9))):  # doors, windows, pillars, shop fronts
        x0 = float(rng.uniform(0, w))
        bw = float(rng.uniform(0.1, 0.5)) * cw
        y0 = float(rng.uniform(0.0, 0.6)) * horizon
        colour = tuple(int(v) for v in np.clip(struct + rng.normal(0, 35, 3), 0, 255))
        draw.rectangle([x0, y0, x0 + bw, horizon], fill=colour)
    line = tuple(int(v) for v in np.clip(ground_near * 0.75, 0, 255))
    for k in range(1, 5):  # tile seams converge on the horizon
        y = horizon + (ch - horizon) * (k / 5) ** 1.6
        draw.line([0, y, w, y], fill=line, width=1)
    for x in np.arange(rng.uniform(0, cw / 2), w, cw / 2):
        draw.line([x, horizon, x + (x - w / 2) * 0.6, ch], fill=line, width=1)
    return img


def _camera(cfg: SyntheticReid, seed: int, cam: int) -> _Camera:
    rng = _rng(seed, _CAMERA, cam)
    cast = np.exp(cfg.camera_color_cast * rng.standard_normal(3))
    exposure = math.exp(cfg.camera_exposure * float(rng.standard_normal()))
    saturation = math.exp(cfg.camera_saturation * float(rng.standard_normal()))
    blur = cfg.camera_blur * float(rng.uniform(0.2, 1.0))
    noise = cfg.noise_std * float(rng.uniform(0.5, 1.5))
    axial = bool(rng.random() < 0.5)  # a corridor sees fronts and backs, a crossing sees sides
    dominant = (0.5, 0.5, 0.0, 0.0) if axial else (0.0, 0.0, 0.5, 0.5)
    views = tuple(cfg.view_bias * d + (1 - cfg.view_bias) * 0.25 for d in dominant)
    panorama = _panorama(rng, _canvas_size(cfg))
    return _Camera(
        gains=tuple(float(c * exposure) for c in cast),  # type: ignore[arg-type]
        saturation=saturation,
        blur=blur,
        noise=noise,
        views=views,  # type: ignore[arg-type]
        panorama=panorama,
        scene=tuple(int(v) for v in np.asarray(panorama).reshape(-1, 3).mean(0).round()),  # type: ignore[arg-type]
    )


def _split(cfg: SyntheticReid, seed: int) -> tuple[list[int], list[int]]:
    """Train and test pids, interleaved over 1..N as in Market-1501."""
    order = _rng(seed, _SPLIT).permutation(np.arange(1, cfg.num_identities + 1))
    return sorted(int(p) for p in order[: cfg.num_train_identities]), sorted(
        int(p) for p in order[cfg.num_train_identities :]
    )


def _track_cameras(rng: np.random.Generator, cfg: SyntheticReid) -> list[int]:
    """The cameras a person walks past: each with ``camera_presence``, at least two."""
    present = rng.random(cfg.num_cameras) < cfg.camera_presence
    order = rng.permutation(cfg.num_cameras)
    for c in order:  # top up to two cameras in a seeded order
        if present.sum() >= 2:
            break
        present[c] = True
    return [int(c) + 1 for c in np.flatnonzero(present)]


def _pick_view(u: float, probs: tuple[float, ...]) -> int:
    """Inverse-CDF choice from one uniform, so every choice costs the generator exactly one draw."""
    cdf = np.cumsum(probs) / sum(probs)
    return min(int(np.searchsorted(cdf, u, side="right")), len(probs) - 1)


def _identity_shots(
    cfg: SyntheticReid, seed: int, pid: int, test: bool, cameras: dict[int, _Camera]
) -> list[_Shot]:
    """All images of one identity: one track per camera; for a test id one query per camera.

    Each track has its own generator and a fixed number of draws per image, so a track's first images are
    the same whether the identity is a train id or a test id (which gets at least two images per camera).
    """
    lo, hi = cfg.images_per_camera
    shots = []
    for cam in _track_cameras(_rng(seed, _TRACK, pid), cfg):
        rng = _rng(seed, _TRACK, pid, cam)
        u = rng.random(5)
        count = lo + int(u[0] * (hi - lo + 1))
        if test:
            count = max(count, 2)  # one query plus at least one gallery image per camera
        seq = 1 + int(u[1] * NUM_SEQUENCES)
        frame = int(u[2] * 900_000)
        track_view = _pick_view(u[3], cameras[cam].views)
        query_index = int(u[4] * count)
        for k in range(count):
            turn, other_view, multi, step = rng.random(4)
            view = track_view if turn >= TURN_PROBABILITY else _pick_view(other_view, (0.25,) * 4)
            det = 2 if multi < 0.2 else 1
            folder = "bounding_box_train" if not test else ("query" if k == query_index else "bounding_box_test")
            shots.append(_Shot(folder, pid, cam, seq, frame, det, _PERSON, pid, view))
            frame += 5 + int(step * 56)
    return shots


def _unique(shot: _Shot, taken: set[str]) -> _Shot:
    """Distractors and junk share one pid; move a clashing name to the next free frame number."""
    while shot.name in taken:
        shot = dataclasses.replace(shot, frame=(shot.frame + 1) % 1_000_000)
    taken.add(shot.name)
    return shot


def _plan(cfg: SyntheticReid, seed: int, cameras: dict[int, _Camera]) -> tuple[list[_Shot], list[int], list[int]]:
    """Every file of the dataset (name, folder, what to draw), decided before any pixel is drawn."""
    train_ids, test_ids = _split(cfg, seed)
    test_set = set(test_ids)
    shots: list[_Shot] = []
    for pid in range(1, cfg.num_identities + 1):
        shots += _identity_shots(cfg, seed, pid, pid in test_set, cameras)
    taken = {s.name for s in shots}
    for i in range(cfg.num_distractors):  # half false alarms on the background, half strangers
        rng = _rng(seed, _DISTRACTOR, i)
        cam = int(rng.integers(1, cfg.num_cameras + 1))
        kind = _FALSE_ALARM if i % 2 == 0 else _STRANGER
        u = rng.random(3)
        shot = _Shot(
            folder="bounding_box_test",
            pid=0,
            cam=cam,
            seq=1 + int(u[0] * NUM_SEQUENCES),
            frame=int(u[1] * 1_000_000),
            det=1,
            kind=kind,
            subject=i,
            view=_pick_view(u[2], cameras[cam].views),
        )
        shots.append(_unique(shot, taken))
    test_shots = [s for s in shots if s.kind == _PERSON and s.pid in test_set]
    for i in range(cfg.num_junk):  # a badly cropped part of a test person, seen by one of their cameras
        rng = _rng(seed, _JUNK, i)
        src = test_shots[int(rng.integers(len(test_shots)))]
        frame = min(999_999, src.frame + int(rng.integers(1, 4)))
        shot = _Shot("bounding_box_test", -1, src.cam, src.seq, frame, 1, _FRAGMENT, src.pid, src.view)
        shots.append(_unique(shot, taken))
    return shots, train_ids, test_ids


# ----------------------------------------------------------------------------------------------------
# Drawing
# ----------------------------------------------------------------------------------------------------


Point = tuple[float, float]


def _disc(draw: ImageDraw.ImageDraw, x: float, y: float, rx: float, ry: float, fill: RGB) -> None:
    draw.ellipse([x - rx, y - ry, x + rx, y + ry], fill=fill)


def _limb(draw: ImageDraw.ImageDraw, p0: Point, p1: Point, w: float, fill: RGB) -> None:
    """A thick segment with rounded ends (an arm, a leg, a strap)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    n = math.hypot(dx, dy) or 1.0
    ox, oy = -dy / n * w / 2, dx / n * w / 2
    draw.polygon(
        [(p0[0] + ox, p0[1] + oy), (p1[0] + ox, p1[1] + oy), (p1[0] - ox, p1[1] - oy), (p0[0] - ox, p0[1] - oy)],
        fill=fill,
    )
    for x, y in (p0, p1):
        _disc(draw, x, y, w / 2, w / 2, fill)


def _quad_point(q: list[Point], u: float, v: float) -> Point:
    """Bilinear point in quad (top-left, top-right, bottom-right, bottom-left)."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = q
    top = (x0 + (x1 - x0) * u, y0 + (y1 - y0) * u)
    bot = (x3 + (x2 - x3) * u, y3 + (y2 - y3) * u)
    return (top[0] + (bot[0] - top[0]) * v, top[1] + (bot[1] - top[1]) * v)


def _sub_quad(q: list[Point], u0: float, u1: float, v0: float, v1: float) -> list[Point]:
    return [_quad_point(q, u0, v0), _quad_point(q, u1, v0), _quad_point(q, u1, v1), _quad_point(q, u0, v1)]


def _torso(draw: ImageDraw.ImageDraw, q: list[Point], ident: _Identity) -> None:
    """The top garment with its pattern, drawn as sub-quads of the torso so it follows the body's shape."""
    draw.polygon(q, fill=ident.top)
    if ident.pattern == "stripes":
        for i in range(5):
            draw.polygon(_sub_quad(q, 0, 1, (i + 0.5) / 5.5, (i + 1) / 5.5), fill=ident.top2)
    elif ident.pattern == "checks":
        for i in range(5):
            for j in range(4):
                if (i + j) % 2:
                    draw.polygon(_sub_quad(q, j / 4, (j + 1) / 4, i / 5, (i + 1) / 5), fill=ident.top2)
    elif ident.pattern == "two-tone":
        draw.polygon(_sub_quad(q, 0, 1, 0.45, 1), fill=ident.top2)


def _logo(draw: ImageDraw.ImageDraw, shape: str, x: float, y: float, r: float, fill: RGB) -> None:
    if shape == "circle":
        _disc(draw, x, y, r, r, fill)
    elif shape == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=fill)
    else:
        draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill)


def _draw_person(
    draw: ImageDraw.ImageDraw, ident: _Identity, view: str, swing: float, cx: float, feet: float, h: float
) -> None:
    """An articulated pedestrian of height ``h`` standing at ``(cx, feet)``, seen from ``view``.

    ``swing`` is the walking phase's limb angle in radians. Side views show it as swinging limbs (far side
    darker); front and back views as a lifted foot and foreshortened arms. Viewpoint-dependent details:
    the backpack (patch from behind, strip from the side, straps from the front), the logo (front only),
    the bag (mirrored between front and back, hidden behind the body from its far side), face or hair.
    """
    top = feet - h
    side = view in ("left", "right")
    d = -1.0 if view == "left" else 1.0  # facing direction in image x, for side views
    bw = ident.width
    half_sh = (0.075 if side else 0.12) * bw * h
    half_waist = (0.07 if side else 0.1) * bw * h
    y_sh, y_hip = top + 0.15 * h, top + 0.5 * h
    torso_cx = cx + (0.01 * d * h if side else 0.0)  # a slight forward lean when walking sideways
    torso = [
        (torso_cx - half_sh, y_sh),
        (torso_cx + half_sh, y_sh),
        (cx + half_waist, y_hip + 0.02 * h),
        (cx - half_waist, y_hip + 0.02 * h),
    ]
    leg_w, arm_w = 0.075 * bw * h, 0.05 * bw * h
    leg_len, arm_len = 0.46 * h, 0.34 * h
    skin = ident.skin
    dark = (30, 24, 20)

    def leg(hip_x: float, angle: float, lift: float, shade: float) -> None:
        hip = (hip_x, y_hip)
        foot = (hip_x + math.sin(angle) * leg_len, y_hip + math.cos(angle) * leg_len - lift)
        knee = ((hip[0] + foot[0]) / 2, (hip[1] + foot[1]) / 2)
        _limb(draw, hip, foot, leg_w, _shade(ident.bottom if ident.lower == "trousers" else skin, shade))
        if ident.lower == "shorts":
            _limb(draw, hip, knee, leg_w * 1.1, _shade(ident.bottom, shade))
        toe = d * 0.035 * h if side else 0.0  # a shoe points where the person walks
        x0, x1 = foot[0] - 0.035 * h + min(toe, 0.0), foot[0] + 0.035 * h + max(toe, 0.0)
        draw.ellipse([x0, foot[1] - 0.015 * h, x1, foot[1] + 0.02 * h], fill=_shade(ident.shoes, shade))

    def arm(sh_x: float, angle: float, shorten: float, shade: float) -> None:
        sh = (sh_x, y_sh + 0.02 * h)
        length = arm_len * shorten
        hand = (sh_x + math.sin(angle) * length, sh[1] + math.cos(angle) * length)
        elbow = ((sh[0] + hand[0]) / 2, (sh[1] + hand[1]) / 2)
        _limb(draw, sh, hand, arm_w, _shade(ident.top if ident.long_sleeves else skin, shade))
        if not ident.long_sleeves:
            _limb(draw, sh, elbow, arm_w * 1.1, _shade(ident.top, shade))
        _disc(draw, hand[0], hand[1], arm_w * 0.6, arm_w * 0.6, _shade(skin, shade))

    def skirt() -> None:
        flare = half_waist + 0.04 * h + (0.07 if side else 0.12) * abs(swing) * h
        hem = y_hip + 0.24 * h
        outline = [(cx - half_waist, y_hip), (cx + half_waist, y_hip), (cx + flare, hem), (cx - flare, hem)]
        draw.polygon(outline, fill=ident.bottom)

    def bag(colour: RGB, x_sign: float, shade: float) -> None:
        bx = cx + x_sign * (half_waist + 0.03 * h)
        box = [bx - 0.06 * h, y_hip - 0.07 * h, bx + 0.06 * h, y_hip + 0.06 * h]
        draw.rounded_rectangle(box, radius=0.015 * h, fill=_shade(colour, shade))

    head_x = torso_cx + (0.012 * d * h if side else 0.0)
    head_y, head_rx, head_ry = top + 0.065 * h, 0.05 * h, 0.065 * h
    hair_rx = head_rx + 0.008 * h
    hair_box = [head_x - hair_rx, head_y - head_ry - 0.01 * h, head_x + hair_rx, head_y + head_ry]

    if ident.long_hair and view != "back":  # hair falling behind the shoulders
        hx = head_x - (0.03 * d * h if side else 0.0)
        hair_back = [hx - head_rx * 1.05, head_y, hx + head_rx * 1.05, top + 0.24 * h]
        draw.rectangle(hair_back, fill=_shade(ident.hair, 0.85))

    if side:
        far, near = 0.7, 1.0
        bag_near = ident.bag_side == int(d)  # facing image-right shows the person's right side
        arm(torso_cx, -0.8 * swing * d, 1.0, far)
        leg(cx, -swing * d, 0.0, far)
        if ident.bag is not None and not bag_near:
            bag(ident.bag, -d * 0.2, far)
        if ident.backpack is not None:  # a strip sticking out behind the back
            x_back = torso_cx - d * half_sh
            x0, x1 = sorted((x_back - d * 0.07 * h, x_back + d * 0.02 * h))
            draw.rounded_rectangle([x0, y_sh + 0.01 * h, x1, y_sh + 0.27 * h], radius=0.02 * h, fill=ident.backpack)
        leg(cx, swing * d, 0.0, near)
        if ident.lower == "skirt":
            skirt()
        _torso(draw, torso, ident)
        if ident.bag is not None and bag_near:
            bag(ident.bag, d * 0.2, near)
        arm(torso_cx, 0.8 * swing * d, 1.0, near)
        _disc(draw, head_x, head_y, head_rx, head_ry, skin)
        # hair covers the top and the back half of the head
        draw.pieslice(hair_box, 180, 360, fill=ident.hair)
        draw.pieslice(hair_box, *((100, 270) if d > 0 else (-90, 80)), fill=ident.hair)
        _disc(draw, head_x + d * 0.6 * head_rx, head_y + 0.1 * head_ry, 0.007 * h, 0.007 * h, dark)
        return

    # front and back: the swing shows as a lifted foot and shortened arms
    lift = 0.08 * h * swing
    hip_dx = 0.05 * bw * h
    leg(cx - hip_dx, 0.0, max(0.0, lift), 1.0)
    leg(cx + hip_dx, 0.0, max(0.0, -lift), 1.0)
    if ident.lower == "skirt":
        skirt()
    _torso(draw, torso, ident)
    arm(torso_cx - half_sh - arm_w * 0.3, 0.08, 1.0 - 0.25 * abs(swing), 0.9)
    arm(torso_cx + half_sh + arm_w * 0.3, -0.08, 1.0 - 0.25 * abs(swing), 0.9)
    if view == "front":
        if ident.backpack is not None:  # only the straps show from the front
            for sgn in (-1.0, 1.0):
                strap_top = (torso_cx + sgn * half_sh * 0.55, y_sh)
                strap_end = (torso_cx + sgn * half_sh * 0.45, y_sh + 0.2 * h)
                _limb(draw, strap_top, strap_end, 0.02 * h, _shade(ident.backpack, 0.8))
        if ident.logo is not None:
            _logo(draw, ident.logo_shape, torso_cx + 0.35 * half_sh, y_sh + 0.09 * h, 0.035 * h, ident.logo)
    elif ident.backpack is not None:  # the big patch seen from behind
        box = [torso_cx - half_sh * 0.8, y_sh + 0.02 * h, torso_cx + half_sh * 0.8, y_sh + 0.27 * h]
        draw.rounded_rectangle(box, radius=0.03 * h, fill=ident.backpack)
    if ident.bag is not None:
        bag_x = (-1.0 if view == "front" else 1.0) * ident.bag_side  # the person's right is image-left from the front
        strap_top, strap_end = (torso_cx - bag_x * half_sh * 0.7, y_sh), (cx + bag_x * half_waist, y_hip - 0.05 * h)
        _limb(draw, strap_top, strap_end, 0.018 * h, _shade(ident.bag, 0.8))
        bag(ident.bag, bag_x, 1.0)
    draw.rectangle([head_x - 0.022 * h, top + 0.11 * h, head_x + 0.022 * h, y_sh + 0.01 * h], fill=_shade(skin, 0.9))
    if view == "back":
        draw.ellipse(hair_box, fill=ident.hair)
        if ident.long_hair:
            draw.rectangle([head_x - head_rx, head_y, head_x + head_rx, top + 0.24 * h], fill=ident.hair)
    else:
        _disc(draw, head_x, head_y, head_rx, head_ry, skin)
        draw.chord(hair_box, 180, 360, fill=ident.hair)
        for sgn in (-1.0, 1.0):
            _disc(draw, head_x + sgn * 0.4 * head_rx, head_y + 0.1 * head_ry, 0.007 * h, 0.007 * h, dark)


def _muted(rng: np.random.Generator, scene: RGB, weight: float) -> RGB:
    """A random colour pulled towards the scene's mean colour, as real street objects mostly are."""
    mixed = weight * np.asarray(scene) + (1 - weight) * rng.integers(20, 236, 3)
    return tuple(np.rint(mixed).astype(int).tolist())  # type: ignore[return-value]


def _clutter(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: tuple[int, int], count: int, scene: RGB
) -> None:
    """Background objects in front of the scene but behind the person: signs, bins, other people's parts."""
    cw, ch = size
    for _ in range(count):
        kind, x, y = rng.integers(3), rng.uniform(-0.1, 1.0) * cw, rng.uniform(0.0, 0.9) * ch
        w, hgt = rng.uniform(0.08, 0.35) * cw, rng.uniform(0.05, 0.35) * ch
        colour = _muted(rng, scene, 0.5)
        face = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
        if kind == 0:
            draw.rectangle([x, y, x + w, y + hgt], fill=colour)
        elif kind == 1:
            draw.ellipse([x, y, x + w, y + hgt], fill=colour)
        else:  # a passer-by further back: a body block and a head
            draw.rectangle([x, y, x + w * 0.6, y + hgt * 1.5], fill=colour)
            r = w * 0.18
            _disc(draw, x + w * 0.3, y - r, r, r, face)


def _occluder(
    draw: ImageDraw.ImageDraw, rng: np.random.Generator, cx: float, feet: float, h: float, scene: RGB
) -> None:
    """Something between the camera and the person: a pole, a low object (car, bench), or another person."""
    kind = int(rng.integers(3))
    colour = _muted(rng, scene, 0.3)
    side = 1.0 if rng.random() < 0.5 else -1.0
    offset, size = float(rng.random()), float(rng.random())
    face = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    if kind == 0:
        x, w = cx + side * 0.15 * offset * h, (0.04 + 0.05 * size) * h
        draw.rectangle([x - w / 2, feet - 1.6 * h, x + w / 2, feet + 0.1 * h], fill=colour)
    elif kind == 1:
        top = feet - (0.15 + 0.25 * size) * h
        draw.rounded_rectangle([cx - 0.6 * h, top, cx + 0.6 * h, feet + 0.1 * h], radius=0.04 * h, fill=colour)
    else:
        x, w = cx + side * (0.17 + 0.13 * offset) * h, 0.28 * h
        draw.rounded_rectangle([x - w / 2, feet - 0.82 * h, x + w / 2, feet + 0.1 * h], radius=0.05 * h, fill=colour)
        _disc(draw, x, feet - 0.9 * h, 0.055 * h, 0.06 * h, face)


def _render(shot: _Shot, ident: _Identity | None, cam: _Camera, cfg: SyntheticReid, seed: int) -> bytes:
    """One JPEG: scene window, clutter, person, occluder, jittered crop, then the camera's effects."""
    rng = _rng(seed, _IMAGE, shot.kind, shot.pid + 1, shot.subject, shot.cam, shot.seq, shot.frame, shot.det)
    u = rng.random(6)
    z = rng.standard_normal(5)
    cw, ch = _canvas_size(cfg)
    x_off = int(u[0] * (cam.panorama.width - cw))
    img = cam.panorama.crop((x_off, 0, x_off + cw, ch))
    draw = ImageDraw.Draw(img)
    _clutter(draw, rng, (cw, ch), cfg.clutter, cam.scene)

    box_w, box_h = SUPERSAMPLE * cfg.width, SUPERSAMPLE * cfg.height
    cx, cy = cw / 2, ch / 2
    if ident is not None:
        h = 0.9 * box_h * ident.height
        feet = cy + 0.46 * box_h
        # the gait follows the frame number; pose_variation scales the stride and perturbs the phase
        stride = min(1.0, 0.42 * cfg.pose_variation * (0.75 + 0.5 * float(u[4])))
        phase = 2 * math.pi * shot.frame / ident.gait_period + cfg.pose_variation * float(z[0])
        _draw_person(draw, ident, VIEWS[shot.view], stride * math.sin(phase), cx, feet, h)
        if u[1] < cfg.occlusion_probability:
            _occluder(draw, rng, cx, feet, h, cam.scene)

    j = cfg.bbox_jitter
    dx, dy, ds = (float(np.clip(v, -JITTER_CLIP, JITTER_CLIP)) * j for v in z[1:4])
    dy *= 0.5  # detectors misplace boxes less vertically (feet and head bound them)
    scale = math.exp(ds)
    if shot.kind == _FRAGMENT:  # a detector's miss: a small box on part of the body
        scale = 0.35 + 0.3 * float(u[2])
        dx, dy = (float(u[3]) - 0.5) * (1 - scale), (float(u[5]) - 0.5) * (1 - scale)
    bw, bh = box_w * scale, box_h * scale
    x0, y0 = cx + dx * box_w - bw / 2, cy + dy * box_h - bh / 2
    out = img.resize((cfg.width, cfg.height), Image.Resampling.BILINEAR, box=(x0, y0, x0 + bw, y0 + bh))

    if cam.blur > 0:
        out = out.filter(ImageFilter.GaussianBlur(cam.blur))
    pix = np.asarray(out, dtype=np.float32)
    grey = pix.mean(axis=2, keepdims=True)
    pix = grey + cam.saturation * (pix - grey)
    pix = pix * (np.asarray(cam.gains, dtype=np.float32) * math.exp(0.25 * cfg.camera_exposure * float(z[4])))
    if cam.noise > 0:
        pix = pix + rng.standard_normal(pix.shape, dtype=np.float32) * cam.noise
    final = Image.fromarray(np.clip(np.rint(pix), 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    final.save(buf, format="JPEG", quality=cfg.jpeg_quality, subsampling=2, optimize=False, progressive=False)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def generate_market_like(out_dir: Path, cfg: SyntheticReid, seed: int) -> dict[str, int]:
    """Write a synthetic dataset in the Market-1501 layout into the empty folder ``out_dir``.

    Returns counts for ``metrics/data.json``: train/query/gallery images (the gallery includes distractors
    and junk), identities, and the break-down of train/test identities, distractors, junk and cameras.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if any(out_dir.iterdir()):
        raise ValueError(f"{out_dir}: not empty; the synthetic generator writes into an empty folder (remove it first)")
    cameras = {c: _camera(cfg, seed, c) for c in range(1, cfg.num_cameras + 1)}
    shots, train_ids, test_ids = _plan(cfg, seed, cameras)
    pools = _pools(cfg, seed)
    identities = {pid: _identity(_rng(seed, _IDENTITY, pid), pools, cfg) for pid in range(1, cfg.num_identities + 1)}
    for folder in FOLDERS:
        (out_dir / folder).mkdir()
    counts = dict.fromkeys(FOLDERS, 0)
    for shot in shots:
        if shot.kind == _STRANGER:
            ident = _identity(_rng(seed, _DISTRACTOR, shot.subject, 1), pools, cfg)
        elif shot.kind == _FALSE_ALARM:
            ident = None
        else:
            ident = identities[shot.subject]
        (out_dir / shot.folder / shot.name).write_bytes(_render(shot, ident, cameras[shot.cam], cfg, seed))
        counts[shot.folder] += 1
    return {
        "train_images": counts["bounding_box_train"],
        "query_images": counts["query"],
        "gallery_images": counts["bounding_box_test"],
        "identities": cfg.num_identities,
        "train_identities": len(train_ids),
        "test_identities": len(test_ids),
        "distractor_images": cfg.num_distractors,
        "junk_images": cfg.num_junk,
        "cameras": cfg.num_cameras,
    }


def _parse_tree(raw_dir: Path) -> dict[int, dict[int, list[Path]]]:
    """pid -> camera -> image paths (query first, then gallery; each sorted) of the test identities."""
    found: dict[int, dict[int, list[Path]]] = {}
    for folder in ("query", "bounding_box_test"):
        path = raw_dir / folder
        if not path.is_dir():
            raise FileNotFoundError(
                f"{path}: missing; the contact sheet needs a Market-1501 layout (run the download stage)"
            )
        for f in sorted(path.glob("*.jpg")):
            m = MARKET_NAME.match(f.name)
            if m is None or int(m.group(1)) <= 0:
                continue
            found.setdefault(int(m.group(1)), {}).setdefault(int(m.group(2)), []).append(f)
    return found


def contact_sheet(raw_dir: Path, out_png: Path, num_identities: int = 8) -> None:
    """A PNG of test identities (rows) across cameras (columns), to see the look-alikes and camera effects.

    Rows are ``num_identities`` identities seen in at least two cameras, spread evenly over the sorted
    pids; a cell shows the identity's query image in that camera (else its first gallery image) and stays
    grey when the identity never passed that camera. Layout: a 32-px label column, a 14-px header row, and
    2-px gaps around cells of the images' own size.
    """
    if num_identities < 1:
        raise ValueError(f"num_identities must be at least 1, got {num_identities}")
    raw_dir, out_png = Path(raw_dir), Path(out_png)
    tree = _parse_tree(raw_dir)
    eligible = sorted(pid for pid, cams in tree.items() if len(cams) >= 2)
    if not eligible:
        raise ValueError(f"{raw_dir}: no test identity is seen in two cameras; nothing to put on a contact sheet")
    picks = sorted({eligible[int(i)] for i in np.linspace(0, len(eligible) - 1, min(num_identities, len(eligible)))})
    num_cams = max(c for cams in tree.values() for c in cams)
    with Image.open(tree[picks[0]][min(tree[picks[0]])][0]) as first:
        w, h = first.size
    pad, label_w, header_h = 2, 32, 14
    size = (label_w + num_cams * (w + pad) + pad, header_h + len(picks) * (h + pad) + pad)
    sheet = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c in range(1, num_cams + 1):
        draw.text((label_w + (c - 1) * (w + pad) + pad, 1), f"c{c}", fill=(0, 0, 0), font=font)
    for r, pid in enumerate(picks):
        y = header_h + r * (h + pad) + pad
        draw.text((2, y + h // 2 - 6), f"{pid:04d}", fill=(0, 0, 0), font=font)
        for c in range(1, num_cams + 1):
            x = label_w + (c - 1) * (w + pad) + pad
            files = tree[pid].get(c)
            if not files:
                draw.rectangle([x, y, x + w - 1, y + h - 1], fill=(200, 200, 200))
                continue
            with Image.open(files[0]) as im:
                sheet.paste(im.convert("RGB").resize((w, h)), (x, y))
    with atomic_path(out_png) as tmp:
        sheet.save(tmp, format="PNG")
