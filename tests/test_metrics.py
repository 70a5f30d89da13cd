import math

import pytest
import torch

from study.evaluate.metrics import ConfusionMatrix, per_image_counts, scores


def test_against_a_hand_computed_matrix_with_ignore_and_an_absent_class():
    # K = 4; class 3 never appears in truth nor prediction; 255 is ignored
    target = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 255, 255])
    pred = torch.tensor([0, 0, 1, 1, 1, 2, 0, 2, 3, 0])
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    assert cm.matrix.tolist() == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]]
    s = cm.compute(["a", "b", "c", "d"])
    iou = {"a": 2 / 4, "b": 2 / 3, "c": 2 / 3}
    for name, value in iou.items():
        assert s["per_class_iou"][name] == pytest.approx(value)
    assert math.isnan(s["per_class_iou"]["d"])
    assert s["miou"] == pytest.approx(sum(iou.values()) / 4)  # absent class counts 0 (official PSPNet)
    assert s["miou_present"] == pytest.approx(sum(iou.values()) / 3)  # nan-mean (mmsegmentation)
    assert s["pixel_acc"] == pytest.approx(6 / 8)
    assert s["mean_acc"] == pytest.approx((2 / 3 + 2 / 2 + 2 / 3 + 0) / 4)  # official: absent class counts 0
    assert s["mean_acc_present"] == pytest.approx((2 / 3 + 2 / 2 + 2 / 3) / 3)  # nan-mean over present classes


def test_class_predicted_but_absent_from_truth_counts_zero_in_both():
    s = scores(torch.tensor([[3, 1], [0, 0]]))
    assert s["per_class_iou"]["class_1"] == 0.0
    assert s["miou"] == s["miou_present"] == pytest.approx((3 / 4 + 0) / 2)
    assert s["mean_acc"] == pytest.approx((3 / 4 + 0) / 2)  # class 1 absent from truth counts 0
    assert s["mean_acc_present"] == pytest.approx(3 / 4)


def test_accumulating_equals_one_update_on_the_concatenation():
    g = torch.Generator().manual_seed(0)
    preds = [torch.randint(0, 5, (2, 7, 9), generator=g) for _ in range(3)]
    targets = [torch.randint(0, 6, (2, 7, 9), generator=g) for _ in range(3)]
    targets = [torch.where(t == 5, 255, t) for t in targets]
    a, b = ConfusionMatrix(5), ConfusionMatrix(5)
    for p, t in zip(preds, targets, strict=True):
        a.update(p, t)
    b.update(torch.cat(preds), torch.cat(targets))
    assert torch.equal(a.matrix, b.matrix)
    assert int(a.matrix.sum()) == int(sum((t != 255).sum() for t in targets))


def test_label_outside_the_range_is_an_error():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 7]))
    with pytest.raises(ValueError, match="label 7 .* outside \\[0, 3\\)"):
        cm.compute()
    cm.reset()
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert cm.compute()["pixel_acc"] == 1.0


def test_shape_mismatch_and_bad_names():
    with pytest.raises(ValueError, match="shape"):
        ConfusionMatrix(3).update(torch.zeros(2, 2), torch.zeros(4))
    with pytest.raises(ValueError, match="class_names"):
        scores(torch.eye(3, dtype=torch.int64), ["a"])


def test_negative_label_and_bad_prediction_are_errors():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, -5, 255]))
    with pytest.raises(ValueError, match="label -5 "):
        cm.compute()
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 3, 9]), torch.tensor([0, 1, 255]))  # the 9 sits on an ignored pixel: fine
    with pytest.raises(ValueError, match="1 predicted labels are outside \\[0, 3\\)"):
        cm.compute()


def _reference(pred, target, k, ignore):
    """Plain-Python confusion matrix and scores, written independently of the module under test."""
    m = [[0] * k for _ in range(k)]
    for p, t in zip(pred.flatten().tolist(), target.flatten().tolist(), strict=True):
        if t != ignore:
            m[t][p] += 1
    iou, acc = [], []
    for c in range(k):
        tp, row, col = m[c][c], sum(m[c]), sum(m[r][c] for r in range(k))
        union = row + col - tp
        iou.append(tp / union if union else None)
        if row:
            acc.append(tp / row)
    present = [v for v in iou if v is not None]
    total = sum(map(sum, m))
    return m, {"miou": sum(present) / k, "miou_present": sum(present) / len(present),
               "pixel_acc": sum(m[c][c] for c in range(k)) / total, "mean_acc": sum(acc) / k,
               "mean_acc_present": sum(acc) / len(acc)}


@pytest.mark.parametrize("seed", range(5))
def test_against_an_independent_implementation_on_random_maps(seed):
    g = torch.Generator().manual_seed(seed)
    k = 7
    target = torch.randint(0, k - 2, (3, 11, 13), generator=g)  # the last two classes never appear in truth
    target[torch.rand(target.shape, generator=g) < 0.2] = 255
    pred = torch.randint(0, k - 1, target.shape, generator=g)  # class k-1 is never predicted: absent everywhere
    cm = ConfusionMatrix(k)
    cm.update(pred, target)
    matrix, expected = _reference(pred, target, k, 255)
    assert cm.matrix.tolist() == matrix
    got = cm.compute()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key
    assert math.isnan(got["per_class_iou"][f"class_{k - 1}"]) and got["per_class_iou"][f"class_{k - 2}"] == 0.0
    assert all(0.0 <= got[key] <= 1.0 for key in expected)


def test_per_image_counts_by_hand():
    # two 2x3 images, K = 3, 255 ignored; image 1 has a label 7 outside the classes (not counted)
    target = torch.tensor([[[0, 0, 1], [2, 255, 1]],
                           [[1, 1, 1], [7, 0, 255]]])
    pred = torch.tensor([[[0, 1, 1], [2, 2, 0]],
                         [[1, 2, 1], [0, 2, 2]]])
    inter, union = per_image_counts(pred, target, 3)
    assert inter.tolist() == [[1, 1, 1], [0, 2, 0]]
    assert union.tolist() == [[3, 3, 1], [1, 3, 2]]
    assert inter.dtype == union.dtype == torch.int64
    cm = ConfusionMatrix(3)
    cm.update(pred[:1], target[:1])
    m = cm.matrix
    assert inter[0].tolist() == m.diag().tolist()
    assert union[0].tolist() == (m.sum(0) + m.sum(1) - m.diag()).tolist()
