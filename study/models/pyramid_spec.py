"""The pyramid pooling module's options as one frozen, validated value (no torch: the config builds it too).

ModelConfig.pyramid (study/config.py) builds the spec from the config's model keys; PyramidPooling and PSPNet
(study/models) take it. The options' rules, each value's range and how they combine, live here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Literal, get_args

Pool = Literal["avg", "max", "none"]  # none: branches on the unpooled map (the capacity-matched FCN)
Branch = Literal["conv", "raw"]
PpmNorm = Literal["bn", "none", "gn"]
POOLS, BRANCHES, PPM_NORMS = get_args(Pool), get_args(Branch), get_args(PpmNorm)


class PyramidSpecError(ValueError):
    """A pyramid option is out of range or does not go with another: `field` names it.

    The message is a template whose {placeholders} are field names, so that the config layer can name its own
    keys (`render`); str() names the spec's fields.
    """

    def __init__(self, field: str, template: str):
        self.field, self.template = field, template
        super().__init__(self.render({f.name: f.name for f in fields(PyramidSpec)}))

    def render(self, names: Mapping[str, str]) -> str:
        return f"{names[self.field]}: " + self.template.format(**names)


@dataclass(frozen=True)
class PyramidSpec:
    """The pyramid pooling module (study.models.ppm.PyramidPooling), and the network's upsampling.

    bins: the pooled grids (bin x bin), in concatenation order; empty: no pyramid (the dilated-FCN baseline).
    pool: avg | max | none (branches on the unpooled map: the FCN matched to a pyramid's capacity).
    reduction: the paper's DR: each branch's 1x1 conv gives C / len(bins) channels (without DR: C).
    branch: conv (pool -> 1x1 conv -> norm -> ReLU, the paper) | raw (the pooled maps as they are; no paper row).
    norm: the conv branch's norm: bn (paper) | none (the conv gets a bias) | gn (GroupNorm, per image).
    align_corners: bilinear upsampling of the branches and of the network's logits.
    """

    bins: tuple[int, ...] = (1, 2, 3, 6)
    pool: str = "avg"
    reduction: bool = True
    branch: str = "conv"
    norm: str = "bn"
    align_corners: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "bins", tuple(self.bins))
        for field, template in self._violations():
            raise PyramidSpecError(field, template)

    def _violations(self) -> list[tuple[str, str]]:
        """(field, message template) of every rule broken, in the order a reader meets the options."""
        raw = self.branch == "raw"
        rules = [
            (all(b >= 1 for b in self.bins), "bins", "every bin must be >= 1"),
            (len(set(self.bins)) == len(self.bins), "bins", "bins must be distinct"),
            (self.pool in POOLS, "pool", f"must be one of {', '.join(POOLS)}"),
            (not (self.pool == "none" and raw), "pool",
             "'none' (unpooled branches) needs conv branches: leave {branch} at conv"),
            (self.branch in BRANCHES, "branch", f"must be one of {', '.join(BRANCHES)}"),
            (not (raw and self.reduction and self.bins), "branch",
             "raw branches concatenate pooled maps at full width: set {reduction}=false"),
            (self.norm in PPM_NORMS, "norm", f"must be one of {', '.join(PPM_NORMS)}"),
            (not (raw and self.norm != "bn"), "norm", "raw branches have no conv or norm: leave {norm} at bn"),
        ]
        return [(field, template) for ok, field, template in rules if not ok]


PAPER_PYRAMID = PyramidSpec()  # the paper's module: bins 1, 2, 3, 6, average pooling, DR, conv + BN + ReLU
