"""The context probe: procedural scenes whose labels need context, built from the PSPNet paper's failure modes.

Every surface pixel carries the same grey noise texture. What tells the two surfaces (road, water) apart is the
*share* of two cue colours among sparse 2x2 dots (6% of pixels): on road 62% of the dots are red and 38% blue, on
water the reverse. Both colours occur everywhere, so a local window or a max-pooled presence says little; an
average over a large region reads the share. Half of the scenes are split into two surfaces at 1/3, 1/2 or 2/3 of
the width or height (a thin dark curb, ignore label), positions that the pyramid's bins 2, 3 and 6 line up with.

1. Mismatched relationship: identical chequered objects (16-32 px) are `car` on road and `boat` on water.
With `data.probe_extras` (off by default: the default keeps the four classes whose ordering was measured):
2. Confusable categories: striped towers of the same texture are `building` when short (16-32 px tall) and
   `skyscraper` when tall (64-100 px): only their extent tells them apart.
3. Inconspicuous objects: `pillow`s (10-14 px) on a `bed` carry the bed's stripes, a little brighter.

Controls (`data.probe_kind`, docs/context_probe.md), each a question whose answer the construction fixes:
- `presence`: a region is road when a red mark occurs in it at all (1-3 squares of 6 px); every surface carries
  blue dots and 1-3 blue marks of the same size, so a mark is not the cue, its colour is.
- `local`: no regions; a pixel's class is the majority cue colour among the dots within 11 px of it, so it is
  decided inside the backbone's receptive field and nothing beyond it carries information (ties: ignore label).
  Its 22 px window is the scale of one cell of the 6x6 bin (21.3 px at 128), so that bin's average is a box
  filter at the label's own scale (a route to the answer, not information); `local_fine` has no such bin.
- `local_fine`: the local control at a scale no bin has: the majority within 5 px (a 10 px window, half the 6x6
  bin's cell and a quarter of the 3x3 bin's), dots on 30% of the cells.
- `misaligned`: the proportion cue, split at 1/4, 5/12 or 3/4: half-way between bin-6 cell boundaries, 10.7 px
  (at 128) from every boundary of bins 2, 3 and 6.
- `diluted`: the presence control plus 4-16 red specks (4 px squares) scattered over every surface: a region is
  still road exactly when a red mark (6 px) occurs in it, but the amount of red in a region is mostly specks, so
  an average of any red-responsive feature is diluted by their varying number while a maximum still picks the mark.
- `shortcut`: context that misleads. Unsplit scenes with the proportion cue, reversed in a fifth of the scenes (so
  it is right in four of five), and one green 6 px mark whose meaning flips between splits: in training scenes it
  occurs exactly on road scenes, in val and test scenes exactly on water scenes. In training the mark is the only
  cue that is always right; global pooling shows it to every pixel, so the loss is lowest for a pyramid that
  follows it, which is wrong on every evaluation scene. A pixel of the FCN sees the mark only within its receptive
  field (about a third of a scene) and otherwise follows the dots: the pyramid must score below the FCN.

Scenes are a pure function of (data_seed, split, index, kind): the same on every worker, in every order.
"""

from __future__ import annotations

import zlib

import numpy as np
from PIL import Image

from study.config import DataConfig
from study.data.common import DatasetError, SegDataset
from study.dataset_names import PROBE_KINDS

GENERATOR_VERSION = 1  # bump whenever the scenes a (config, split, index) gives change: records name it
CLASSES = ("road", "water", "car", "boat", "building", "skyscraper", "bed", "pillow")
PALETTE = ((128, 64, 128), (0, 90, 200), (0, 0, 142), (230, 150, 20), (70, 70, 70), (190, 40, 190),
           (120, 200, 80), (250, 230, 120))
CORE = 4  # road, water, car, boat: the measured default; the other four come with `extras`
ROAD, WATER, CAR, BOAT, BUILDING, SKYSCRAPER, BED, PILLOW = range(8)
IGNORE = 255

DOT_DENSITY = 0.06  # share of pixels covered by 2x2 cue dots
OWN_SHARE = 0.62  # share of a surface's dots in its own colour
CUE_COLOURS = {ROAD: (200, 40, 40), WATER: (40, 40, 200)}
SPLIT_FRACTION = 0.5  # share of scenes split into two surfaces
TOWER_PROB = 0.6  # share of scenes with a tower (extras)
TALL_SHARE = 0.35  # share of towers that are skyscrapers: short buildings are more often drawn, fewer pixels
BED_PROB = 0.5  # share of scenes with a bed and 1-3 pillows (extras)
# Where split scenes are cut, as a share of the width or height.
SPLIT_AT = {"proportion": (1 / 3, 1 / 2, 2 / 3), "presence": (1 / 3, 1 / 2, 2 / 3), "misaligned": (1 / 4, 5 / 12, 3 / 4),
            "diluted": (1 / 3, 1 / 2, 2 / 3), "shortcut": ()}  # shortcut: never split
PRESENCE_MARKS = (1, 3)  # red marks in a road region, blue marks in a scene (inclusive range); water has no red
MARK = 6  # px, the side of a presence mark
SPECK = 4  # px, the side of a diluted-control speck: red, on every surface, smaller than a mark
SPECKS = (4, 16)  # specks in a scene (inclusive range)
DECOY_RGB = np.array((40, 200, 40), dtype=np.uint8)  # shortcut control: the green mark, in no cue colour
DECOY_ON = {"train": ROAD}  # shortcut control: the surface whose scenes carry the mark; every other split: WATER
CUE_REVERSED = 0.2  # shortcut control: share of scenes whose dots carry the other surface's share
LOCAL_DENSITY = 0.15  # local control: share of 2x2 cells holding a dot, red or blue with even odds
LOCAL_CELLS = 5  # local control: a pixel counts the dots of the cells within 5 cells of its own, i.e. within
LOCAL_RADIUS = 2 * LOCAL_CELLS + 1  # 11 px of it (Chebyshev): well inside the probe backbone's ~71 px field
FINE_CELLS = 2  # local_fine control: within 2 cells, i.e. 5 px (a 10 px window): half the 6x6 bin's 21.3 px cell
FINE_RADIUS = 2 * FINE_CELLS + 1
FINE_DENSITY = 0.3  # local_fine control: denser dots, so that a 5x5-cell window is seldom a tie


def _rng(data_seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([data_seed, zlib.crc32(split.encode()), index])


def _u8(value: np.ndarray | float) -> np.ndarray:
    """Grey level(s) in [0, 1] -> uint8, rounded."""
    return (np.clip(value, 0, 1) * 255).round().astype(np.uint8)


CUE_RGB = np.zeros((max(CUE_COLOURS) + 1, 3), dtype=np.uint8)  # surface class -> its cue colour
for _cls, _rgb in CUE_COLOURS.items():
    CUE_RGB[_cls] = _rgb
CURB_GREY = _u8(0.05)


CHEQUER = np.where(((np.arange(128)[:, None] // 4) + (np.arange(128)[None, :] // 4)) % 2 == 0, _u8(0.92), _u8(0.12))


def object_pattern(size: int) -> np.ndarray:
    """The chequered object texture shared by cars and boats (4 px cells), uint8 grey levels (size <= 128)."""
    return CHEQUER[:size, :size]


def _stripes(h: int, w: int, period: int, lo: float, hi: float, vertical: bool) -> np.ndarray:
    """Bands of `period` px (half `hi`, half `lo`) across the width (vertical) or height, uint8 grey levels."""
    idx = np.arange(w if vertical else h)
    line = np.where((idx // (period // 2 or 1)) % 2 == 0, _u8(hi), _u8(lo))
    return np.broadcast_to(line[None, :] if vertical else line[:, None], (h, w))


def class_names(extras: bool = False, kind: str = "proportion") -> tuple[str, ...]:
    """The classes a probe scene uses: road and water only in the local control (no objects)."""
    if kind in ("local", "local_fine"):
        return CLASSES[:2]
    return CLASSES if extras else CLASSES[:CORE]


def _paint_dots(image: np.ndarray, rows: np.ndarray, cols: np.ndarray, colour_class: np.ndarray) -> None:
    """2x2 dots at cells (rows, cols) of the 2-px grid, in the cue colour of `colour_class`."""
    rgb = CUE_RGB[colour_class]
    for dy in (0, 1):
        for dx in (0, 1):
            image[2 * rows + dy, 2 * cols + dx] = rgb


def _layout(rng: np.random.Generator, h: int, w: int, cuts: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(surface map, curb mask): one surface, or (SPLIT_FRACTION of scenes) two cut at a share from `cuts` (none:
    always one surface; the draw is made either way, so other draws do not shift)."""
    surface = np.full((h, w), ROAD if rng.random() < 0.5 else WATER, dtype=np.uint8)
    curb = np.zeros((h, w), dtype=bool)
    if rng.random() < SPLIT_FRACTION and cuts:
        vertical = rng.random() < 0.5
        length = w if vertical else h
        cut = int(round(length * rng.choice(list(cuts))))
        other = WATER if surface[0, 0] == ROAD else ROAD
        if vertical:
            surface[:, cut:] = other
            curb[:, max(0, cut - 1): cut + 1] = True
        else:
            surface[cut:, :] = other
            curb[max(0, cut - 1): cut + 1, :] = True
    return surface, curb


def window_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum of `a` over the (2r+1)x(2r+1) square around every entry, zeros beyond the edges."""
    padded = np.pad(a.astype(np.int64), r)
    s = np.zeros((padded.shape[0] + 1, padded.shape[1] + 1), dtype=np.int64)
    s[1:, 1:] = padded.cumsum(0).cumsum(1)
    k, (h, w) = 2 * r + 1, a.shape
    return s[k: k + h, k: k + w] - s[:h, k: k + w] - s[k: k + h, :w] + s[:h, :w]


def _render_local(rng: np.random.Generator, h: int, w: int, cells: int = LOCAL_CELLS, density: float = LOCAL_DENSITY
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The local controls: i.i.d. red/blue dots on `density` of the 2x2 cells; a pixel's class is the majority
    colour within 2 * cells + 1 px (the (2 * cells + 1)^2 cells around its own)."""
    image = np.repeat(_u8(rng.normal(0.45, 0.09, (h, w)))[:, :, None], 3, axis=2)
    gh, gw = h // 2, w // 2
    has_dot = rng.random((gh, gw)) < density
    red = rng.random((gh, gw)) < 0.5
    rows, cols = np.nonzero(has_dot)
    _paint_dots(image, rows, cols, np.where(red[rows, cols], ROAD, WATER))
    score = window_sum(np.where(has_dot, np.where(red, 1, -1), 0), cells)
    cells = np.where(score > 0, ROAD, np.where(score < 0, WATER, IGNORE)).astype(np.uint8)
    label = np.full((h, w), IGNORE, dtype=np.uint8)  # an odd last row / column belongs to no cell
    label[: 2 * gh, : 2 * gw] = np.repeat(np.repeat(cells, 2, axis=0), 2, axis=1)
    return image, label, label.copy()


def _place_marks(rng: np.random.Generator, image: np.ndarray, free: np.ndarray, rgb: np.ndarray,
                 side: int = MARK, count_range: tuple[int, int] = PRESENCE_MARKS) -> None:
    """1-3 (count_range) side x side squares of colour `rgb`, each wholly inside `free`."""
    s = np.zeros((free.shape[0] + 1, free.shape[1] + 1), dtype=np.int64)  # integral image of `free`
    s[1:, 1:] = free.cumsum(0).cumsum(1)
    count = s[side:, side:] - s[:-side, side:] - s[side:, :-side] + s[:-side, :-side]  # per top-left corner
    spots = np.flatnonzero(count == side * side)
    n = int(rng.integers(count_range[0], count_range[1] + 1)) if len(spots) else 0
    for spot in spots[rng.integers(0, len(spots), size=n)]:  # marks may overlap
        top, left = np.unravel_index(spot, count.shape)
        image[top: top + side, left: left + side] = rgb


def _presence_marks(rng: np.random.Generator, image: np.ndarray, label: np.ndarray, specks: bool = False) -> None:
    """Blue marks on any surface (and, diluted, red specks on any surface), then red marks on road only, drawn last
    so that every red mark stays whole."""
    surfaces = (label == ROAD) | (label == WATER)
    _place_marks(rng, image, surfaces, CUE_RGB[WATER])
    if specks:
        _place_marks(rng, image, surfaces, CUE_RGB[ROAD], side=SPECK, count_range=SPECKS)
    _place_marks(rng, image, label == ROAD, CUE_RGB[ROAD])


def render_scene(data_seed: int, split: str, index: int, size: tuple[int, int] = (128, 128), extras: bool = False,
                 kind: str = "proportion") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene: (uint8 RGB image (H,W,3), uint8 label map (H,W), uint8 surface map (H,W)).

    The surface map gives the surface class (road or water) under every pixel, for checking the region rule (the
    local control has no surfaces: its surface map is its label map). `extras` adds the towers (failure mode 2)
    and beds with pillows (failure mode 3); `kind` picks the cue (PROBE_KINDS). About 1 ms at 128x128.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"probe kind {kind!r}: choose from {', '.join(PROBE_KINDS)}")
    rng = _rng(data_seed, split, index)
    h, w = size
    if kind == "local":
        return _render_local(rng, h, w)
    if kind == "local_fine":
        return _render_local(rng, h, w, FINE_CELLS, FINE_DENSITY)
    grey = _u8(rng.normal(0.45, 0.09, (h, w)))
    surface, curb = _layout(rng, h, w, SPLIT_AT[kind])
    image = np.repeat(grey[:, :, None], 3, axis=2)

    # cue dots on the 2x2 grid: colour drawn from the share of the surface under the dot (presence: all blue)
    gh, gw = h // 2, w // 2
    has_dot = rng.random((gh, gw)) < DOT_DENSITY
    rows, cols = np.nonzero(has_dot)
    if kind in ("presence", "diluted"):
        colour_class = np.full(len(rows), WATER)
    else:
        own = rng.random((gh, gw)) < OWN_SHARE
        if kind == "shortcut" and rng.random() < CUE_REVERSED:
            own = ~own
        cell_surface = surface[: gh * 2: 2, : gw * 2: 2]
        colour_class = np.where(own, cell_surface, np.where(cell_surface == ROAD, WATER, ROAD))[rows, cols]
    _paint_dots(image, rows, cols, colour_class)
    label = surface.copy()
    image[curb] = CURB_GREY
    label[curb] = IGNORE

    # 1. identical objects; class from the surface they stand on (placed inside one surface)
    for _ in range(int(rng.integers(1, 4))):
        s = min(int(rng.integers(16, 33)), h, w)
        for _attempt in range(10):
            top, left = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            region = surface[top: top + s, left: left + s]
            if (region == region[0, 0]).all() and not curb[top: top + s, left: left + s].any():
                image[top: top + s, left: left + s] = object_pattern(s)[:, :, None]
                label[top: top + s, left: left + s] = CAR if region[0, 0] == ROAD else BOAT
                break

    # 2. confusable towers: same texture, class by extent
    if extras and rng.random() < TOWER_PROB:
        tall = rng.random() < TALL_SHARE
        th = int(rng.integers(min(64, h), min(101, h + 1))) if tall else min(int(rng.integers(16, 33)), h)
        tw = min(int(rng.integers(16, 29)), w)
        top, left = int(rng.integers(0, h - th + 1)), int(rng.integers(0, w - tw + 1))
        image[top: top + th, left: left + tw] = _stripes(th, tw, 4, 0.3, 0.62, vertical=True)[:, :, None]
        label[top: top + th, left: left + tw] = SKYSCRAPER if tall else BUILDING

    # 3. inconspicuous pillows on a bed
    if extras and rng.random() < BED_PROB:
        bh, bw = min(int(rng.integers(36, 57)), h), min(int(rng.integers(36, 57)), w)
        top, left = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        image[top: top + bh, left: left + bw] = _stripes(bh, bw, 6, 0.55, 0.72, vertical=False)[:, :, None]
        label[top: top + bh, left: left + bw] = BED
        for _ in range(int(rng.integers(1, 4))):
            ps = min(int(rng.integers(10, 15)), bh, bw)
            pt, pl = int(rng.integers(top, top + bh - ps + 1)), int(rng.integers(left, left + bw - ps + 1))
            stripes = _stripes(bh, bw, 6, 0.63, 0.80, vertical=False)
            image[pt: pt + ps, pl: pl + ps] = stripes[pt - top: pt - top + ps, pl - left: pl - left + ps, None]
            label[pt: pt + ps, pl: pl + ps] = PILLOW

    if kind in ("presence", "diluted"):
        _presence_marks(rng, image, label, specks=kind == "diluted")
    if kind == "shortcut" and surface[0, 0] == DECOY_ON.get(split, WATER):
        _place_marks(rng, image, (label == ROAD) | (label == WATER), DECOY_RGB, count_range=(1, 1))
    return image, label, surface


_SCENES: dict[tuple, tuple[Image.Image, Image.Image]] = {}


class ProbeDataset(SegDataset):
    """The context probe as a dataset; scenes are rendered on first use and cached for the process."""

    def __init__(self, cfg: DataConfig, split: str, train: bool):
        names = class_names(cfg.probe_extras, cfg.probe_kind)
        super().__init__("probe", split, names, PALETTE[: len(names)], cfg, train)
        sizes = {"train": cfg.train_size, "val": cfg.val_size, "test": cfg.val_size}
        if split not in sizes:
            raise DatasetError(f"probe: unknown split '{split}' (train, val, test)")
        self.length = sizes[split]

    def __len__(self) -> int:
        return self.length

    def load(self, index: int) -> tuple[Image.Image, Image.Image]:
        c = self.cfg
        key = (c.data_seed, self.split, index, c.image_size, c.probe_extras, c.probe_kind)
        if key not in _SCENES:  # shared by every run in this process (a study worker runs many)
            image, label, _ = render_scene(*key)
            _SCENES[key] = (Image.fromarray(image, mode="RGB"), Image.fromarray(label, mode="L"))
        return _SCENES[key]
