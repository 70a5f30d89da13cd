"""Typed, frozen run configuration: the sections as validated dataclasses, and the stable config hash.

Reading YAML files and dotted overrides into a Config is study/config_files.py. Every error is a `ConfigError`
whose one-line message names the offending key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from study.dataset_names import DATASETS, PROBE_KINDS, ROOTLESS


class ConfigError(ValueError):
    """A config key is unknown, has the wrong type or an out-of-range value."""


def added(default: Any) -> Any:
    """A field added after the first studies shipped: left out of the config hash while it keeps its default.

    Every field added from now on is declared with `added(...)`, and its default reproduces the old behaviour,
    so finished cells of existing studies keep their hash (recipe changes go into config files, not defaults).
    """
    return field(default=default, metadata={"added": True})


# The pyramid pooling module's options as one frozen, validated value: ModelConfig.pyramid builds it from the
# model keys, PyramidPooling and PSPNet (study/models) take it; the options' rules live in it only.
Pool = Literal["avg", "max", "none"]  # none: branches on the unpooled map (the capacity-matched FCN)
Branch = Literal["conv", "raw"]
PpmNorm = Literal["bn", "none", "gn"]
Context = Literal["own", "shuffled"]  # shuffled: each image's branches pool another image's map (a control)
POOLS, BRANCHES, PPM_NORMS, CONTEXTS = get_args(Pool), get_args(Branch), get_args(PpmNorm), get_args(Context)


class PyramidSpecError(ConfigError):
    """A pyramid option is out of range or does not go with another: `field` names it.

    The message is a template whose {placeholders} are field names, so that the config layer can name its own
    keys (`render`); str() names the spec's fields.
    """

    def __init__(self, key: str, template: str):
        self.field, self.template = key, template
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
    context: own (the paper) | shuffled (each image's branches pool the map of the image before it in the batch: the
        pyramid's layers, parameters and batch statistics kept, the image's own context taken out; a control).
    """

    bins: tuple[int, ...] = (1, 2, 3, 6)
    pool: str = "avg"
    reduction: bool = True
    branch: str = "conv"
    norm: str = "bn"
    align_corners: bool = True
    context: str = "own"

    def __post_init__(self) -> None:
        object.__setattr__(self, "bins", tuple(self.bins))
        for key, template in self._violations():
            raise PyramidSpecError(key, template)

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
            (self.context in CONTEXTS, "context", f"must be one of {', '.join(CONTEXTS)}"),
            (not (self.context == "shuffled" and self.pool == "none"), "context",
             "'shuffled' swaps pooled context between images: it needs {pool} avg or max"),
        ]
        return [(key, template) for ok, key, template in rules if not ok]


PAPER_PYRAMID = PyramidSpec()  # the paper's module: bins 1, 2, 3, 6, average pooling, DR, conv + BN + ReLU

# The config key of each pyramid option: a PyramidSpecError names it.
PYRAMID_KEYS = {"bins": "model.bins", "pool": "model.pool", "reduction": "model.reduction",
                "branch": "model.ppm_branch", "norm": "model.ppm_norm", "align_corners": "model.align_corners",
                "context": "model.ppm_context"}


@dataclass(frozen=True)
class ModelConfig:
    """The network: a timm backbone, the pyramid pooling module and the heads."""

    backbone: str = "resnet18"
    out_indices: tuple[int, ...] = (3, 4)  # (aux stage, last stage) of timm's features_only
    output_stride: int = 8
    layers: tuple[int, ...] | None = None  # timm ResNet blocks per stage (small CPU backbones)
    channels: tuple[int, ...] | None = None  # timm ResNet stage widths
    stem_width: int | None = None
    stem_type: str | None = None  # "", "deep", "deep_tiered"
    pretrained: str = ""  # local checkpoint path, or package:<name> (a file in an installed package); no download
    pretrained_partial: bool = False  # allow a checkpoint that matches < 99% of the backbone's tensors
    ppm: bool = True  # false (or bins=[]) gives the dilated-FCN baseline
    bins: tuple[int, ...] = (1, 2, 3, 6)
    pool: str = "avg"  # avg | max | none (branches on the unpooled map: the FCN matched to a pyramid's capacity)
    reduction: bool = True  # DR: each branch's 1x1 conv gives C/len(bins) channels (without DR: C)
    ppm_branch: str = "conv"  # conv: pool -> 1x1 conv -> BN -> ReLU (paper); raw: pooled maps as they are (no paper row)
    align_corners: bool = True
    head_channels: int = 512
    aux_channels: int = 256
    dropout: float = 0.1
    aux_weight: float = 0.4  # 0 builds no aux head
    backbone_bn: str = added("batch")  # batch: BN trains as usual; frozen: backbone BN statistics and affine fixed
    ppm_norm: str = added("bn")  # the branches' norm after their 1x1 conv: bn (paper) | none (conv with bias) | gn
    ppm_context: str = added("own")  # own (paper) | shuffled: the branches pool another image's map (a control)
    # frozen ImageNet features: the backbone never trains (eval mode, no gradients); its output maps are computed
    # once per image and copy, cached (study/features), and runs train the pyramid and heads on the stored maps
    freeze_backbone: bool = added(False)

    def validate(self) -> None:
        _check(self.output_stride in (8, 16, 32), "model.output_stride", "must be 8, 16 or 32")
        _check(len(self.out_indices) in (1, 2), "model.out_indices", "must name 1 or 2 stages (aux, last)")
        self.pyramid  # noqa: B018 -- the pyramid options' rules (PyramidSpec), under their config keys
        _check(self.head_channels >= 1, "model.head_channels", "must be >= 1")
        _check(self.aux_channels >= 1, "model.aux_channels", "must be >= 1")
        _check(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        _check(self.aux_weight >= 0.0, "model.aux_weight", "must be >= 0")
        _check(self.aux_weight == 0 or len(self.out_indices) == 2, "model.out_indices",
               "an aux head needs two stages (aux, last)")
        _check(self.stem_type in (None, "", "deep", "deep_tiered"), "model.stem_type",
               "must be '', 'deep' or 'deep_tiered'")
        _check(self.backbone_bn in ("batch", "frozen"), "model.backbone_bn", "must be 'batch' or 'frozen'")
        _check(not self.freeze_backbone or self.backbone_bn == "frozen", "model.backbone_bn",
               "must be 'frozen' with model.freeze_backbone (the stored maps use the backbone's fixed statistics)")

    @property
    def pyramid_bins(self) -> tuple[int, ...]:
        """The bins actually built: empty for the FCN baseline."""
        return self.bins if self.ppm else ()

    @property
    def pyramid(self) -> PyramidSpec:
        """The pyramid's options as the model takes them (no bins: the FCN baseline); a ConfigError naming the
        config key of an option that breaks the spec's rules."""
        try:
            return PyramidSpec(bins=self.pyramid_bins, pool=self.pool, reduction=self.reduction,
                               branch=self.ppm_branch, norm=self.ppm_norm, align_corners=self.align_corners,
                               context=self.ppm_context)
        except PyramidSpecError as e:
            raise ConfigError(e.render(PYRAMID_KEYS)) from None


AUGMENTATIONS = ("scale", "rotate", "blur", "flip")


@dataclass(frozen=True)
class DataConfig:
    """Which data set, where it lives, and the training augmentation."""

    name: str = "probe"  # one of study.dataset_names.DATASETS
    root: str = ""  # data set folder in its official layout (not used by the probe)
    train_split: str = "train"
    val_split: str = "val"
    image_size: tuple[int, int] = (128, 128)  # probe scenes (h, w)
    train_size: int = 2000  # probe scenes in the train split
    val_size: int = 300  # probe scenes in the val split
    data_seed: int = 0  # probe: scenes are a function of (data_seed, split, index)
    probe_extras: bool = False  # probe: add the confusable (building/skyscraper) and inconspicuous (bed/pillow) classes
    resize: tuple[int, int] | None = None  # (h, w) every image is resized to first, e.g. CamVid 180x240
    crop_size: tuple[int, int] = (128, 128)  # training crop (h, w), padded with the ignore label
    augment: tuple[str, ...] = ("scale", "rotate", "blur", "flip")
    scale_range: tuple[float, float] = (0.5, 2.0)
    rotate_degrees: float = 10.0
    ignore_index: int = 255
    workers: int = 0  # DataLoader worker processes
    cache: bool = False  # keep decoded images in memory (per worker): for small data sets such as CamVid
    probe_kind: str = added("proportion")  # probe: the cue (proportion) or a control (presence, local, local_fine, misaligned, diluted, shortcut)
    mean: tuple[float, float, float] = added((0.485, 0.456, 0.406))  # input normalisation (RGB in [0, 1]):
    std: tuple[float, float, float] = added((0.229, 0.224, 0.225))  # the backbone's own; default ImageNet's
    # frozen features (model.freeze_backbone): augmentation happens on the stored maps, not on images
    feature_flip: bool = added(False)  # store each training image's mirror as a second copy; draw one per sample
    feature_crop: tuple[int, int] | None = added(None)  # random crop of the stored map, in feature cells (h, w)
    feature_cache_dir: str = added("")  # where feature caches live ("": <run.out_dir>/_features); a location only

    def validate(self) -> None:
        _check(self.name in DATASETS, "data.name", f"must be one of {', '.join(DATASETS)}")
        _check(self.name in ROOTLESS or bool(self.root), "data.root", f"is required for data set '{self.name}'")
        _check(self.probe_kind in PROBE_KINDS, "data.probe_kind", f"must be one of {', '.join(PROBE_KINDS)}")
        _check(self.probe_kind == "proportion" or self.name == "probe", "data.probe_kind",
               "applies to data.name probe only")
        _check(not (self.probe_extras and self.probe_kind != "proportion"), "data.probe_extras",
               "the extra classes come with data.probe_kind proportion only")
        _check(len(self.image_size) == 2 and min(self.image_size) >= 16, "data.image_size",
               "must be (h, w), each >= 16")
        _check(self.train_size >= 1, "data.train_size", "must be >= 1")
        _check(self.val_size >= 1, "data.val_size", "must be >= 1")
        _check(self.resize is None or (len(self.resize) == 2 and min(self.resize) >= 1), "data.resize",
               "must be (h, w), each >= 1")
        _check(len(self.crop_size) == 2 and min(self.crop_size) >= 1, "data.crop_size",
               "must be (h, w), each >= 1")
        bad = [a for a in self.augment if a not in AUGMENTATIONS]
        _check(not bad, "data.augment", f"unknown augmentation {bad}; choose from {list(AUGMENTATIONS)}")
        lo, hi = self.scale_range
        _check(0 < lo <= hi, "data.scale_range", "must be (lo, hi), 0 < lo <= hi")
        _check(0 <= self.rotate_degrees <= 180, "data.rotate_degrees", "must be in [0, 180]")
        _check(0 <= self.ignore_index <= 255, "data.ignore_index", "must be in [0, 255]")
        _check(self.workers >= 0, "data.workers", "must be >= 0")
        _check(all(0 <= m <= 1 for m in self.mean), "data.mean", "must be 3 values in [0, 1]")
        _check(all(s > 0 for s in self.std), "data.std", "must be 3 values > 0")
        _check(self.feature_crop is None or (len(self.feature_crop) == 2 and min(self.feature_crop) >= 1),
               "data.feature_crop", "must be (h, w) in feature cells, each >= 1")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation recipe (paper defaults)."""

    steps: int = 800  # iteration budget
    batch_size: int = 8  # the global batch, split across DDP ranks (as in the paper)
    lr: float = 0.01
    head_lr_mult: float = 10.0  # new layers (pyramid, heads) learn this much faster
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    eval_every: int = 0  # evaluate on val every N steps (0: only at the end)
    log_every: int = 50
    checkpoint_every: int = 0  # 0: no intermediate checkpoints
    amp: bool = True  # bf16 autocast where it pays: GPUs with bf16, CPUs with AMX / AVX-512 BF16 (study/device.py)
    channels_last: bool = True  # NHWC where it pays: GPUs, and CPUs with bf16 on AMX (study/device.py)
    compile: bool = False  # torch.compile the model
    sync_bn: bool = True  # SyncBatchNorm under DDP
    force_settings: bool = added(False)  # take amp and channels_last as set, even where they measured slower
    # a run "trained" when its final loss is at most this share of its first step's loss (0: no check) ...
    trained_loss_ratio: float = added(0.45)
    # ... or, in a study, at most this multiple of the lowest final loss among its variant's other runs (a floor
    # every seed shares is the task's, not a stall; study.results.table.judged)
    trained_sibling_ratio: float = added(1.5)
    warmup_steps: int = added(0)  # linear lr warm-up: step s (0-based) runs at (s + 1) / warmup_steps of the poly lr
    optimizer: str = added("sgd")  # sgd (momentum) or adamw (betas 0.9 / 0.999; momentum unused)
    # the loss averages over every loss_stride-th pixel of the labels in each direction, each pixel's logits exactly
    # as at full size (1: every pixel, the paper's loss; 2: a quarter of them, skipping most of the full-size work)
    loss_stride: int = added(1)

    def validate(self) -> None:
        _check(self.steps >= 1, "train.steps", "must be >= 1")
        _check(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _check(self.lr > 0, "train.lr", "must be > 0")
        _check(self.head_lr_mult > 0, "train.head_lr_mult", "must be > 0")
        _check(0 <= self.momentum < 1, "train.momentum", "must be in [0, 1)")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(self.poly_power >= 0, "train.poly_power", "must be >= 0")
        _check(self.eval_every >= 0, "train.eval_every", "must be >= 0")
        _check(self.log_every >= 1, "train.log_every", "must be >= 1")
        _check(self.checkpoint_every >= 0, "train.checkpoint_every", "must be >= 0")
        _check(0 <= self.trained_loss_ratio <= 1, "train.trained_loss_ratio", "must be in [0, 1]")
        _check(self.trained_sibling_ratio >= 1, "train.trained_sibling_ratio", "must be >= 1")
        _check(0 <= self.warmup_steps <= self.steps, "train.warmup_steps", "must be in [0, train.steps]")
        _check(self.loss_stride >= 1, "train.loss_stride", "must be >= 1")
        _check(self.optimizer in ("sgd", "adamw"), "train.optimizer", f"must be 'sgd' or 'adamw', got {self.optimizer!r}")


@dataclass(frozen=True)
class EvalConfig:
    """How the val split is predicted."""

    mode: str = "whole"  # whole | slide | multiscale | official (see study.evaluate.predict)
    crop_size: tuple[int, int] = (128, 128)  # sliding window (h, w); stride is ceil(2/3) of it
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # multiscale / official
    flip: bool = True  # slide, multiscale, official: average each window with its mirror
    base_size: int = 512  # official: the long side at scale 1.0 (512 ADE20K/VOC, 2048 Cityscapes)
    batch_size: int = 8
    qualitative: int = 4  # how many val predictions to save as PNG

    def validate(self) -> None:
        _check(self.mode in ("whole", "slide", "multiscale", "official"), "eval.mode",
               "must be whole, slide, multiscale or official")
        _check(self.base_size >= 1, "eval.base_size", "must be >= 1")
        _check(len(self.crop_size) == 2 and min(self.crop_size) >= 1, "eval.crop_size", "must be (h, w), each >= 1")
        _check(len(self.scales) >= 1 and all(s > 0 for s in self.scales), "eval.scales", "must be positive")
        _check(self.batch_size >= 1, "eval.batch_size", "must be >= 1")
        _check(self.qualitative >= 0, "eval.qualitative", "must be >= 0")


@dataclass(frozen=True)
class BenchConfig:
    """The throughput protocol."""

    enabled: bool = True
    batch_size: int = 8
    image_size: tuple[int, int] = (128, 128)  # (h, w)
    warmup: int = 2
    iters: int = 5
    repeats: int = 3
    latency_iters: int = 20
    peak_seconds: float = added(0.4)  # time per kernel of the machine's own peak, half before and half after the
    #                                   model's timing (study/throughput/peak.py); 0: not measured

    def validate(self) -> None:
        _check(self.batch_size >= 1, "bench.batch_size", "must be >= 1")
        _check(len(self.image_size) == 2 and min(self.image_size) >= 16, "bench.image_size",
               "must be (h, w), each >= 16")
        _check(self.warmup >= 0, "bench.warmup", "must be >= 0")
        _check(self.iters >= 1, "bench.iters", "must be >= 1")
        _check(self.repeats >= 1, "bench.repeats", "must be >= 1")
        _check(self.latency_iters >= 2, "bench.latency_iters", "must be >= 2")
        _check(self.peak_seconds >= 0, "bench.peak_seconds", "must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    """Identity and placement of one run."""

    study: str = "adhoc"
    variant: str = "default"
    seed: int = 0
    out_dir: str = "results"  # records go to <out_dir>/<study>/runs/<variant>__s<seed>/
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = True
    threads: int = 0  # torch intra-op threads (0: torch's default)
    # A/A twin: 0 is the run itself; k > 0 draws the pyramid and heads (and so the dropout masks) from a stream of
    # its own, keeping the seed's backbone draw, data order and augmentation, as two variants of one seed differ
    twin: int = added(0)

    def validate(self) -> None:
        _check(bool(self.study) and "/" not in self.study, "run.study", "must be a non-empty name without '/'")
        _check(bool(self.variant) and "/" not in self.variant, "run.variant", "must be a non-empty name without '/'")
        _check(self.seed >= 0, "run.seed", "must be >= 0")
        _check(self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"), "run.device",
               "must be auto, cpu, cuda or cuda:N")
        _check(self.threads >= 0, "run.threads", "must be >= 0")
        _check(self.twin >= 0, "run.twin", "must be >= 0")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Plain, JSON-ready nested dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **sections: Any) -> Config:
        return dataclasses.replace(self, **sections)

    def validate(self) -> None:
        """Checks that span sections."""
        frozen = self.model.freeze_backbone
        _check(not frozen or not self.data.augment, "data.augment",
               "frozen features augment the stored maps: set data.augment=[] and use data.feature_flip / "
               "data.feature_crop")
        _check(frozen or (not self.data.feature_flip and self.data.feature_crop is None), "data.feature_flip",
               "data.feature_flip and data.feature_crop apply with model.freeze_backbone only")
        _check(not frozen or self.eval.mode == "whole", "eval.mode",
               "frozen-feature runs score the stored maps in one pass: eval.mode must be whole")
        _check(self.model.ppm_context == "own" or self.eval.mode == "whole", "eval.mode",
               "model.ppm_context=shuffled swaps context between the images of a batch; crops of one image would "
               "swap it among themselves: eval.mode must be whole")
        stride, size, cells = self.model.output_stride, self.data.resize, self.data.feature_crop
        if frozen and size is not None:  # known before any map is stored: refused before a study starts
            _check(size[0] % stride == 0 and size[1] % stride == 0, "data.resize",
                   f"frozen features need an image size divisible by model.output_stride {stride} (got "
                   f"{size[0]}x{size[1]})")
            _check(cells is None or (cells[0] <= size[0] // stride and cells[1] <= size[1] // stride),
                   "data.feature_crop", f"{tuple(cells or ())} cells exceed the stored maps' "
                   f"{size[0] // stride}x{size[1] // stride} (data.resize {size[0]}x{size[1]} / output stride "
                   f"{stride}): set data.feature_crop to at most [{size[0] // stride}, {size[1] // stride}]")


SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig, "eval": EvalConfig,
            "bench": BenchConfig, "run": RunConfig}

# Keys that place or label a run but do not change what it computes: left out of the hash.
UNHASHED = {("run", "study"), ("run", "variant"), ("run", "out_dir"), ("run", "device"), ("run", "threads"),
            ("data", "workers"), ("data", "root"), ("train", "log_every"), ("train", "trained_loss_ratio"),
            ("train", "trained_sibling_ratio"), ("data", "feature_cache_dir")}


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _section_for_hash(name: str, section: Any, cls: type) -> dict[str, Any]:
    """One section as plain JSON values, less its unhashed keys and its added fields left at their defaults."""
    values = json.loads(json.dumps(dataclasses.asdict(section)))
    defaults = json.loads(json.dumps(dataclasses.asdict(cls())))
    return {key: value for key, value in values.items()
            if (name, key) not in UNHASHED
            and not (cls.__dataclass_fields__[key].metadata.get("added") and value == defaults[key])}


def config_hash(cfg: Config) -> str:
    """Stable 12-hex-digit hash of everything that changes what a run computes.

    Fields declared with `added(...)` enter only when they differ from their default, so adding a field does not
    change the hash of any config that leaves it alone.
    """
    data = {name: _section_for_hash(name, getattr(cfg, name), cls) for name, cls in SECTIONS.items()}
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]
