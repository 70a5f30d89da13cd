"""The study manifest: results/<study>/study.json, what the report needs to know about a study.

Torch-free and Optuna-free: the runner writes it, results/ and report/ read it.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from study.atomic import atomic_write_text

MANIFEST_FILE = "study.json"
# What a study is, from its file to its report: a grid of variants judged on the paper's claims, an Optuna search,
# controls judged by what their data's construction implies, or an A/A pair judged by the claims rule.
StudyKind = Literal["grid", "search", "controls", "aa"]
KINDS: tuple[str, ...] = get_args(StudyKind)


class ManifestError(ValueError):
    """A study manifest is missing a field, has a bad one, or cannot be read; the message names it."""


@dataclass(frozen=True)
class StudyManifest:
    """One study: its name, where it came from, how to rerun it, and its variants or search space."""

    name: str
    description: str = ""
    study_file: str = ""
    base_config: str = ""
    command: str = ""
    kind: StudyKind = "grid"
    baseline: str | None = None
    paper_table: str | None = None
    seeds: tuple[int, ...] = ()
    objective: dict[str, str] = dataclasses.field(
        default_factory=lambda: {"metric": "miou", "direction": "maximize"})
    overrides: dict[str, Any] = dataclasses.field(default_factory=dict)  # dotted key -> value, every cell
    variants: dict[str, Any] = dataclasses.field(default_factory=dict)
    variant_order: tuple[str, ...] = ()
    space: dict[str, Any] | None = None
    n_trials: int | None = None
    throughput: str = "per_run"  # per_variant: timed once per variant after the sweep (bench/<variant>.json)
    # seeds added in rounds: the study file's plan (study.results.sequential.SequentialPlan.from_dict reads it)
    seeds_on_demand: dict[str, Any] | None = None
    equivalence_margin: float | None = None  # mIoU points: a claim interval inside ±margin reads "equivalent"
    controls: list[dict[str, Any]] | None = None  # a controls study's comparisons (study.results.controls)
    aa: dict[str, Any] | None = None  # a controls study's A/A pair {a, b, seeds_per_group} (study.results.aa)
    confirms: str | None = None  # the study this one re-runs (fresh seeds, another backbone; its folder sits beside this one's)
    caveats: list[str] | None = None  # the study file's caveats: what a reader of its report must know
    # the study file as each sweep found it: text, sha256, time, runs ended by then (study.registration)
    registrations: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for key in ("seeds", "variant_order"):
            d[key] = list(d[key])
        for key in ("equivalence_margin", "controls", "aa", "confirms", "caveats", "registrations"):  # absent unless the study file sets them: older manifests
            if d[key] is None:                          # stay as written
                del d[key]
        return d

    @classmethod
    def from_dict(cls, data: Any) -> StudyManifest:
        if not isinstance(data, dict):
            raise ManifestError(f"study manifest: expected a mapping, got {type(data).__name__}")
        if not isinstance(data.get("name"), str) or not data["name"]:
            raise ManifestError("study manifest: field 'name' is missing or not a non-empty string")
        for key in ("description", "study_file", "base_config", "command", "kind"):
            if key in data and not isinstance(data[key], str):
                raise ManifestError(f"study manifest: field {key!r} must be a string")
        if data.get("kind", "grid") not in KINDS:
            raise ManifestError(f"study manifest: field 'kind' must be one of {KINDS}, got {data['kind']!r}")
        for key in ("baseline", "paper_table", "confirms"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise ManifestError(f"study manifest: field {key!r} must be a string or null")
        seeds = data.get("seeds") or []
        if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
            raise ManifestError("study manifest: field 'seeds' must be a list of integers")
        objective = data.get("objective") or {"metric": "miou", "direction": "maximize"}
        if not isinstance(objective, dict) or objective.get("direction", "maximize") not in ("maximize",
                                                                                            "minimize"):
            raise ManifestError("study manifest: field 'objective' must be {metric, direction: maximize|minimize}")
        order = data.get("variant_order") or []
        if not isinstance(order, list) or not all(isinstance(v, str) for v in order):
            raise ManifestError("study manifest: field 'variant_order' must be a list of strings")
        for key in ("overrides", "variants", "space", "seeds_on_demand"):
            if data.get(key) is not None and not isinstance(data[key], dict):
                raise ManifestError(f"study manifest: field {key!r} must be a mapping")
        n_trials = data.get("n_trials")
        if n_trials is not None and (not isinstance(n_trials, int) or isinstance(n_trials, bool)):
            raise ManifestError("study manifest: field 'n_trials' must be an integer or null")
        margin = data.get("equivalence_margin")
        if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin <= 0):
            raise ManifestError("study manifest: field 'equivalence_margin' must be a positive number or null")
        controls = data.get("controls")
        if controls is not None and (not isinstance(controls, list) or not all(isinstance(c, dict) for c in controls)):
            raise ManifestError("study manifest: field 'controls' must be a list of comparisons or null")
        caveats = data.get("caveats")
        if caveats is not None and (not isinstance(caveats, list) or not all(isinstance(c, str) for c in caveats)):
            raise ManifestError("study manifest: field 'caveats' must be a list of sentences or null")
        registrations = data.get("registrations")
        if registrations is not None and (not isinstance(registrations, list) or not all(
                isinstance(r, dict) and {"digest", "text", "at", "finished"} <= set(r) for r in registrations)):
            raise ManifestError("study manifest: field 'registrations' must be a list of {digest, text, at, finished}")
        if data.get("aa") is not None and not isinstance(data["aa"], dict):
            raise ManifestError("study manifest: field 'aa' must be an A/A pair {a, b, seeds_per_group} or null")
        if data.get("throughput", "per_run") not in ("per_variant", "per_run"):
            raise ManifestError("study manifest: field 'throughput' must be per_variant or per_run")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("kind", "grid") == "grid" and (data.get("controls") or data.get("aa")):  # written before the
            values["kind"] = "controls" if data.get("controls") else "aa"                   # kinds were typed
        values.update(seeds=tuple(seeds), objective=dict(objective), overrides=dict(data.get("overrides") or {}),
                      variants=dict(data.get("variants") or {}), variant_order=tuple(data.get("variant_order") or []))
        return cls(**values)

    @property
    def order(self) -> list[str]:
        """The variants in the study's order."""
        return list(self.variant_order or self.variants)


# The sections of a controls study's file, parsed once here (torch- and scipy-free) for the study file, the manifest
# and the results that judge them.
MIN_SEEDS = 3  # the claims rule's fewest shared seeds: no verdict on fewer (study.results.stats reads it here)
EXPECTATIONS = ("better", "worse", "non-inferior", "equivalent")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One control comparison of a study file: variants a and b, what the data implies, the margin, why."""

    a: str
    b: str
    expected: str  # one of EXPECTATIONS
    margin: float  # mIoU points
    why: str

    @classmethod
    def from_dict(cls, data: Any, where: str = "controls") -> Comparison:
        """From a study file's or manifest's mapping; a one-line ValueError names the field."""
        if not isinstance(data, dict) or set(data) != {"a", "b", "expected", "margin", "why"}:
            raise ValueError(f"{where}: each comparison is {{a, b, expected, margin, why}}")
        if data["expected"] not in EXPECTATIONS:
            raise ValueError(f"{where}: expected must be one of {', '.join(EXPECTATIONS)}, got {data['expected']!r}")
        margin = data["margin"]
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin <= 0:
            raise ValueError(f"{where}: margin must be a positive number of mIoU points")
        if not all(isinstance(data[k], str) and data[k] for k in ("a", "b", "why")):
            raise ValueError(f"{where}: a, b and why must be non-empty strings")
        return cls(data["a"], data["b"], data["expected"], float(margin), data["why"])


def parse_aa(data: Any, variants: Any = None, where: str = "aa") -> dict[str, Any]:
    """{a, b, seeds_per_group} checked (a one-line ValueError names the field); a and b among `variants` if given."""
    if not isinstance(data, dict) or set(data) != {"a", "b", "seeds_per_group"}:
        raise ValueError(f"{where}: expected {{a, b, seeds_per_group}}")
    if not all(isinstance(data[k], str) and data[k] for k in ("a", "b")) or data["a"] == data["b"]:
        raise ValueError(f"{where}: a and b must name two different variants")
    n = data["seeds_per_group"]
    if isinstance(n, bool) or not isinstance(n, int) or n < MIN_SEEDS:
        raise ValueError(f"{where}: seeds_per_group must be an integer >= {MIN_SEEDS} (the rule's fewest seeds)")
    for key in ("a", "b"):
        if variants is not None and data[key] not in variants:
            raise ValueError(f"{where}: {key} names variant {data[key]!r}, which the study does not have")
    return dict(data)


def write_manifest(study_dir: str | Path, manifest: StudyManifest) -> Path:
    """results/<study>/study.json, atomically (the runner's layout: indent 2, sorted keys)."""
    path = Path(study_dir) / MANIFEST_FILE
    atomic_write_text(path, json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n")
    return path


def read_manifest(study_dir: str | Path) -> StudyManifest | None:
    """The manifest of a study folder; None when it has none (loose runs)."""
    path = Path(study_dir) / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"{path}: unreadable study manifest ({e})") from None
    try:
        return StudyManifest.from_dict(data)
    except ManifestError as e:
        raise ManifestError(f"{path}: {str(e).removeprefix('study manifest: ')}") from None
