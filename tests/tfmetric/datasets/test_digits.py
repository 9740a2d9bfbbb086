"""scikit-learn's digits as a dataset module: splits, labels, ids, and exact upsampled pixels."""

import io
import re

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from tfmetric import datasets
from tfmetric.datasets import digits


@pytest.fixture(scope="module")
def records():
    return digits.load()


@pytest.fixture(scope="module")
def sklearn_digits():
    return load_digits()


def decode(record):
    image = Image.open(io.BytesIO(record.read_bytes()))
    return image.format, np.asarray(image.convert("RGB"))


def test_module_contract():
    assert datasets.get_dataset("digits") is digits
    assert digits.NAME == "digits"
    assert digits.SPLITS == ("train", "test")
    assert (digits.TRAIN_SPLIT, digits.QUERY_SPLIT) == ("train", "test")
    assert digits.GALLERY_SPLIT is None
    assert "scikit-learn" in digits.INSTRUCTIONS


def test_counts_match_sklearn(records, sklearn_digits):
    per_digit = np.bincount(sklearn_digits.target)
    assert len(records["train"]) + len(records["test"]) == 1797
    assert len(records["train"]) == per_digit[:5].sum()
    assert len(records["test"]) == per_digit[5:].sum()
    for split, first_digit in (("train", 0), ("test", 5)):
        labels = np.array([r.label for r in records[split]])
        np.testing.assert_array_equal(np.bincount(labels), per_digit[first_digit : first_digit + 5])


def test_labels_contiguous_and_class_names(records):
    for split, first_digit in (("train", 0), ("test", 5)):
        recs = records[split]
        assert sorted({r.label for r in recs}) == [0, 1, 2, 3, 4]
        assert all(r.split == split and r.class_name == str(first_digit + r.label) for r in recs)
    train = {r.class_name for r in records["train"]}
    test = {r.class_name for r in records["test"]}
    assert not train & test


def test_image_ids_unique_and_stable(records):
    all_records = records["train"] + records["test"]
    ids = [r.image_id for r in all_records]
    assert len(set(ids)) == len(ids) == 1797
    assert all(re.fullmatch(r"digits/c\d/i\d{4}\.png", i) for i in ids)
    assert all(r.path is None and isinstance(r.data, bytes) for r in all_records)
    assert ids == [r.image_id for r in digits.load()["train"] + digits.load()["test"]]


def test_nearest_upsampling_keeps_the_exact_pixels(records, sklearn_digits):
    expected_values = np.rint(sklearn_digits.images * 255.0 / 16.0).astype(np.uint8)
    for record in records["train"][::50] + records["test"][::50]:
        fmt, image = decode(record)
        assert fmt == "PNG" and image.shape == (32, 32, 3)
        index = int(record.image_id.split("/i")[1].split(".")[0])
        assert sklearn_digits.target[index] == int(record.class_name)
        np.testing.assert_array_equal(image, image[..., :1].repeat(3, axis=-1))
        blocks = np.kron(expected_values[index], np.ones((4, 4), np.uint8))
        np.testing.assert_array_equal(image[:, :, 0], blocks)


def test_bilinear_and_other_sizes():
    bilinear = digits.load(resample="bilinear")
    nearest_24 = digits.load(image_size=24)
    _, smooth = decode(bilinear["test"][0])
    assert smooth.shape == (32, 32, 3)
    assert len(np.unique(smooth)) > 17  # interpolated values between the 17 original levels
    assert decode(nearest_24["train"][0])[1].shape == (24, 24, 3)


def test_raw_pixels_retrieve_test_digits_almost_perfectly(records):
    x = np.stack([decode(r)[1] for r in records["test"]]).reshape(len(records["test"]), -1)
    x = x.astype(np.float64)
    x -= x.mean(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = np.array([r.label for r in records["test"]])
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)
    assert (labels[similarity.argmax(axis=1)] == labels).mean() > 0.95


@pytest.mark.parametrize("kwargs", [dict(image_size=4), dict(resample="bicubic")])
def test_invalid_arguments_name_the_value(kwargs):
    with pytest.raises(ValueError, match="Received"):
        digits.load(**kwargs)
