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
        whole = predict_whole(model, x)
        slide = predict_slide(model, x, (16, 24))
        small = predict_slide(model, x[:, :, :10, :10], (16, 24))  # padded up to one window
    assert slide.shape == whole.shape and torch.allclose(slide, whole, atol=1e-5)
    assert small.shape == (2, 4, 10, 10) and torch.allclose(small, whole[:, :, :10, :10], atol=1e-5)


def test_multiscale_with_flip_at_scale_one_is_the_softmax():
    model = PixelModel().eval()
    x = torch.randn(1, 3, 20, 20)
    with torch.no_grad():
        ms = predict_multiscale(model, x, (1.0,), flip=True, crop=(32, 32))
        assert torch.allclose(ms, 2 * predict_whole(model, x).softmax(1), atol=1e-5)
        multi = predict(model, x, EvalConfig(mode="multiscale", scales=(0.5, 1.0, 1.5), crop_size=(16, 16)))
    assert multi.shape == (1, 4, 20, 20)
    assert torch.allclose(multi.sum(1), torch.full((1, 20, 20), 6.0), atol=1e-4)  # 3 scales x 2 flips


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
    results = {mode: evaluate(model, Dataset(), EvalConfig(mode=mode, crop_size=(8, 8), scales=(1.0,), flip=False,
                                                           batch_size=2, qualitative=2),
                              torch.device("cpu"), tmp_path / mode)
               for mode in ("whole", "slide", "multiscale")}
    assert results["whole"]["miou"] == results["slide"]["miou"] == results["multiscale"]["miou"]
    assert sum(map(sum, results["whole"]["confusion_matrix"])) == 2 * 12 * 16 + 100
    assert results["whole"]["qualitative"] == ["whole/000.png", "whole/001.png"]
    assert (tmp_path / "whole" / "000.png").stat().st_size > 0
    assert model.training  # evaluate restores the mode
