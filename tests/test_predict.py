import numpy as np
import pytest
import torch

from study.config import EvalConfig
from study.evaluate.predict import evaluate, predict, predict_multiscale, predict_slide, predict_whole


class PixelModel(torch.nn.Module):
    """A per-pixel model (1x1 conv): every inference mode must give the whole-image answer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return {"out": self.conv(x)}


def test_slide_equals_whole_for_a_per_pixel_model_and_covers_every_pixel():
    model = PixelModel().eval()
    x = torch.randn(2, 3, 37, 53)
    with torch.no_grad():
        whole = predict_whole(model, x).softmax(1)
        slide = predict_slide(model, x, (16, 24))
        small = predict_slide(model, x[:, :, :10, :10], (16, 24), flip=True)  # padded up to one window
    assert slide.shape == whole.shape and torch.allclose(slide, whole, atol=1e-5)
    assert small.shape == (2, 4, 10, 10) and torch.allclose(small, whole[:, :, :10, :10], atol=1e-5)


def test_multiscale_with_flip_at_scale_one_is_the_softmax():
    model = PixelModel().eval()
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        ms = predict_multiscale(model, x, (1.0,), flip=True, crop=(32, 32))
        assert torch.allclose(ms, predict_whole(model, x).softmax(1), atol=1e-5)
        multi = predict(model, x, EvalConfig(mode="multiscale", scales=(0.5, 1.0, 1.5), crop_size=(16, 16)))
    assert multi.shape == (1, 4, 20, 20)
    assert torch.allclose(multi.sum(1), torch.ones(1, 20, 20), atol=1e-5)  # mean of probabilities


class Dataset(torch.utils.data.Dataset):
    num_classes, ignore_index = 4, 255
    class_names = ("a", "b", "c", "d")
    palette = ((0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255))

    def __len__(self):
        return 3

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        size = (12, 16) if i < 2 else (10, 10)  # unequal sizes are predicted in separate groups
        return torch.randn(3, *size, generator=g), torch.randint(0, 4, size, generator=g)


def test_evaluate_modes_agree_and_save_strips(tmp_path):
    model = PixelModel()
    results = {mode: evaluate(model, Dataset(), device=torch.device("cpu"), qualitative_dir=tmp_path / mode,
                              cfg=EvalConfig(mode=mode, crop_size=(8, 8), scales=(1.0,), flip=False, batch_size=2,
                                             qualitative=2))
               for mode in ("whole", "slide", "multiscale")}
    assert results["whole"]["miou"] == results["slide"]["miou"] == results["multiscale"]["miou"]
    assert sum(map(sum, results["whole"]["confusion_matrix"])) == 2 * 12 * 16 + 100
    assert results["whole"]["qualitative"] == ["whole/000.png", "whole/001.png"]
    assert (tmp_path / "whole" / "000.png").stat().st_size > 0
    assert model.training  # evaluate restores the mode


class ContextModel(torch.nn.Module):
    """Not per-pixel: an asymmetric 3x3 conv plus a 2x2 pyramid bin (as PSPNet's), so padding and its split,
    window place and flip all change the answer."""

    def __init__(self, k: int = 4):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(3, k, 3, padding=1)
        self.bins = torch.nn.Conv2d(3, k, 1)

    def forward(self, x):
        pooled = self.bins(torch.nn.functional.adaptive_avg_pool2d(x, 2))
        up = torch.nn.functional.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=True)
        return {"out": 3 * (self.conv(x) + up)}


def _ref_resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) -> (C, h, w) bilinear with half-pixel centres, edges clamped (OpenCV INTER_LINEAR), written out."""
    def taps(n_in, n_out):
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        i0 = np.floor(src).astype(int)
        frac = src - i0
        frac[i0 < 0], i0[i0 < 0] = 0.0, 0
        top = i0 >= n_in - 1
        frac[top], i0[top] = 0.0, n_in - 1
        return i0, np.minimum(i0 + 1, n_in - 1), frac

    y0, y1, fy = taps(a.shape[1], size[0])
    x0, x1, fx = taps(a.shape[2], size[1])
    rows = a[:, y0] * (1 - fy)[:, None] + a[:, y1] * fy[:, None]
    return rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx


def _reference_official(model, image: np.ndarray, base: int, crop: tuple[int, int], scales, label_hw):
    """hszhao/semseg tool/test.py's procedure restated in float64 numpy, one window at a time."""
    h, w = image.shape[1:]
    total = 0.0
    for s in scales:
        long_side = round(s * base)
        nh, nw = (long_side, round(long_side / h * w)) if h > w else (round(long_side / w * h), long_side)
        im = _ref_resize(image, (nh, nw))
        pad_h, pad_w = max(crop[0] - nh, 0), max(crop[1] - nw, 0)
        top, left = pad_h // 2, pad_w // 2  # the smaller half before, the rest after
        canvas = np.zeros((3, nh + pad_h, nw + pad_w))  # 0 = the mean colour once normalised
        canvas[:, top: top + nh, left: left + nw] = im
        big_h, big_w = canvas.shape[1:]
        stride = [(2 * c + 2) // 3 for c in crop]  # ceil(2c/3)
        ys = list(range(0, big_h - crop[0], stride[0])) + [big_h - crop[0]]
        xs = list(range(0, big_w - crop[1], stride[1])) + [big_w - crop[1]]
        acc, hits = np.zeros((4, big_h, big_w)), np.zeros((big_h, big_w))
        for y in ys:
            for x in xs:
                win = canvas[:, y: y + crop[0], x: x + crop[1]]
                pair = torch.tensor(np.stack([win, win[:, :, ::-1].copy()]), dtype=torch.float32)
                with torch.no_grad():
                    prob = model(pair)["out"].softmax(1).double().numpy()
                acc[:, y: y + crop[0], x: x + crop[1]] += (prob[0] + prob[1][:, :, ::-1]) / 2
                hits[y: y + crop[0], x: x + crop[1]] += 1
        mean = (acc / hits)[:, top: top + nh, left: left + nw]
        total = total + _ref_resize(mean, label_hw)
    return total / len(scales)


@pytest.mark.parametrize("hw, label_hw, crop, scales", [
    ((23, 37), (23, 37), (17, 19), (1.0,)),
    ((23, 37), (23, 37), (17, 19), (0.5, 1.0, 1.75)),  # 0.5: 10x16, padded 3+4 rows and 1+2 columns
    ((31, 19), (31, 19), (13, 11), (0.75, 1.25)),  # portrait, several windows each way
    ((20, 30), (41, 59), (15, 15), (1.0, 1.5)),  # the model ran smaller than the label: resized to the label
])
def test_official_mode_matches_an_independent_reference(hw, label_hw, crop, scales):
    model = ContextModel().eval()
    image = torch.randn(3, *hw, generator=torch.Generator().manual_seed(hw[0]))
    image = torch.nn.functional.avg_pool2d(image[None], 3, 1, 1)[0] * 3  # smooth, with structure
    cfg = EvalConfig(mode="official", base_size=32, crop_size=crop, scales=scales, flip=True)
    with torch.no_grad():
        ours = predict(model, image[None], cfg, label_hw)[0].double().numpy()
    ref = _reference_official(model, image.double().numpy(), 32, crop, scales, label_hw)
    assert ours.shape == ref.shape == (4, *label_hw)
    assert np.abs(ours - ref).max() < 1e-5
    assert (ours.argmax(0) == ref.argmax(0)).all()
    assert len(np.unique(ref.argmax(0))) > 1  # a prediction with structure, not one class


def test_official_padding_is_split_and_flip_is_per_window():
    model = ContextModel().eval()
    x = torch.randn(1, 3, 9, 10, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = predict_slide(model, x, (16, 16), flip=True)
        padded = torch.nn.functional.pad(x, (3, 3, 3, 4))  # 7 rows: 3 above, 4 below; 6 columns: 3 and 3
        pair = model(torch.cat([padded, padded.flip(-1)]))["out"].softmax(1)
        want = ((pair[:1] + pair[1:].flip(-1)) / 2)[:, :, 3:12, 3:13]
        bottom_right = model(torch.nn.functional.pad(x, (0, 6, 0, 7)))["out"].softmax(1)[:, :, :9, :10]
    assert torch.allclose(got, want, atol=1e-6)
    assert not torch.allclose(got, bottom_right, atol=1e-3)


class ResizedDataset(Dataset):
    """Images at 12x16 as the model sees them, labels at their own 24x32 (and one 20x20 label)."""

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        label = (24, 32) if i < 2 else (20, 20)
        return torch.randn(3, 12, 16, generator=g), torch.randint(0, 4, label, generator=g)


def test_evaluate_scores_at_label_resolution_with_per_image_counts_and_protocol():
    model = PixelModel()
    cfg = EvalConfig(mode="official", base_size=20, crop_size=(16, 16), scales=(1.0,), batch_size=3, qualitative=0)
    r = evaluate(model, ResizedDataset(), cfg=cfg, device=torch.device("cpu"))
    cm = np.array(r["confusion_matrix"])
    assert cm.sum() == 2 * 24 * 32 + 20 * 20  # every label pixel, at the label's size
    inter, union = r["per_image_intersection"], r["per_image_union"]
    assert inter.dtype == union.dtype == np.int64 and inter.shape == union.shape == (3, 4)
    assert r["per_image_ids"] == ["0", "1", "2"]  # a data set without image_id: its indices
    assert (inter.sum(0) == np.diag(cm)).all()
    assert (union.sum(0) == cm.sum(0) + cm.sum(1) - np.diag(cm)).all()
    assert r["mean_acc_present"] >= r["mean_acc"] - 1e-12
    assert r["protocol"] == {"mode": "official", "scales": [1.0], "flip": True, "base_size": 20, "crop": [16, 16],
                             "stride": [11, 11], "average": "softmax probabilities", "input_size": [15, 20],
                             "scoring": "label", "label_size": [24, 32]}
    whole = evaluate(model, ResizedDataset(), cfg=EvalConfig(mode="whole", qualitative=0), device=torch.device("cpu"))
    assert whole["protocol"]["input_size"] == [12, 16] and whole["protocol"]["flip"] is False


class ChannelModel(torch.nn.Module):
    """Class c's score is input channel c (c < 3); class 3 scores 0.5: predictions set by hand."""

    def forward(self, x):
        return {"out": torch.cat([x, torch.full_like(x[:, :1], 0.5)], 1)}


def test_per_image_counts_by_hand_in_dataset_order():
    class Tiny(Dataset):
        images = [[[1, 0, 0], [0, 1, 1], [0, 0, 0]],  # predicts 0 1 1
                  [[0, 0, 1], [0, 0, 0], [0, 1, 0]]]  # predicts 3 2 0
        labels = [[0, 1, 255], [2, 2, 2]]

        def __len__(self):
            return 2

        def __getitem__(self, i):
            return torch.tensor(self.images[i], dtype=torch.float32).view(3, 1, 3), torch.tensor([self.labels[i]])

    r = evaluate(ChannelModel(), Tiny(), cfg=EvalConfig(mode="whole", batch_size=2, qualitative=0),
                 device=torch.device("cpu"))
    assert r["per_image_intersection"].tolist() == [[1, 1, 0, 0], [0, 0, 1, 0]]
    assert r["per_image_union"].tolist() == [[1, 1, 0, 0], [1, 0, 3, 1]]
