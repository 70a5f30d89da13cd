"""Confusion-matrix segmentation metrics. Accumulates on the tensors' device; no I/O.

Two mIoU conventions exist: `miou` averages all K classes, absent classes counting 0 (the official PSPNet code);
`miou_present` is the nan-mean over classes with a non-empty union (mmsegmentation). Mean class accuracy
likewise: `mean_acc` averages all K classes, a class absent from the truth counting 0 (official PSPNet code);
`mean_acc_present` is the nan-mean over classes present in the truth. Reports say which they use.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

_NONE = torch.iinfo(torch.int64).min  # "no offending label seen" for ConfusionMatrix.bad_example


def scores(matrix: torch.Tensor, class_names: Sequence[str] | None = None) -> dict:
    """KxK confusion matrix (rows = truth, columns = prediction) -> mIoU (both conventions), accuracies, per class.

    miou / mean_acc: mean over all K classes, absent classes count 0 (official PSPNet code).
    miou_present / mean_acc_present: nan-mean over classes present (union > 0 / in the truth).
    """
    m = matrix.double()
    k = m.shape[0]
    names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"class_names: {len(names)} names for {k} classes")
    inter = m.diag()
    truth = m.sum(1)
    union = truth + m.sum(0) - inter
    iou = inter / union  # nan where the class is absent from truth and prediction
    total = m.sum()
    present = truth > 0
    acc = torch.where(present, inter / truth.clamp(min=1), torch.zeros_like(inter))
    return {
        "miou": float(torch.nan_to_num(iou, nan=0.0).mean()),
        "miou_present": float(iou[union > 0].mean()) if (union > 0).any() else float("nan"),
        "pixel_acc": float(inter.sum() / total) if total > 0 else float("nan"),
        "mean_acc": float(acc.mean()),  # official: all classes, absent count 0
        "mean_acc_present": float(acc[present].mean()) if present.any() else float("nan"),
        "per_class_iou": {name: float(v) for name, v in zip(names, iou.tolist(), strict=True)},
    }


def per_image_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int = 255
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-class intersection and union (int64 (N, K), on the device) of (N, H, W) label maps.

    Pixels whose truth is the ignore index or outside [0, K) are not counted, nor predictions outside [0, K).
    """
    n, k = pred.shape[0], num_classes
    pred, target = pred.reshape(n, -1).long(), target.reshape(n, -1).long()
    valid = (target != ignore_index) & (target >= 0) & (target < k) & (pred >= 0) & (pred < k)
    offset = torch.arange(n, device=target.device).view(n, 1) * k

    def count(labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # pixels not kept go to one extra bin that is dropped: no boolean indexing, so no host sync on a GPU
        index = torch.where(keep, labels + offset, torch.full_like(labels, n * k))
        return torch.bincount(index.reshape(-1), minlength=n * k + 1)[: n * k].reshape(n, k)

    inter = count(target, valid & (pred == target))
    union = count(target, valid) + count(pred, valid) - inter
    return inter, union


class ConfusionMatrix:
    """Accumulates a KxK confusion matrix over a split, skipping `ignore_index` pixels.

    A truth label outside [0, K) that is not the ignore index, or a prediction outside [0, K) on a counted pixel,
    is tallied on the device (no host sync per update) and raised as a ValueError by `compute()` / `check()`,
    so a miscount never goes unnoticed. The matrix then holds only the in-range pixels.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, device: torch.device | str | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.bad = torch.zeros((), dtype=torch.int64, device=device)
        self.bad_example = torch.full((), _NONE, dtype=torch.int64, device=device)
        self.bad_pred = torch.zeros((), dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
        if target.numel() == 0:
            return
        if self.matrix.device != target.device:
            self.matrix = self.matrix.to(target.device)
            self.bad, self.bad_example = self.bad.to(target.device), self.bad_example.to(target.device)
            self.bad_pred = self.bad_pred.to(target.device)
        pred = pred.to(target.device)
        k = self.num_classes
        keep = target != self.ignore_index
        out_of_range = keep & ((target < 0) | (target >= k))
        self.bad += out_of_range.sum()
        # the largest offending label seen so far (_NONE while there is none), kept on the device
        self.bad_example = torch.maximum(self.bad_example, torch.where(out_of_range, target, _NONE).amax())
        pred_ok = (pred >= 0) & (pred < k)
        self.bad_pred += (keep & ~out_of_range & ~pred_ok).sum()
        valid = keep & ~out_of_range & pred_ok
        self.matrix += torch.bincount(target[valid] * k + pred[valid], minlength=k * k).reshape(k, k)

    def check(self) -> None:
        """Raise if any update saw a label or prediction outside [0, K) on a counted pixel (one host sync)."""
        bad, bad_pred = int(self.bad), int(self.bad_pred)
        if bad:
            raise ValueError(f"{bad} target pixels have label {int(self.bad_example)} (or another) outside "
                             f"[0, {self.num_classes}) and are not the ignore index {self.ignore_index}")
        if bad_pred:
            raise ValueError(f"{bad_pred} predicted labels are outside [0, {self.num_classes})")

    def reset(self) -> None:
        self.matrix.zero_()
        self.bad.zero_()
        self.bad_example.fill_(_NONE)
        self.bad_pred.zero_()

    def compute(self, class_names: Sequence[str] | None = None) -> dict:
        self.check()
        return scores(self.matrix, class_names)
