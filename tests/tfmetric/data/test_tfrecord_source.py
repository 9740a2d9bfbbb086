"""TFRecordSource over class-grouped shards, and open_source."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from tests.tfmetric.data.test_class_sampler import assert_balanced, write_split
from tfmetric import datasets
from tfmetric.config import DataConfig
from tfmetric.data import preprocessing
from tfmetric.data.class_index import ClassIndex
from tfmetric.data.sources import open_source
from tfmetric.data.tfrecord_source import TFRecordSource, augmentation_key

CONFIG = DataConfig(image_size=32, resize_size=36, batch_size=8, images_per_class=2, eval_batch_size=5)
TRAIN_SIZES, TEST_SIZES = [3, 5, 2, 4, 6, 3], [4, 2, 3]


def jpeg(c, k):
    return fixtures.jpeg_bytes(size=(40 + k, 30), rgb=fixtures.color(c))


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shards"))
    return {
        "train": write_split(os.path.join(root, "train"), TRAIN_SIZES, 3, image=jpeg),
        "test": write_split(os.path.join(root, "test"), TEST_SIZES, 2, image=jpeg),
    }


@pytest.fixture(scope="module")
def source(shards):
    return TFRecordSource(shards)


def test_counts_and_labels(source):
    assert source.num_images("train") == sum(TRAIN_SIZES) and source.num_classes("train") == 6
    # File order: shard 0 holds classes 0 and 2 of the test split, shard 1 class 1.
    assert source.labels("test").tolist() == [0] * 4 + [2] * 3 + [1] * 2
    with pytest.raises(ValueError, match="Unknown split 'val'. Available: train, test"):
        source.num_images("val")


def test_train_batches_are_balanced_augmented_images(source):
    batches = list(source.train_dataset("train", CONFIG, "imagenet_mean_std", epoch=0, steps=6, seed=0))
    assert len(batches) == 6
    assert_balanced([(np.zeros(8), labels.numpy()) for _, labels in batches], 8, 2)
    for images, labels in batches:
        assert images.shape == (8, 32, 32, 3) and images.dtype == tf.float32
        # Each image is its class's flat colour (JPEG error aside), whatever the crop and flip.
        mean_rgb = images.numpy().mean(axis=(1, 2)) * preprocessing.IMAGENET_STD + preprocessing.IMAGENET_MEAN
        expected = np.array([fixtures.color(int(c)) for c in labels]) / 255.0
        np.testing.assert_allclose(mean_rgb, expected, atol=0.03)


def test_train_dataset_is_deterministic_per_seed_and_epoch(source):
    def run(seed, epoch):
        return np.concatenate(
            [
                x.numpy()
                for x, _ in source.train_dataset("train", CONFIG, "imagenet_mean_std", epoch, steps=3, seed=seed)
            ]
        )

    a = run(1, 0)
    np.testing.assert_array_equal(a, run(1, 0))
    assert not np.array_equal(a, run(1, 1)) and not np.array_equal(a, run(2, 0))


def test_one_device_reads_what_input_pipeline_0_reads(source):
    """Augmentation keys are distinct per seed, epoch and pipeline; pipeline 0 keeps the stream of
    the published figures; the one-device dataset is input pipeline 0 of a distributed run."""
    keys = {int(augmentation_key(seed, epoch, pipeline)) for seed in (0, 1) for epoch in (0, 1) for pipeline in (0, 1)}
    assert len(keys) == 8 and int(augmentation_key(3, 2)) == int(augmentation_key(3, 2, 0)) == 3 * 1_000_003 + 2
    single = [x.numpy() for x, _ in source.train_dataset("train", CONFIG, "imagenet_mean_std", 1, steps=2, seed=3)]
    fn = source.distribute_dataset_fn("train", CONFIG, "imagenet_mean_std", 1, steps=2, seed=3)
    pipeline0 = [x.numpy() for x, _ in fn(tf.distribute.InputContext(1, 0, 1))]
    np.testing.assert_array_equal(np.stack(single), np.stack(pipeline0))


def test_train_batches_carry_the_labels_train_dataset_feeds(source):
    batches = source.train_batches("train", CONFIG, epoch=1, steps=4, seed=3)
    decoded = source.train_dataset("train", CONFIG, "imagenet_mean_std", epoch=1, steps=4, seed=3)
    assert [y.tolist() for _, y in batches.as_numpy_iterator()] == [y.numpy().tolist() for _, y in decoded]


def test_plain_batches_when_class_balancing_is_off(source):
    config = dataclasses.replace(CONFIG, class_balanced=False)
    batches = list(source.train_dataset("train", config, "imagenet_mean_std", epoch=0, steps=2, seed=0))
    assert [tuple(x.shape) for x, _ in batches] == [(8, 32, 32, 3)] * 2


def test_eval_and_raw_datasets_are_in_file_order(source):
    raw = list(source.raw_dataset("test").as_numpy_iterator())
    assert [int(y) for _, y in raw] == source.labels("test").tolist()
    assert raw[0][0] == jpeg(0, 0)
    batches = list(source.eval_dataset("test", CONFIG, "imagenet_mean_std"))
    assert [len(y) for _, y in batches] == [5, 4]
    images = np.concatenate([x.numpy() for x, _ in batches])
    expected = [preprocessing.eval_preprocess(b, 32, 36).numpy() for b, _ in raw]  # the export's function
    np.testing.assert_allclose(images, np.stack(expected), atol=1e-6)


def test_too_few_classes_for_a_batch(source):
    config = dataclasses.replace(CONFIG, batch_size=8, images_per_class=1)
    with pytest.raises(ValueError, match="A batch needs 8 distinct classes .* has only 6"):
        source.train_dataset("train", config, "imagenet_mean_std", 0, 1, 0)


def test_from_manifest_reads_counts_without_scanning(tmp_path):
    directory = datasets.tfrecord_dir(str(tmp_path), "toy")
    paths = write_split(os.path.join(directory, "train"), [2, 3], 2)
    manifest = {
        "dataset": "toy",
        "splits": {
            "train": {
                "num_images": 5,
                "num_classes": 2,
                "skipped": [],
                "shards": [
                    {"path": os.path.relpath(p, directory), "num_images": n, "num_classes": 1}
                    for p, n in zip(paths, (2, 3))
                ],
            }
        },
    }
    source = TFRecordSource.from_manifest(manifest, str(tmp_path))
    assert source.num_images("train") == 5 and source.num_classes("train") == 2
    assert not source._indexes  # nothing read yet
    assert source.labels("train").tolist() == [0, 0, 1, 1, 1]


def test_class_runs_in_the_manifest_replace_the_label_scan(tmp_path, monkeypatch):
    directory = datasets.tfrecord_dir(str(tmp_path), "toy")
    paths = write_split(os.path.join(directory, "train"), [2, 3, 4, 1, 2], 2)  # classes 0,2,4 | 1,3
    scanned = ClassIndex.scan(paths)
    runs = [[[0, 2], [2, 4], [4, 2]], [[1, 3], [3, 1]]]
    manifest = {
        "dataset": "toy",
        "splits": {
            "train": {
                "num_images": 12,
                "num_classes": 5,
                "skipped": [],
                "shards": [
                    {
                        "path": os.path.relpath(p, directory),
                        "num_images": sum(n for _, n in r),
                        "num_classes": len(r),
                        "class_runs": r,
                        "class_offsets": [int(scanned.offsets[label]) for label, _ in r],
                    }
                    for p, r in zip(paths, runs)
                ],
            }
        },
    }

    def no_scan(*args, **kwargs):
        raise AssertionError("the labels must not be read")

    monkeypatch.setattr(ClassIndex, "scan", no_scan)
    index = TFRecordSource.from_manifest(manifest, str(tmp_path)).index("train")
    np.testing.assert_array_equal(index.runs, scanned.runs)
    np.testing.assert_array_equal(index.order, scanned.order)
    np.testing.assert_array_equal(index.offsets, scanned.offsets)
    assert index.paths == scanned.paths


def test_open_source_without_data_names_the_files_to_get(tmp_path):
    config = DataConfig(dataset="cars196", data_dir=str(tmp_path))
    with pytest.raises(datasets.DatasetNotFoundError) as e:
        open_source(config)
    assert "cars_annos.mat" in str(e.value).splitlines()[0]


@pytest.mark.slow
def test_open_source_converts_digits_with_beam_then_streams(tmp_path):
    config = DataConfig(
        dataset="digits",
        data_dir=str(tmp_path),
        image_size=32,
        resize_size=36,
        batch_size=50,
        images_per_class=10,
        eval_batch_size=256,
    )
    source, module = open_source(config)  # runs pipelines.build_tfrecords in a subprocess
    assert isinstance(source, TFRecordSource)
    assert os.path.exists(os.path.join(datasets.tfrecord_dir(str(tmp_path), "digits"), "manifest.json"))
    train = module.TRAIN_SPLIT
    assert source.num_classes(train) == 5
    images, labels = next(iter(source.train_dataset(train, config, "imagenet_mean_std", 0, 2, 0)))
    assert images.shape == (50, 32, 32, 3)
    assert_balanced([(np.zeros(50), labels.numpy())], 50, 10)
    labels = np.concatenate(
        [y.numpy() for _, y in source.eval_dataset(module.QUERY_SPLIT, config, "imagenet_mean_std")]
    )
    np.testing.assert_array_equal(labels, source.labels(module.QUERY_SPLIT))
    again, _ = open_source(config)  # the manifest is there: no second conversion
    assert again.num_images(train) == source.num_images(train)
    for split in (train, module.QUERY_SPLIT):  # the converter's class runs = the shards' labels
        scanned = ClassIndex.scan(source._paths(split))
        np.testing.assert_array_equal(source.index(split).runs, scanned.runs)
        np.testing.assert_array_equal(source.index(split).order, scanned.order)


@pytest.mark.parametrize("cache", [False, True], ids=["streamed", "in-memory"])
def test_epochs_as_one_dataset_are_the_epochs_built_one_by_one(shards, cache):
    """train_epochs (what one device trains on) = each epoch's train_dataset, in order, image for image."""
    config = dataclasses.replace(CONFIG, cache=cache)
    source = TFRecordSource(shards)
    one_by_one = [
        batch
        for epoch in (2, 3, 4)
        for batch in source.train_dataset("train", config, "imagenet_mean_std", epoch, steps=3, seed=7)
    ]
    together = list(source.train_epochs("train", config, "imagenet_mean_std", 2, 5, steps=3, seed=7))
    assert len(together) == len(one_by_one) == 9
    for (xa, ya), (xb, yb) in zip(one_by_one, together):
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(xa, xb)
