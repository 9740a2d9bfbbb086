"""A data source over encoded images held in memory (a dataset module's records, or user arrays).

Used for small sets and for user data already in memory; the streaming TFRecord source has the same
interface (``num_images``, ``num_classes``, ``labels``, ``train_dataset``, ``eval_dataset``,
``raw_dataset``).
"""
import numpy as np
import tensorflow as tf

from tfmetric.data import preprocessing
from tfmetric.data.balanced_batches import class_balanced_batches

AUTOTUNE = tf.data.AUTOTUNE


class MemorySource:
    """Encoded images and labels per split, all in memory.

    Args:
      splits: dict split -> (list of encoded image bytes, 1-D int labels).
    """

    def __init__(self, splits):
        self._splits = {name: (list(images), np.asarray(labels, np.int64))
                        for name, (images, labels) in splits.items()}

    @classmethod
    def from_records(cls, records_by_split):
        return cls({split: ([r.read_bytes() for r in recs], [r.label for r in recs])
                    for split, recs in records_by_split.items()})

    def _get(self, split):
        if split not in self._splits:
            raise ValueError(f"Unknown split {split!r}. Available: {', '.join(self._splits)}.")
        return self._splits[split]

    def num_images(self, split):
        return len(self._get(split)[0])

    def num_classes(self, split):
        return len(np.unique(self._get(split)[1]))

    def labels(self, split):
        return self._get(split)[1]

    def train_dataset(self, split, data_config, normalization, epoch, steps, seed):
        """One epoch of ``steps`` augmented batches ``(images, labels)``; deterministic per (seed, epoch)."""
        images, labels = self._get(split)
        d = data_config
        if d.class_balanced:
            idx = class_balanced_batches(labels, d.batch_size, d.images_per_class, steps,
                                         seed=(seed, epoch), replace=d.sample_with_replacement)
        else:  # plain shuffled batches (the ablation of class balancing)
            rng = np.random.default_rng((seed, epoch))
            reps = -(-steps * d.batch_size // len(labels))
            idx = np.concatenate([rng.permutation(len(labels)) for _ in range(reps)])
            idx = idx[:steps * d.batch_size].reshape(steps, d.batch_size)
        idx = idx.reshape(-1)
        image_table = tf.constant(images)
        label_table = tf.constant(labels)
        # Per-image augmentation seeds: stateless, so parallel map stays deterministic.
        aug_seeds = np.stack([np.full(len(idx), seed * 1_000_003 + epoch, np.int64),
                              np.arange(len(idx), dtype=np.int64)], axis=1)

        def load(i, s):
            x = preprocessing.train_preprocess(tf.gather(image_table, i), s, d.image_size,
                                               d.resize_size, normalization)
            return x, tf.gather(label_table, i)

        ds = tf.data.Dataset.from_tensor_slices((idx, aug_seeds))
        ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
        return ds.batch(d.batch_size, drop_remainder=True).prefetch(AUTOTUNE)

    def raw_dataset(self, split):
        """``(image_bytes, label)`` of every image of the split, unbatched, in order."""
        images, labels = self._get(split)
        return tf.data.Dataset.from_tensor_slices((tf.constant(images, tf.string), labels))

    def eval_dataset(self, split, data_config, normalization):
        """``(images, labels)`` batches of the split in order, with evaluation preprocessing."""
        images, labels = self._get(split)
        d = data_config
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(images), labels))
        ds = ds.map(lambda b, y: (preprocessing.eval_preprocess(b, d.image_size, d.resize_size,
                                                                normalization), y),
                    num_parallel_calls=AUTOTUNE, deterministic=True)
        if d.cache:
            ds = ds.cache()
        return ds.batch(d.eval_batch_size).prefetch(AUTOTUNE)
