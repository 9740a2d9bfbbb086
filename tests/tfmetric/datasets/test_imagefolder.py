"""imagefolder: <root>/<class>/<image>, split by sorted class name or by class lists."""

import os

import pytest

from tests import fixtures as fx
from tfmetric.datasets import DatasetFormatError, DatasetNotFoundError, get_dataset, imagefolder


def classes(records):
    return sorted({(r.label, r.class_name) for r in records})


def test_module_contract():
    assert get_dataset("imagefolder") is imagefolder
    assert (imagefolder.SPLITS, imagefolder.GALLERY_SPLIT) == (("train", "test"), None)


def test_default_split_is_first_half_of_sorted_names(tmp_path):
    root = fx.make_imagefolder(str(tmp_path), {"e": 1, "b": 2, "a": 1, "d": 1, "c": 1})
    fx.write_jpeg(os.path.join(root, "b", "nested", "deep.jpg"))
    fx.write_bytes(os.path.join(root, "b", ".DS_Store"), b"")
    fx.write_bytes(os.path.join(root, "README.txt"), b"not a class")
    os.makedirs(os.path.join(root, ".cache"))
    splits = imagefolder.load(root)
    assert classes(splits["train"]) == [(0, "a"), (1, "b"), (2, "c")]  # 5 classes: 3 train
    assert classes(splits["test"]) == [(0, "d"), (1, "e")]
    assert [r.image_id for r in splits["train"] if r.class_name == "b"] == [
        "b/img_0.jpg",
        "b/img_1.jpg",
        "b/nested/deep.jpg",
    ]
    assert splits["train"][0].path == os.path.join(root, "a", "img_0.jpg")


def test_class_lists(tmp_path):
    root = fx.make_imagefolder(str(tmp_path / "root"))
    test_file = fx.write_text(str(tmp_path / "test.txt"), ["apple", "", "# held out", "cherry"])
    splits = imagefolder.load(root, test_classes=test_file)
    assert classes(splits["train"]) == [(0, "banana"), (1, "date")]
    assert classes(splits["test"]) == [(0, "apple"), (1, "cherry")]
    splits = imagefolder.load(root, train_classes=["date"], test_classes=["banana"])
    assert (classes(splits["train"]), classes(splits["test"])) == ([(0, "date")], [(0, "banana")])


def test_empty_class_folders_do_not_take_a_label(tmp_path):
    root = fx.make_imagefolder(str(tmp_path), {"a": 1, "c": 1, "d": 1})
    os.makedirs(os.path.join(root, "b"))
    assert classes(imagefolder.load(root)["train"]) == [(0, "a")]  # a, b train; b is empty


def test_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        imagefolder.load(str(tmp_path / "nowhere"))
    root = fx.make_imagefolder(str(tmp_path / "one"), {"only": 1})
    with pytest.raises(DatasetNotFoundError, match="at least 2"):
        imagefolder.load(root)
    root = fx.make_imagefolder(str(tmp_path / "root"))
    bad_list = fx.write_text(str(tmp_path / "train.txt"), ["apple", "kiwi"])
    with pytest.raises(DatasetFormatError, match=r"train.txt:2: class 'kiwi' is not a folder"):
        imagefolder.load(root, train_classes=bad_list)
    with pytest.raises(DatasetFormatError, match="both train and test: apple"):
        imagefolder.load(root, train_classes=["apple"], test_classes=["apple", "date"])
    with pytest.raises(DatasetNotFoundError, match="Class list"):
        imagefolder.load(root, train_classes=str(tmp_path / "missing.txt"))
