"""tf.distribute: every replica receives whole classes; input pipelines (hosts) read disjoint shards."""

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from tests.tfmetric.data.test_class_sampler import write_split
from tfmetric.config import DataConfig
from tfmetric.data.tfrecord_source import TFRecordSource

MIRRORED = (
    fixtures.TWO_LOGICAL_CPUS
    + r"""
from tests import fixtures
from tests.tfmetric.data.test_class_sampler import write_split
from tfmetric.config import DataConfig
from tfmetric.data.tfrecord_source import TFRecordSource

paths = write_split(sys.argv[1], [4, 3, 5, 2, 4, 6, 3, 4, 5], 3,
                    image=lambda c, k: fixtures.jpeg_bytes((24, 20), fixtures.color(c)))
source = TFRecordSource({"train": paths})
config = DataConfig(image_size=32, resize_size=36, batch_size=12, images_per_class=3)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
kernel = tf.Variable(tf.zeros([3, 9]))

@tf.function
def train_step(images, labels):
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.reduce_mean(images, axis=[1, 2]) @ kernel.read_value()
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        kernel.assign_sub(0.1 * tape.gradient(loss, kernel) / 2)  # illustrative update, per replica
        return labels, tf.shape(images)
    return strategy.run(step, args=(images, labels))

def replica_labels(dataset):
    out = []
    for images, labels in dataset:
        labels, shapes = train_step(images, labels)
        out.append([[int(v) for v in t.numpy()] for t in strategy.experimental_local_results(labels)])
        assert all(list(s.numpy()) == [6, 32, 32, 3] for s in strategy.experimental_local_results(shapes))
    return out

with strategy.scope():
    from_function = strategy.distribute_datasets_from_function(
        source.distribute_dataset_fn("train", config, "imagenet_mean_std", epoch=0, steps=4, seed=0))
    global_batches = strategy.experimental_distribute_dataset(
        source.train_dataset("train", config, "imagenet_mean_std", epoch=0, steps=4, seed=0))
    result = {"replicas": strategy.num_replicas_in_sync,
              "from_function": replica_labels(from_function), "split": replica_labels(global_batches)}
    try:
        bad = DataConfig(image_size=32, resize_size=36, batch_size=12, images_per_class=4)
        strategy.distribute_datasets_from_function(
            source.distribute_dataset_fn("train", bad, "imagenet_mean_std", 0, 4, 0))
        result["error"] = None
    except ValueError as e:
        result["error"] = str(e)
print("RESULT " + json.dumps(result))
"""
)


def _whole_classes(labels, k):
    groups = np.asarray(labels).reshape(-1, k)
    return bool(np.all(groups == groups[:, :1])) and len(np.unique(groups[:, 0])) == len(groups)


@pytest.mark.slow
def test_mirrored_strategy_gives_each_replica_whole_classes(tmp_path):
    result, _ = fixtures.run_script(MIRRORED, str(tmp_path))
    assert result["replicas"] == 2
    for key in ("from_function", "split"):  # per-replica pipelines, and a global batch split in two
        steps = result[key]
        assert len(steps) == 4
        for replicas in steps:
            assert len(replicas) == 2 and all(len(r) == 6 and _whole_classes(r, 3) for r in replicas)
    assert "gives 6 images per replica, not a multiple of data.images_per_class (4)" in result["error"]


def test_input_pipelines_read_disjoint_shards_and_classes(tmp_path):
    sizes = [3] * 12
    paths = write_split(str(tmp_path), sizes, 4, image=lambda c, k: fixtures.jpeg_bytes((20, 20)))
    source = TFRecordSource({"train": paths})  # class c in shard c % 4
    config = DataConfig(image_size=32, resize_size=36, batch_size=4, images_per_class=2)
    fn = source.distribute_dataset_fn("train", config, "imagenet_mean_std", epoch=0, steps=3, seed=0)
    seen = []
    for pipeline in (0, 1):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline, num_replicas_in_sync=2)
        batches = [y.numpy() for _, y in fn(context)]
        labels = np.concatenate(batches)
        assert len(labels) == 3 * 2  # 3 steps x 1 replica on this host x per-replica batch of 2
        assert all(_whole_classes(y, 2) for y in batches)  # batches are drawn independently
        assert set(labels % 4) <= {pipeline, pipeline + 2}  # shards pipeline, pipeline + 2 only
        seen.append(set(labels))
    assert not seen[0] & seen[1]


def test_more_pipelines_than_shards_is_an_error(tmp_path):
    source = TFRecordSource({"train": write_split(str(tmp_path), [3] * 4, 1)})
    fn = source.distribute_dataset_fn(
        "train", DataConfig(batch_size=4, images_per_class=2), "imagenet_mean_std", 0, 1, 0
    )
    with pytest.raises(ValueError, match="1 shards for 2 input pipelines; .* --num-shards 2"):
        fn(tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=0, num_replicas_in_sync=2))
