"""The ablation axes, once: where each lives in a config, its results-table column, how it prints and reads back.

The results table (study.results.table), the claims (study.results.claims) and the report (study.report.render)
all read this table. Every hashed config key that no axis reads is part of a run's recipe (`recipe_of`): the
results table carries its hash, and two variants whose recipes differ are never paired for a claim, so a config
field that nobody declared as an axis cannot silently pair variants that differ in it. No torch here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

from study.config import SECTIONS, UNHASHED


@dataclass(frozen=True)
class Axis:
    """One ablation axis: a typed value read from a resolved config, and its cell in the results table."""

    column: str  # results-table column (runs.parquet / runs.csv)
    keys: tuple[str, ...]  # the config keys ("section.field") the value is read from
    value: Callable[[dict[str, Any]], Any]  # typed value of a resolved config dict (RunRecord.config)
    show: Callable[[Any], Any]  # the table cell of a typed value
    parse: Callable[[Any], Any]  # the typed value of a table cell (the inverse of show)
    meaning: str  # what the axis is
    note: str = ""  # the report's model-semantics paragraph repeats it under the variants table
    shown: bool = False  # always a column of the report's variants table (otherwise only when it varies)
    pyramid_only: bool = False  # a property of the pyramid ('-' for the FCN): "PPM beats the FCN" may differ in it

    def cell(self, config: dict[str, Any]) -> Any:
        return self.show(self.value(config))


def _join(values: tuple) -> str:
    return ",".join(str(v) for v in values) if values else "none"


def _ints(cell: Any) -> tuple[int, ...]:
    return () if str(cell) in ("", "none") else tuple(int(v) for v in str(cell).split(","))


def _dash(show: Callable[[Any], Any] = str) -> Callable[[Any], Any]:
    """Print None (the axis does not apply, e.g. pooling without a pyramid) as '-'."""
    return lambda v: "-" if v is None else show(v)


def _undash(parse: Callable[[Any], Any] = str) -> Callable[[Any], Any]:
    return lambda cell: None if str(cell) == "-" else parse(cell)


def _bins(config: dict[str, Any]) -> tuple[int, ...]:
    """The pyramid bins actually built: empty for the FCN baseline."""
    m = config["model"]
    return tuple(m["bins"]) if m["ppm"] else ()


def _if_pyramid(read: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, Any]], Any]:
    return lambda config: read(config["model"]) if _bins(config) else None


def pyramid_axis(column: str, key: str, read: Callable[[dict[str, Any]], Any], meaning: str, *,
                 show: Callable[[Any], Any] = str, parse: Callable[[Any], Any] = str, note: str = "",
                 shown: bool = True) -> Axis:
    """An axis of the pyramid only: read from the model section when a pyramid is built, '-' (None) for the FCN."""
    return Axis(column, (key,), _if_pyramid(read), _dash(show), _undash(parse), meaning, note=note, shown=shown,
                pyramid_only=True)


BACKBONE = Axis("backbone", ("model.backbone",), lambda c: str(c["model"]["backbone"]), str, str,
                "timm backbone name", shown=True)
DEPTH = Axis("depth", ("model.layers",), lambda c: tuple(c["model"].get("layers") or ()) or None,
             lambda v: _join(v) if v else "default", lambda cell: None if str(cell) == "default" else _ints(cell),
             "residual blocks per stage (model.layers); default: the backbone's own", shown=True)
PPM = Axis("ppm", ("model.ppm", "model.bins"), lambda c: bool(_bins(c)), bool, bool,
           "whether a pyramid pooling module is built (false: the dilated-FCN baseline)")
BINS = Axis("bins", ("model.ppm", "model.bins"), _bins, _join, _ints,
            "pyramid bin sizes, e.g. 1,2,3,6; none for the FCN baseline", shown=True)
POOL = pyramid_axis("pool", "model.pool", lambda m: str(m["pool"]),
                    "pooling of each pyramid branch: avg or max; none: the capacity-matched FCN (unpooled branches)")
REDUCTION = pyramid_axis(
    "reduction", "model.reduction", lambda m: bool(m["reduction"]),
    show=lambda v: "DR" if v else "no DR", parse=lambda cell: str(cell) == "DR", meaning=
    "dimension reduction: each branch's 1x1 conv gives C/N channels for N bins (DR) or C (no DR)",
    note="DR (`model.reduction: true`) sets each branch's width to C/N for N bins (the paper's rule); no DR keeps "
         "it at C (what the official code does with one bin).", shown=True)
BRANCH = pyramid_axis(
    "branch", "model.ppm_branch", lambda m: str(m.get("ppm_branch", "conv")),
    "what a pyramid branch is: conv (pool -> 1x1 conv -> BN -> ReLU, the paper's) or raw (the pooled maps)",
    note="A separate option `model.ppm_branch: raw` (raw pooled maps concatenated without conv/BN/ReLU, column "
         "`branch`) exists for study only and maps to no paper row.", shown=True)
AUX_WEIGHT = Axis("aux_weight", ("model.aux_weight",), lambda c: float(c["model"]["aux_weight"]), float, float,
                  "weight of the auxiliary loss (0: no aux head)", shown=True)
OUTPUT_STRIDE = Axis("output_stride", ("model.output_stride",), lambda c: int(c["model"]["output_stride"]), int, int,
                     "backbone output stride (dilation)")
AUGMENT = Axis("augment", ("data.augment",), lambda c: tuple(c["data"]["augment"]),
               lambda v: "+".join(v) if v else "none", lambda cell: () if cell == "none" else tuple(cell.split("+")),
               "training augmentations, e.g. scale+rotate+blur+flip; none", shown=True)


def _crop(c: dict[str, Any]) -> tuple[int, ...]:
    """The training crop in pixels: data.crop_size, or with frozen features the stored-map window times the stride
    (the whole resized image without one)."""
    if not c["model"].get("freeze_backbone"):
        return tuple(int(v) for v in c["data"]["crop_size"])
    cells, stride = c["data"].get("feature_crop"), int(c["model"]["output_stride"])
    return tuple(int(v) * stride for v in cells) if cells else tuple(int(v) for v in c["data"]["resize"] or ())


CROP = Axis("crop", ("data.crop_size", "data.feature_crop"), _crop,
            lambda v: "x".join(str(x) for x in v), lambda cell: tuple(int(v) for v in str(cell).split("x")),
            "training crop (h x w, pixels; frozen features: the stored-map window x the output stride)")
STEPS = Axis("steps", ("train.steps",), lambda c: int(c["train"]["steps"]), int, int, "training iterations")
BATCH = Axis("batch", ("train.batch_size",), lambda c: int(c["train"]["batch_size"]), int, int,
             "global batch size")
LR = Axis("lr", ("train.lr",), lambda c: float(c["train"]["lr"]), float, float, "base learning rate")
DATA = Axis("data", ("data.name",), lambda c: str(c["data"]["name"]), str, str, "data set")
PROBE_KIND = Axis("probe_kind", ("data.probe_kind",),
                  lambda c: str(c["data"].get("probe_kind", "proportion")) if c["data"]["name"] == "probe" else None,
                  _dash(), _undash(), "the probe's construction: proportion (default) or a control (presence, local, "
                  "local_fine, misaligned, diluted, shortcut); '-' for other data sets")

AXES: tuple[Axis, ...] = (BACKBONE, DEPTH, PPM, BINS, POOL, REDUCTION, BRANCH, AUX_WEIGHT, OUTPUT_STRIDE, AUGMENT,
                          CROP, STEPS, BATCH, LR, DATA, PROBE_KIND)
TRAINING = (AUGMENT, CROP, STEPS, BATCH, LR)  # the axes of how a model is trained (beside the recipe column)
RECIPE_COLUMN = "recipe"  # results-table column: hash of the config less its axes (recipe_of)
NOT_RECIPE = {("run", "seed")}  # hashed, yet differs within a variant: never part of the recipe


def axes_of(config: dict[str, Any]) -> dict[str, Any]:
    """The ablation axes of one resolved config, as readable table cells."""
    return {a.column: a.cell(config) for a in AXES}


def typed_axes(row: Any) -> dict[Axis, Any]:
    """The typed axis values of one results-table row (a mapping column -> cell); absent columns are left out."""
    return {a: a.parse(row[a.column]) for a in AXES if a.column in row}


def recipe_of(config: dict[str, Any]) -> dict[str, Any]:
    """The hashed config keys that no axis reads ("section.field": value), the seed excepted.

    Fields declared with `added(...)` enter only off their default (as in the config hash), and a field that an
    older record lacks counts as its default.
    """
    on_axes = {k for a in AXES for k in a.keys}
    out = {}
    for name, cls in SECTIONS.items():
        section = config.get(name, {})
        defaults = json.loads(json.dumps(asdict(cls())))
        for f in fields(cls):
            key = f"{name}.{f.name}"
            if (name, f.name) in UNHASHED | NOT_RECIPE or key in on_axes:
                continue
            value = section.get(f.name, defaults[f.name])
            if f.metadata.get("added") and value == defaults[f.name]:
                continue
            out[key] = value
    return out


def recipe_hash(config: dict[str, Any]) -> str:
    """12 hex digits of recipe_of: variants with different recipes are never compared by a claim."""
    blob = json.dumps(recipe_of(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def docs_table() -> str:
    """The markdown table of the axes in docs/configs.md (a test keeps the two the same)."""
    rows = ["| column | config keys | what it is |", "|---|---|---|"]
    rows += [f"| `{a.column}` | {', '.join(f'`{k}`' for k in a.keys)} | {a.meaning} |" for a in AXES]
    return "\n".join(rows)
