"""Cars196: cars_annos.mat (MATLAB struct array) -> classes 1-98 train, 99-196 test."""

import os

import numpy as np
import pytest
import scipy.io

from tests import fixtures as fx
from tfmetric.datasets import DatasetFormatError, DatasetNotFoundError, cars196, get_dataset


def test_module_contract():
    assert get_dataset("cars196") is cars196
    assert (cars196.SPLITS, cars196.TRAIN_SPLIT, cars196.QUERY_SPLIT, cars196.GALLERY_SPLIT) == (
        ("train", "test"),
        "train",
        "test",
        None,
    )


def test_fake_matches_the_real_file_structure(tmp_path):
    root = fx.make_cars196(str(tmp_path))
    mat = scipy.io.loadmat(os.path.join(root, "cars_annos.mat"), squeeze_me=True)
    assert mat["annotations"].dtype.names == (
        "relative_im_path",
        "bbox_x1",
        "bbox_y1",
        "bbox_x2",
        "bbox_y2",
        "class",
        "test",
    )
    assert mat["class_names"].shape == (196,)


def test_split_by_class_ignoring_the_test_flag(tmp_path):
    root = fx.make_cars196(str(tmp_path), {1: 3, 98: 1, 99: 2, 196: 3})
    splits = cars196.load(root)
    assert [(r.label, r.class_name) for r in splits["train"]] == [(0, "1")] * 3 + [(1, "98")]
    assert [(r.label, r.class_name) for r in splits["test"]] == [(0, "99")] * 2 + [(1, "196")] * 3
    first = splits["train"][0]
    assert (first.image_id, first.split, first.path) == (
        "car_ims/000001.jpg",
        "train",
        os.path.join(root, "car_ims", "000001.jpg"),
    )
    assert all(os.path.exists(r.path) for rs in splits.values() for r in rs)


def test_a_single_annotation_still_loads(tmp_path):
    root = fx.make_cars196(str(tmp_path), {120: 1})
    splits = cars196.load(root)
    assert (len(splits["train"]), len(splits["test"])) == (0, 1)


def test_missing_annotations(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        cars196.load(str(tmp_path))
    assert os.path.join(str(tmp_path), "cars_annos.mat") in str(e.value)
    assert "car_ims.tgz" in str(e.value) and "dead" in str(e.value)
    with pytest.raises(DatasetNotFoundError, match="Cannot download cars196"):
        cars196.download(str(tmp_path))
    fx.make_cars196(str(tmp_path))
    cars196.download(str(tmp_path))  # present: nothing to do


def test_bad_annotations(tmp_path):
    fx.write_bytes(str(tmp_path / "cars_annos.mat"), b"not a mat file")
    with pytest.raises(DatasetFormatError, match="not a readable MATLAB file"):
        cars196.load(str(tmp_path))

    scipy.io.savemat(str(tmp_path / "cars_annos.mat"), {"class_names": np.array(["a"], object)})
    with pytest.raises(DatasetFormatError, match="no 'annotations' variable"):
        cars196.load(str(tmp_path))

    annotations = np.zeros((1, 2), dtype=[("relative_im_path", "O"), ("class", "O")])
    annotations[0, 0] = ("car_ims/000001.jpg", np.array([[3]], np.uint8))
    annotations[0, 1] = ("car_ims/000002.jpg", np.array([[200]], np.uint8))
    scipy.io.savemat(str(tmp_path / "cars_annos.mat"), {"annotations": annotations})
    with pytest.raises(DatasetFormatError, match="annotation 2: class 200 outside 1..196"):
        cars196.load(str(tmp_path))

    annotations = np.zeros((1, 1), dtype=[("relative_im_path", "O")])
    annotations[0, 0] = ("car_ims/000001.jpg",)
    scipy.io.savemat(str(tmp_path / "cars_annos.mat"), {"annotations": annotations})
    with pytest.raises(DatasetFormatError, match="lacks the field 'class'"):
        cars196.load(str(tmp_path))
