"""Seeds on demand: add seeds in rounds, only to the variants of claims still undecided, with a rule whose
family-wise false-verdict rate stays at or below alpha over the whole procedure.

The plan fixes in advance the seed order and the looks (seed counts at which a claim is tested: first, first +
step, ..., max_seeds) and each look's share of alpha. At every look the rule of study.results.stats.decide
applies: a claim's p is the smallest over its looks of p / share, and Holm runs over all claims. Why this holds:
for a true null, P(min over looks of p_l / share_l <= u) <= sum_l share_l * u <= u whatever the looks' dependence
(Bonferroni over looks), and a claim that stops early only drops looks, which can only raise its p; Holm over
valid p-values controls the family-wise rate under any dependence, and it can only reject more as p-values fall,
so a verdict once reached stays. `next_columns` says which variants need the next look's seeds; the sweep runs
them and asks again, until no claim needs more. Simulated in `operating_characteristics` (and the tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from study.results.stats import ALPHA, MIN_SEEDS, decide

DECIDED = ("supported", "contradicted")


@dataclass(frozen=True)
class SequentialPlan:
    """Looks at first, first + step, ... seeds up to max_seeds (the last look is max_seeds); `order` is the seed
    order (default 0, 1, ...); `spend`: "equal" shares of alpha per look, or "size" (shares proportional to each
    look's seed count: less alpha where few seeds can decide little)."""

    first: int = 5
    step: int = 5
    max_seeds: int = 20
    order: tuple[int, ...] = ()
    spend: str = "equal"

    def __post_init__(self) -> None:
        for name in ("first", "step", "max_seeds"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"seeds on demand: field {name!r} must be a positive integer, got {value!r}")
        if self.first < MIN_SEEDS:
            raise ValueError(f"seeds on demand: field 'first' must be at least {MIN_SEEDS}, got {self.first}")
        if self.max_seeds < self.first:
            raise ValueError(f"seeds on demand: field 'max_seeds' ({self.max_seeds}) is below 'first' ({self.first})")
        if self.order and (len(set(self.order)) != len(self.order) or len(self.order) < self.max_seeds):
            raise ValueError(f"seeds on demand: field 'order' must list at least {self.max_seeds} distinct seeds")
        if self.spend not in ("equal", "size"):
            raise ValueError(f"seeds on demand: field 'spend' must be 'equal' or 'size', got {self.spend!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SequentialPlan:
        unknown = sorted(set(data) - {"first", "step", "max_seeds", "order", "spend"})
        if unknown:
            raise ValueError(f"seeds on demand: unknown field {unknown[0]!r}")
        kw = dict(data)
        if "order" in kw:
            kw["order"] = tuple(kw["order"])
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """Every field, `order` as a list: what a study file or manifest writes and `from_dict` reads back."""
        return {"first": self.first, "step": self.step, "max_seeds": self.max_seeds, "order": list(self.order),
                "spend": self.spend}

    @property
    def looks(self) -> tuple[int, ...]:
        sizes = list(range(self.first, self.max_seeds + 1, self.step))
        return tuple(sizes if sizes[-1] == self.max_seeds else [*sizes, self.max_seeds])

    @property
    def shares(self) -> tuple[float, ...]:
        weights = [1.0] * len(self.looks) if self.spend == "equal" else [float(n) for n in self.looks]
        return tuple(w / sum(weights) for w in weights)

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(self.order[: self.max_seeds]) if self.order else tuple(range(self.max_seeds))


def next_columns(y: np.ndarray, finished: np.ndarray, pairs: Sequence[tuple[int, int]], plan: SequentialPlan,
                 alpha: float = ALPHA) -> dict[int, int]:
    """{variant row: seed count it needs} for the next look of every claim not yet decided that has looks left;
    only rows that need more than they have finished. Empty: the procedure is over."""
    need: dict[int, int] = {}
    for (a, b), row in zip(pairs, decide(y, pairs, alpha, looks=plan.looks, spend=plan.shares, finished=finished),
                           strict=True):
        if row["verdict"] in DECIDED or row["looks"] >= len(plan.looks):
            continue
        size = plan.looks[row["looks"]]
        for v in (a, b):
            need[v] = max(need.get(v, 0), size)
    have = finished.sum(1)
    return {v: n for v, n in sorted(need.items()) if n > have[v]}


def run_sequential(full: np.ndarray, pairs: Sequence[tuple[int, int]], plan: SequentialPlan,
                   alpha: float = ALPHA) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The procedure on one simulated study whose every possible run is known (variants x max_seeds): the final
    rows and the seeds each variant ran."""
    ran = np.full(full.shape[0], plan.looks[0])
    while True:
        finished = np.arange(full.shape[1])[None, :] < ran[:, None]
        y = np.where(finished, full, np.nan)
        need = next_columns(y, finished, pairs, plan, alpha)
        if not need:
            return decide(y, pairs, alpha, looks=plan.looks, spend=plan.shares, finished=finished), ran
        for v, n in need.items():
            ran[v] = n


def operating_characteristics(mu: Sequence[float], sd: Sequence[float], pairs: Sequence[tuple[int, int]], *,
                              plan: SequentialPlan, fixed_seeds: int = 10, studies: int = 200, seed: int = 0,
                              alpha: float = ALPHA) -> dict[str, dict[str, float]]:
    """Simulated studies (Gaussian runs, true means mu, sds sd): for the plan and for a fixed study of
    `fixed_seeds` seeds, the share of studies with any wrong verdict (a verdict on a pair of equal means, or on
    the wrong side), the share of the smallest true differences found (power), and the runs per study."""
    mu, sd = np.asarray(mu, float), np.asarray(sd, float)
    gaps = np.array([mu[a] - mu[b] for a, b in pairs])
    truth = np.sign(gaps)
    smallest = (gaps != 0) & np.isclose(np.abs(gaps), np.abs(gaps[gaps != 0]).min() if (gaps != 0).any() else 0)
    rng = np.random.default_rng(seed)
    out = {name: {"any_wrong": 0.0, "found": 0.0, "runs": 0.0} for name in ("sequential", "fixed")}
    true_rows = max(int(smallest.sum()), 1)
    for _ in range(studies):
        full = mu[:, None] + sd[:, None] * rng.standard_normal((len(mu), max(plan.max_seeds, fixed_seeds)))
        seq_rows, ran = run_sequential(full[:, : plan.max_seeds], pairs, plan, alpha)
        fixed_rows = decide(full[:, :fixed_seeds], pairs, alpha)
        for name, rows, runs in (("sequential", seq_rows, ran.sum()), ("fixed", fixed_rows, fixed_seeds * len(mu))):
            said = np.array([{"supported": 1, "contradicted": -1}.get(r["verdict"], 0) for r in rows])
            out[name]["any_wrong"] += bool(((said != 0) & (said != truth)).any()) / studies
            out[name]["found"] += float(((said == truth) & smallest).sum()) / true_rows / studies
            out[name]["runs"] += float(runs) / studies
    return out


def main() -> int:
    """Print the operating characteristics quoted in docs/statistics.md (Table-1 layout, 13 claim rows)."""
    pairs = [(1, 0), (2, 0), (3, 0), (4, 0), (5, 0), (6, 0), (3, 1), (4, 2), (2, 1), (4, 3), (6, 5), (5, 3), (6, 4)]
    stairs = np.array([0, 1, 2, 2, 3, 3, 4.0])  # 7 of the 13 rows at exactly one step, the others 2-4 steps
    fcn_below = np.array([0, 1, 1, 1, 1, 1, 1.0])  # the 6 rows against the FCN one step; the 7 others null
    unequal = np.array([2.5, 1, 1, 1.8, 1, 1.8, 1])  # FCN 2.5x, B1236-MAX and B1236-MAX-DR 1.8x
    for spend in ("equal", "size"):
        plan = SequentialPlan(first=5, step=5, max_seeds=20, spend=spend)
        for label, mu, sd in (("null, equal noise", np.zeros(7), np.ones(7)),
                              ("null, unequal noise", np.zeros(7), unequal),
                              ("stairs of 2 sd", 2 * stairs, np.ones(7)), ("stairs of 4 sd", 4 * stairs, np.ones(7)),
                              ("FCN 2 sd below", 2 * fcn_below, unequal),
                              ("FCN 4 sd below", 4 * fcn_below, unequal)):
            r = operating_characteristics(mu, sd, pairs, plan=plan, studies=1000, seed=1)
            s, f = r["sequential"], r["fixed"]
            print(f"looks {plan.looks} spend {spend:5s} | {label:19s} | any wrong verdict {s['any_wrong']:.3f} "
                  f"(fixed 10: {f['any_wrong']:.3f}) | true differences found {s['found']:.3f} "
                  f"(fixed 10: {f['found']:.3f}) | runs {s['runs']:.1f} (fixed 10: {f['runs']:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
