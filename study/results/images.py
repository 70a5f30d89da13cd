"""Image-level uncertainty: how much a claim's difference moves when the evaluation images are resampled, alone
(trained models held fixed) and together with the training seeds (a two-level bootstrap).

Records carry per-image per-class intersection and union counts (`metrics["per_image"]`, packed by
study.record.pack_counts) and, from records written since, the image ids in the same order. mIoU of a split =
mean over all K classes of sum_i I[i,k] / sum_i U[i,k], absent classes counting 0 (the official convention).
Images are resampled in groups: frames of one video are correlated, so a data set whose image ids name their
sequence (CamVid: `0001TP_006690` is sequence `0001TP`) is resampled by sequence; by default each image is its own
group. One fixed set of resamples (the same groups for every variant and seed) gives each run a vector of
resampled mIoUs.
- image-level interval: percentile interval of the seed-mean paired difference over those resamples, the seeds
  fixed. It answers: is the difference larger than the evaluation set's own sampling noise, for these models?
- two-level interval: each resample also redraws the row's seeds with replacement (then the images, as above).
  It answers: how far would the difference move with other training seeds and another evaluation set?
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from study.record import RunRecord, unpack_counts

RESAMPLES = 2000
SEED = 0
MIN_GROUPS = 5  # a bootstrap over fewer groups cannot show their spread: no image-level interval


def each_image(image_id: str) -> str:
    """The default grouping: every image is its own group."""
    return image_id


def video_sequence(image_id: str) -> str:
    """CamVid: the sequence prefix of a frame's name (`0016E5_07959` -> `0016E5`, `Seq05VD_f00000` -> `Seq05VD`)."""
    return image_id.rsplit("/", 1)[-1].split("_", 1)[0]


def labelme_collection(image_id: str) -> str:
    """LabelMeFacade: the LabelMe collection a photograph came from (`static_boston_street_april__p1010213` ->
    `static_boston_street_april`), so photographs of one street and camera resample together."""
    return image_id.rsplit("/", 1)[-1].split("__", 1)[0]


# data set name -> group of an image id
GROUPING: dict[str, Callable[[str], str]] = {"camvid": video_sequence, "labelmefacade": labelme_collection}


@dataclass(frozen=True)
class ImageBootstrap:
    """{(variant, seed): resampled mIoUs} and how the images were grouped; `note` says why it is empty."""

    mious: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    groups: int = 0
    grouping: str = "each image"
    note: str = ""


def miou_of_counts(intersection: np.ndarray, union: np.ndarray) -> float:
    """mIoU (fraction) of summed per-image counts, absent classes (union 0) counting 0."""
    i, u = np.asarray(intersection).sum(0), np.asarray(union).sum(0)
    return float(np.where(u > 0, i / np.maximum(u, 1), 0.0).mean())


def resample_weights(n_images: int, resamples: int = RESAMPLES, seed: int = SEED,
                     groups: Sequence[str] | None = None) -> np.ndarray:
    """(resamples x n_images) counts of how often each image is drawn, fixed by `seed`. With `groups` (one label
    per image) whole groups are drawn with replacement (as many draws as groups) and an image counts as often as
    its group was drawn."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.multinomial(n_images, np.full(n_images, 1.0 / n_images), size=resamples).astype(float)
    labels, index = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    drawn = rng.multinomial(len(labels), np.full(len(labels), 1.0 / len(labels)), size=resamples).astype(float)
    return drawn[:, index]


def resampled_miou(intersection: np.ndarray, union: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One mIoU per resample (vectorised: one weights @ [I | U] product; ~0.1 s for 2000 images x 150 classes)."""
    k = np.shape(intersection)[1]
    both = weights @ np.hstack([intersection, union]).astype(float)
    i, u = both[:, :k], both[:, k:]
    return np.where(u > 0, i / np.maximum(u, 1), 0.0).mean(1)


def bootstrap_mious(records: Iterable[RunRecord], resamples: int = RESAMPLES, seed: int = SEED) -> ImageBootstrap:
    """Resampled mIoUs of completed records with per-image counts of one common evaluation set."""
    counts, ids, data = {}, set(), set()
    for r in records:
        per_image = (r.metrics or {}).get("per_image") if r.status == "completed" else None
        if not per_image:
            continue
        try:
            counts[(r.variant, r.seed)] = (unpack_counts(per_image["intersection"]),
                                           unpack_counts(per_image["union"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"run {r.id}: per-image counts unreadable ({e})") from None
        if per_image.get("ids"):
            ids.add(tuple(str(i) for i in per_image["ids"]))
        data.add(str(((r.config or {}).get("data") or {}).get("name", "")))
    shapes = {c[0].shape for c in counts.values()} | {c[1].shape for c in counts.values()}
    if not counts:
        return ImageBootstrap(note="the records carry no per-image counts")
    if len(shapes) != 1 or len(ids) > 1 or len(data) != 1:
        return ImageBootstrap(note="the runs were evaluated on different image sets")
    n_images = next(iter(shapes))[0]
    group_of = GROUPING.get(next(iter(data)), each_image) if ids else each_image
    if ids and len(next(iter(ids))) != n_images:
        raise ValueError(f"per-image ids: {len(next(iter(ids)))} ids for {n_images} images")
    groups = [group_of(i) for i in next(iter(ids))] if ids and group_of is not each_image else None
    name = "each image" if groups is None else group_of.__name__.replace("_", " ")
    n_groups = len(set(groups)) if groups is not None else n_images
    if n_groups < MIN_GROUPS:
        return ImageBootstrap(groups=n_groups, grouping=name,
                              note=f"the evaluation set has {n_groups} group(s) ({name}), fewer than {MIN_GROUPS}")
    weights = resample_weights(n_images, resamples, seed, groups)
    return ImageBootstrap({key: resampled_miou(i, u, weights) for key, (i, u) in counts.items()}, n_groups, name)


def image_interval(boot: Mapping[tuple[str, int], np.ndarray], better: str, worse: str, seeds: Sequence[int],
                   confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval (in points) of the seed-mean difference better - worse, the seeds fixed; nan when a run
    lacks counts."""
    diffs = _differences(boot, better, worse, seeds)
    if diffs is None:
        return math.nan, math.nan
    return _percentiles(100 * diffs.mean(0), confidence)


def two_level_interval(boot: Mapping[tuple[str, int], np.ndarray], better: str, worse: str, seeds: Sequence[int],
                       confidence: float = 0.95, seed: int = SEED) -> tuple[float, float]:
    """Percentile interval (in points) when each resample draws the seeds with replacement and then the images
    (the resample's image draw, shared by every seed and both variants); nan when a run lacks counts."""
    diffs = _differences(boot, better, worse, seeds)
    if diffs is None:
        return math.nan, math.nan
    n, resamples = diffs.shape
    drawn = np.random.default_rng([seed, 1]).integers(0, n, size=(resamples, n))
    return _percentiles(100 * diffs[drawn, np.arange(resamples)[:, None]].mean(1), confidence)


def _differences(boot: Mapping[tuple[str, int], np.ndarray], better: str, worse: str,
                 seeds: Sequence[int]) -> np.ndarray | None:
    keys = [(better, s) for s in seeds] + [(worse, s) for s in seeds]
    if not seeds or any(k not in boot for k in keys):
        return None
    return np.stack([boot[(better, s)] - boot[(worse, s)] for s in seeds])  # seeds x resamples


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = 100 * (1 - confidence) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def image_variance(boot: Mapping[tuple[str, int], np.ndarray], a: str, b: str, seeds: Sequence[int]) -> float | None:
    """The evaluation sample's part of a paired difference a - b (points²): the variance of each seed's difference
    over image resamples, its models held fixed, averaged over `seeds`; None without seeds or where a run lacks
    counts."""
    diffs = _differences(boot, a, b, seeds)
    if diffs is None:
        return None
    return float((100 * diffs).var(axis=1, ddof=1).mean())
