"""The generated product catalog: record contract, determinism, and hardness for raw pixels.

The full default dataset (4,800 JPEGs of 32x32) is generated once per module in about a second or
two; the other tests use a handful of classes and images.
"""

import io
import re

import numpy as np
import pytest
from PIL import Image

from tfmetric import datasets
from tfmetric.datasets import synthetic

# Measured 0.084 at the defaults (seed 0); a learned embedding reaches ~0.88 (see the module doc).
RAW_PIXEL_RECALL_AT_1_BOUND = 0.15


@pytest.fixture(scope="module")
def records():
    return synthetic.load()


def decode(record):
    image = Image.open(io.BytesIO(record.read_bytes()))
    return image.format, np.asarray(image.convert("RGB"))


def naive_raw_pixel_recall_at_1(images, labels):
    """Flattened, mean-centred, L2-normalised pixels; cosine; the query itself excluded by index."""
    x = images.reshape(len(images), -1).astype(np.float32)
    x -= x.mean(axis=0)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)
    return float((labels[similarity.argmax(axis=1)] == labels).mean())


def test_module_contract():
    assert datasets.get_dataset("synthetic") is synthetic
    assert synthetic.NAME == "synthetic"
    assert synthetic.SPLITS == ("train", "test")
    assert (synthetic.TRAIN_SPLIT, synthetic.QUERY_SPLIT) == ("train", "test")
    assert synthetic.GALLERY_SPLIT is None
    assert "download" in synthetic.INSTRUCTIONS


def test_counts_labels_and_class_names(records):
    assert set(records) == {"train", "test"}
    for split, first_class in (("train", 0), ("test", 100)):
        recs = records[split]
        assert len(recs) == 100 * 24
        assert all(r.split == split for r in recs)
        labels = np.array([r.label for r in recs])
        np.testing.assert_array_equal(np.bincount(labels), np.full(100, 24))
        assert all(r.class_name == str(first_class + r.label) for r in recs)


def test_train_and_test_classes_disjoint(records):
    train = {r.class_name for r in records["train"]}
    test = {r.class_name for r in records["test"]}
    assert len(train) == len(test) == 100 and not train & test


def test_image_ids_unique_stable_and_in_memory(records):
    all_records = records["train"] + records["test"]
    ids = [r.image_id for r in all_records]
    assert len(set(ids)) == len(ids) == 4800
    assert all(re.fullmatch(r"synthetic/c\d{4}/i\d{3}\.jpg", i) for i in ids)
    assert records["test"][0].image_id == "synthetic/c0100/i000.jpg"
    assert all(r.path is None and isinstance(r.data, bytes) for r in all_records)


def test_images_decode_to_jpeg_of_stated_size(records):
    for record in records["train"][::7] + records["test"][::7]:
        fmt, image = decode(record)
        assert fmt == "JPEG" and image.shape == (32, 32, 3)
    small = synthetic.load(num_classes=2, images_per_class=2, image_size=48)
    assert decode(small["train"][0])[1].shape == (48, 48, 3)


def test_deterministic_for_a_seed_and_seed_sensitive():
    a = synthetic.load(seed=3, num_classes=4, images_per_class=3)
    b = synthetic.load(seed=3, num_classes=4, images_per_class=3)
    c = synthetic.load(seed=4, num_classes=4, images_per_class=3)
    for split in a:
        assert [r.data for r in a[split]] == [r.data for r in b[split]]
        assert all(x.data != y.data for x, y in zip(a[split], c[split]))


def test_class_appearance_depends_only_on_seed_and_class_id():
    # Class 2 is a test class of a 4-class catalog and a train class of a 6-class one: same pixels.
    small, _ = synthetic.generate(range(4), seed=5, images_per_class=3)
    larger, ids = synthetic.generate([2, 3, 4], seed=5, images_per_class=3)
    np.testing.assert_array_equal(small[6:], larger[:6])
    np.testing.assert_array_equal(ids, np.repeat([2, 3, 4], 3))
    assert (
        synthetic.load(num_classes=4, images_per_class=3)["test"][0].data
        == synthetic.load(num_classes=6, images_per_class=3)["train"][6].data
    )


def test_images_vary_within_a_class_and_differ_across_classes():
    images, _ = synthetic.generate([7, 8], images_per_class=4)
    assert images.dtype == np.uint8 and images.shape == (8, 32, 32, 3)
    flat = images.reshape(8, -1).astype(np.int32)
    assert all(np.abs(flat[i] - flat[j]).mean() > 10 for i in range(8) for j in range(i + 1, 8))


def test_raw_pixels_retrieve_test_classes_poorly(records):
    decoded = np.stack([decode(r)[1] for r in records["test"]])
    labels = np.array([r.label for r in records["test"]])
    recall = naive_raw_pixel_recall_at_1(decoded, labels)
    chance = 23 / 2399
    assert chance < recall < RAW_PIXEL_RECALL_AT_1_BOUND


@pytest.mark.parametrize(
    "kwargs", [dict(num_classes=3), dict(num_classes=0), dict(images_per_class=1), dict(image_size=8), dict(seed=-1)]
)
def test_invalid_arguments_name_the_value(kwargs):
    with pytest.raises(ValueError, match="Received"):
        synthetic.load(**kwargs)
