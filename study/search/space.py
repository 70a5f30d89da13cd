"""Study files (configs/studies/*.yaml) -> a validated StudySpec, its grid cells and its search suggestions.

A study names a base run config, shared overrides, seeds, an objective and either a grid of named variants
(each a mapping of dotted overrides) or an Optuna search space. Each (variant, seed) is one cell with one
stable output folder; a search trial is a cell whose variant name is derived from its trial number. A grid with
`seeds_on_demand` (a study.results.sequential.SequentialPlan) runs its seeds in rounds (study/search/rounds.py):
its seeds are the plan's, and the cells of the rounds so far are `StudySpec.cells`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from study.config import Config, ConfigError
from study.config_files import apply_overrides, from_dict, load_yaml_mapping, read_yaml
from study.manifest import KINDS, Comparison, StudyKind, StudyManifest, parse_aa

if TYPE_CHECKING:  # imported when a study file asks for it: the statistics load scipy
    from study.results.sequential import SequentialPlan

SAMPLERS = ("tpe", "random")
PRUNERS = ("median", "none")
PARAM_TYPES = ("float", "int", "categorical")
_NAME = re.compile(r"^[A-Za-z0-9+][A-Za-z0-9_.+\-]*$")


@dataclass(frozen=True)
class Param:
    """One search dimension over a dotted config key."""

    key: str
    type: str  # float | int | categorical
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()


@dataclass(frozen=True)
class SearchSpec:
    sampler: str = "tpe"
    pruner: str = "median"
    n_trials: int = 20  # the study's total budget, whatever the number of workers
    sampler_seed: int = 0
    params: tuple[Param, ...] = ()


@dataclass(frozen=True)
class StudySpec:
    name: str
    path: Path  # the study file
    base_config: Path
    description: str = ""
    paper_table: str | None = None
    baseline: str | None = None
    seeds: tuple[int, ...] = (0,)
    metric: str = "miou"
    direction: str = "maximize"
    overrides: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)  # grid: name -> dotted overrides
    search: SearchSpec | None = None
    max_retries: int = 1  # a failed cell is tried at most 1 + max_retries times
    # per_variant (grids): cells skip the benchmark; each variant is timed once, alone, after the sweep.
    # per_run: every cell times itself (next to whatever else runs then).
    throughput: str = "per_variant"
    on_demand: SequentialPlan | None = None  # seeds added in rounds; `seeds` is then the plan's seed order
    cells: tuple[tuple[str, int], ...] = ()  # the rounds' cells so far (on demand); empty: every variant x seed
    # the study's smallest difference of interest m (mIoU points), fixed in the study file before it runs: every
    # claim row is read against ±m, and one inside it reads "equivalent within ±m"; None: no size readings
    equivalence_margin: float | None = None
    # the earlier study on the same data and recipe whose paired noise `python -m study plan` plans with
    noise_from: str | None = None
    # kind: controls: the comparisons (study.manifest.Comparison as dicts) the report judges instead of the
    # paper's claims
    controls: tuple[dict[str, Any], ...] = ()
    # kind: controls: an A/A pair {a, b, seeds_per_group} (study.results.aa): twins judged by the claims rule
    aa: dict[str, Any] | None = None
    # the study this one re-runs (fresh seeds, another backbone): its report sets the two studies' verdicts side by side
    confirms: str | None = None
    caveats: tuple[str, ...] = ()  # what a reader of the report must know, in the conclusion's caveats
    kind: StudyKind = "grid"  # the study file's kind (a study with search: is a search)


def _err(path: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {message}")


def _dotted_mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and k.count(".") == 1 for k in value):
        raise _err(path, key, "expected a mapping of dotted keys (section.key: value)")
    return dict(value)


def _param(path: Path, key: str, raw: Any) -> Param:
    where = f"search.space.{key}"
    if key.count(".") != 1:
        raise _err(path, where, "keys must be dotted config keys (section.key)")
    if not isinstance(raw, dict) or raw.get("type") not in PARAM_TYPES:
        raise _err(path, where, f"needs type: one of {', '.join(PARAM_TYPES)}")
    unknown = set(raw) - {"type", "low", "high", "log", "choices"}
    if unknown:
        raise _err(path, where, f"unknown field(s) {sorted(unknown)}")
    if raw["type"] == "categorical":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _err(path, where, "categorical needs a non-empty list of choices")
        return Param(key, "categorical", choices=tuple(tuple(c) if isinstance(c, list) else c for c in choices))
    low, high = raw.get("low"), raw.get("high")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or not low < high:
        raise _err(path, where, "needs numbers low < high")
    log = raw.get("log", False)
    if not isinstance(log, bool) or (log and low <= 0):
        raise _err(path, where, "log must be true/false, and log needs low > 0")
    if raw["type"] == "int" and not (isinstance(low, int) and isinstance(high, int)):
        raise _err(path, where, "int needs integer low and high")
    return Param(key, raw["type"], low=low, high=high, log=log)


def _on_demand(path: Path, raw: Any) -> SequentialPlan:
    key = "seeds_on_demand"
    if not isinstance(raw, dict):
        raise _err(path, key, "expected a mapping {first, step, max_seeds, order, spend}")
    order = raw.get("order", [])
    if not isinstance(order, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in order):
        raise _err(path, f"{key}.order", "must be a list of non-negative integers (the seeds, in the order run)")
    from study.results.sequential import SequentialPlan

    try:
        return SequentialPlan.from_dict(raw)
    except (ValueError, TypeError) as e:
        raise _err(path, key, str(e).removeprefix("seeds on demand: ")) from None


def _controls(path: Path, raw: dict[str, Any], variants: dict[str, Any]
              ) -> tuple[StudyKind, tuple[dict[str, Any], ...], dict[str, Any] | None]:
    """The study's kind, and a controls study's comparisons or an A/A study's pair, checked: each names the
    study's variants."""
    kind = raw.get("kind", "search" if "search" in raw else "grid")
    if kind not in KINDS or (kind == "search") != ("search" in raw):
        raise _err(path, "kind", "must be grid, controls or aa (a study with search: is a search)")
    if (kind == "controls") != ("controls" in raw):
        raise _err(path, "controls", "a study of kind controls lists its comparisons under controls: (and only it)")
    if (kind == "aa") != ("aa" in raw):
        raise _err(path, "aa", "a study of kind aa names its A/A pair under aa: (and only it)")
    if kind not in ("controls", "aa"):
        return kind, (), None
    aa = None
    if "aa" in raw:
        try:
            aa = parse_aa(raw["aa"], variants)
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None
    items = raw.get("controls", [])
    if not isinstance(items, list) or (kind == "controls" and not items):
        raise _err(path, "controls", "expected a list of comparisons {a, b, expected, margin, why}")
    out = []
    for i, item in enumerate(items):
        try:
            cmp = Comparison.from_dict(item, f"controls[{i}]")
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None
        for v in (cmp.a, cmp.b):
            if v not in variants:
                raise _err(path, f"controls[{i}]", f"names variant {v!r}, which the study does not have")
        out.append(dict(item))
    return kind, tuple(out), aa


STUDY_KEYS = {"name", "description", "base_config", "paper_table", "baseline", "seeds", "objective", "overrides",
              "variants", "search", "max_retries", "throughput", "seeds_on_demand", "equivalence_margin", "kind",
              "controls", "aa", "confirms", "caveats", "noise_from"}


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file; every cell's config is built once here so errors surface before training."""
    path = Path(path)
    raw = load_yaml_mapping(path, "study file")
    unknown = sorted(set(raw) - STUDY_KEYS)
    if unknown:
        raise _err(path, unknown[0], f"unknown key (known: {', '.join(sorted(STUDY_KEYS))})")
    name, base_config = _name_and_base(path, raw)
    seeds, on_demand = _seeds(path, raw)
    metric, direction = _objective(path, raw)
    reading = _reading(path, raw, name)
    max_retries, throughput = _execution(path, raw)
    overrides = _dotted_mapping(path, "overrides", raw.get("overrides"))
    if ("variants" in raw) == ("search" in raw):
        raise _err(path, "variants", "a study has either variants (a grid) or search (an Optuna space)")
    variants = _variants(path, raw["variants"]) if "variants" in raw else {}
    search = _search(path, raw["search"]) if "search" in raw else None

    baseline = raw.get("baseline")
    if baseline is not None and baseline not in variants:
        raise _err(path, "baseline", f"{baseline!r} is not one of the variants")
    paper_table = raw.get("paper_table")
    if paper_table is not None and paper_table not in ("table1", "table2", "table3", "table4"):
        raise _err(path, "paper_table", "must be table1, table2, table3 or table4")

    kind, controls, aa = _controls(path, raw, variants)
    spec = StudySpec(name=name, path=path, base_config=base_config, description=str(raw.get("description", "")),
                     paper_table=paper_table, baseline=baseline, seeds=tuple(seeds), metric=metric,
                     direction=direction, overrides=overrides, variants=variants, search=search,
                     max_retries=max_retries, throughput=throughput, on_demand=on_demand, controls=controls,
                     aa=aa, kind=kind, **reading)
    for variant in variants:  # surface every grid cell's config error now, naming the variant
        try:
            cell_config(spec, variant, seeds[0])
        except ConfigError as e:
            raise ConfigError(f"{path}: variant {variant}: {e}") from None
    return spec


def _name_and_base(path: Path, raw: dict[str, Any]) -> tuple[str, Path]:
    """The study's name (default: the file's stem) and its base run config, which must exist."""
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not _NAME.match(name):
        raise _err(path, "name", "must be a simple name (letters, digits, _ . + -)")
    if not isinstance(raw.get("base_config"), str):
        raise _err(path, "base_config", "is required: a run config path relative to the study file")
    base_config = path.parent / raw["base_config"]
    if not base_config.is_file():
        raise _err(path, "base_config", f"{base_config} not found")
    return name, base_config


def _seeds(path: Path, raw: dict[str, Any]) -> tuple[list[int], SequentialPlan | None]:
    """The seeds, listed or (seeds_on_demand) the plan's, and the plan."""
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds) \
            or len(set(seeds)) != len(seeds):
        raise _err(path, "seeds", "must be a non-empty list of distinct non-negative integers")
    if "seeds_on_demand" not in raw:
        return seeds, None
    if "variants" not in raw:
        raise _err(path, "seeds_on_demand", "needs a grid of variants (a search has no claims to decide)")
    if "seeds" in raw:
        raise _err(path, "seeds", "a study with seeds_on_demand takes its seeds from seeds_on_demand "
                   "(order, or 0 .. max_seeds - 1): remove seeds")
    on_demand = _on_demand(path, raw["seeds_on_demand"])
    return list(on_demand.seeds), on_demand


def _objective(path: Path, raw: dict[str, Any]) -> tuple[str, str]:
    """(metric, direction) of the objective."""
    objective = raw.get("objective") or {}
    if not isinstance(objective, dict) or set(objective) - {"metric", "direction"}:
        raise _err(path, "objective", "expected {metric, direction}")
    metric = objective.get("metric", "miou")
    direction = objective.get("direction", "maximize")
    if metric not in ("miou", "miou_present", "pixel_acc", "mean_acc"):
        raise _err(path, "objective.metric", "must be miou, miou_present, pixel_acc or mean_acc")
    if direction not in ("maximize", "minimize"):
        raise _err(path, "objective.direction", "must be maximize or minimize")
    return metric, direction


def _reading(path: Path, raw: dict[str, Any], name: str) -> dict[str, Any]:
    """How the report reads the study (StudySpec fields): caveats, noise_from, confirms, equivalence_margin."""
    caveats = raw.get("caveats", [])
    if not isinstance(caveats, list) or not all(isinstance(c, str) and c.strip() for c in caveats):
        raise _err(path, "caveats", "must be a list of sentences (what a reader of the report must know)")
    noise_from = raw.get("noise_from")
    if noise_from is not None and (not isinstance(noise_from, str) or not _NAME.match(noise_from)):
        raise _err(path, "noise_from", "must name an earlier study (its results/<name> or shipped inputs)")
    confirms = raw.get("confirms")
    if confirms is not None and (not isinstance(confirms, str) or not _NAME.match(confirms) or confirms == name):
        raise _err(path, "confirms", "must name another study (the one this study re-runs: fresh seeds, another backbone)")
    margin = raw.get("equivalence_margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin <= 0):
        raise _err(path, "equivalence_margin", "must be a positive number of mIoU points")
    return {"caveats": tuple(c.strip() for c in caveats), "noise_from": noise_from, "confirms": confirms,
            "equivalence_margin": float(margin) if margin is not None else None}


def _execution(path: Path, raw: dict[str, Any]) -> tuple[int, str]:
    """(max_retries, throughput): how failed cells are retried and how the study is timed."""
    max_retries = raw.get("max_retries", 1)
    if not isinstance(max_retries, int) or max_retries < 0:
        raise _err(path, "max_retries", "must be an integer >= 0")
    throughput = raw.get("throughput", "per_variant" if "variants" in raw else "per_run")
    if throughput not in ("per_variant", "per_run"):
        raise _err(path, "throughput", "must be per_variant or per_run")
    if throughput == "per_variant" and "variants" not in raw:
        raise _err(path, "throughput", "per_variant needs a grid of variants (a search times every trial)")
    return max_retries, throughput


def _variants(path: Path, raw: Any) -> dict[str, dict[str, Any]]:
    """A grid's variants: name -> dotted overrides."""
    if not isinstance(raw, dict) or not raw:
        raise _err(path, "variants", "expected a mapping of variant name -> overrides")
    variants: dict[str, dict[str, Any]] = {}
    for vname, vover in raw.items():
        if not isinstance(vname, str) or not _NAME.match(vname):
            raise _err(path, f"variants.{vname}", "variant names are simple names (letters, digits, _ . + -)")
        variants[vname] = _dotted_mapping(path, f"variants.{vname}", vover)
    return variants


def _search(path: Path, s: Any) -> SearchSpec:
    """A search study's Optuna sampler, pruner, budget and space."""
    if not isinstance(s, dict) or set(s) - {"sampler", "pruner", "n_trials", "seed", "space"}:
        raise _err(path, "search", "expected {sampler, pruner, n_trials, seed, space}")
    if s.get("sampler", "tpe") not in SAMPLERS:
        raise _err(path, "search.sampler", f"must be one of {SAMPLERS}")
    if s.get("pruner", "median") not in PRUNERS:
        raise _err(path, "search.pruner", f"must be one of {PRUNERS}")
    n_trials = s.get("n_trials", 20)
    if not isinstance(n_trials, int) or n_trials < 1:
        raise _err(path, "search.n_trials", "must be an integer >= 1")
    space = s.get("space")
    if not isinstance(space, dict) or not space:
        raise _err(path, "search.space", "expected a non-empty mapping of dotted key -> parameter")
    return SearchSpec(sampler=s.get("sampler", "tpe"), pruner=s.get("pruner", "median"), n_trials=n_trials,
                      sampler_seed=int(s.get("seed", 0)),
                      params=tuple(_param(path, k, v) for k, v in space.items()))


def grid_cells(spec: StudySpec) -> list[tuple[str, int]]:
    """Every (variant, seed) of a grid, seed by seed (each seed's variants in file order), so that a study
    stopped part-way holds whole seeds, which its paired comparisons need; on demand, the rounds' cells so far
    (every cell the plan could run while no round is set: what a worker may claim)."""
    every = [(variant, seed) for seed in spec.seeds for variant in spec.variants]
    asked = set(spec.cells)
    return [c for c in every if c in asked] if asked else every


def with_cells(spec: StudySpec, cells: set[tuple[str, int]]) -> StudySpec:
    """The spec of an on-demand study whose rounds so far asked for `cells` (those of other variants or seeds
    than the study file's are left out)."""
    return replace(spec, cells=tuple(c for c in grid_cells(replace(spec, cells=())) if c in cells))


def _apply(data: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = apply_overrides(data, [])  # a copy, section by section
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        out.setdefault(section, {})[key] = value
    return out


def cell_config(spec: StudySpec, variant: str, seed: int, params: dict[str, Any] | None = None,
                out_dir: str = "results", cli_overrides: tuple[str, ...] = ()) -> Config:
    """The resolved run config of one cell: base <- study overrides <- variant or trial params <- CLI <- identity."""
    data = read_yaml(spec.base_config)
    for layer in (spec.overrides, spec.variants.get(variant, {}), params or {}):
        data = _apply(data, layer)
    data = apply_overrides(data, list(cli_overrides))
    data = _apply(data, {"run.study": spec.name, "run.variant": variant, "run.seed": seed, "run.out_dir": out_dir})
    if spec.throughput == "per_variant":
        data = _apply(data, {"bench.enabled": False})
    return from_dict(data)


def variant_bench_config(spec: StudySpec, variant: str, out_dir: str = "results",
                         cli_overrides: tuple[str, ...] = ()) -> Config | None:
    """The config a per-variant benchmark times (the variant's first cell, every thread); None if benching is off."""
    cfg = cell_config(replace(spec, throughput="per_run"), variant, spec.seeds[0], None, out_dir, cli_overrides)
    if not cfg.bench.enabled:
        return None
    return cfg.replace(run=replace(cfg.run, threads=0))


def trial_variant(number: int) -> str:
    return f"trial-{number:04d}"


def choice_labels(p: Param) -> list[Any]:
    """A categorical's choices as Optuna stores them: primitives as they are, lists as their YAML text."""
    return [yaml.safe_dump(list(c) if isinstance(c, tuple) else c, default_flow_style=True).strip()
            .replace("\n...", "") for c in p.choices]


def distributions(search: SearchSpec) -> dict[str, BaseDistribution]:
    """The Optuna distribution of each dimension, as `suggest` asks for it (to compare with stored trials)."""
    out: dict[str, BaseDistribution] = {}
    for p in search.params:
        if p.type == "float":
            out[p.key] = FloatDistribution(p.low, p.high, log=p.log)
        elif p.type == "int":
            out[p.key] = IntDistribution(int(p.low), int(p.high), log=p.log)
        else:
            out[p.key] = CategoricalDistribution(choice_labels(p))
    return out


def suggest(trial: Any, search: SearchSpec) -> dict[str, Any]:
    """Ask an Optuna trial for one point of the space; returns dotted overrides."""
    out: dict[str, Any] = {}
    for p in search.params:
        if p.type == "float":
            out[p.key] = trial.suggest_float(p.key, p.low, p.high, log=p.log)
        elif p.type == "int":
            out[p.key] = trial.suggest_int(p.key, int(p.low), int(p.high), log=p.log)
        else:
            labels = choice_labels(p)
            out[p.key] = p.choices[labels.index(trial.suggest_categorical(p.key, labels))]
    return out


def study_manifest(spec: StudySpec, command: str, root: Path,
                   registrations: list[dict[str, Any]] | None = None) -> StudyManifest:
    """What the report needs to know about the study, written to results/<study>/study.json: derived from the spec,
    every field the two share taken by name, the rest said here; `registrations` (study.registration) carries the
    study file's recorded history along."""
    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(root.resolve()))
        except ValueError:
            return str(p)

    space = None
    if spec.search:
        space = {p.key: {"type": p.type, "low": p.low, "high": p.high, "log": p.log,
                         "choices": [list(c) if isinstance(c, tuple) else c for c in p.choices]}
                 for p in spec.search.params}
    shared = {f.name for f in dataclasses.fields(StudyManifest)} & {f.name for f in dataclasses.fields(StudySpec)}
    return StudyManifest(**{name: getattr(spec, name) for name in shared} | dict(
        study_file=rel(spec.path), base_config=rel(spec.base_config), command=command, seeds=tuple(spec.seeds),
        objective={"metric": spec.metric, "direction": spec.direction}, variant_order=tuple(spec.variants),
        space=space, n_trials=spec.search.n_trials if spec.search else None,
        seeds_on_demand=spec.on_demand.to_dict() if spec.on_demand else None,
        controls=[dict(c) for c in spec.controls] or None, aa=dict(spec.aa) if spec.aa else None,
        caveats=list(spec.caveats) or None, registrations=registrations))
