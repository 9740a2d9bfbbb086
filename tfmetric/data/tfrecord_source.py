"""A data source streaming class-grouped TFRecord shards (what training reads).

The trainer's interface to data: ``num_images``, ``num_classes``, ``labels``, ``train_dataset``,
``eval_dataset``, ``raw_dataset``, and ``distribute_dataset_fn`` for ``tf.distribute``. Training
batches come from ``ClassBalancedSampler`` (``ShuffledSampler`` for the ablation): memory is
bounded by a few batches, whatever the split's size. Evaluation and ``raw_dataset`` read the split's
shards in manifest order, record by record, so their order (and ``labels(split)``) is deterministic.
"""

import tensorflow as tf

from tfmetric.data import manifest as manifest_lib
from tfmetric.data import preprocessing, schema
from tfmetric.data.class_index import ClassIndex
from tfmetric.data.class_sampler import ClassBalancedSampler, ShuffledSampler
from tfmetric.data.keyed_random import stateless_seed
from tfmetric.data.record_reader import RAW_SPEC

AUTOTUNE = tf.data.AUTOTUNE
PREFETCH_BATCHES = 2
_AUGMENT = 14  # domain tag of the augmentation stream (the sampler's tags are 11-13)


def _parse_raw(serialized):
    features = tf.io.parse_single_example(serialized, RAW_SPEC)
    return features[schema.ENCODED], features[schema.LABEL]


def _parse_named(serialized):
    features = tf.io.parse_single_example(
        serialized, dict(RAW_SPEC, **{schema.CLASS_NAME: tf.io.FixedLenFeature([], tf.string, b"")})
    )
    return features[schema.ENCODED], features[schema.LABEL], features[schema.CLASS_NAME]


def augmentation_key(seed, epoch, pipeline=0):
    """The int64 key of one epoch's augmentation on input pipeline ``pipeline``; one device reads
    as pipeline 0.

    Pipeline 0 keeps the stream the README's published figures were measured with
    (``seed * 1_000_003 + epoch``), so they stay reproducible; other pipelines draw their keys from
    keyed_random, so they never collide with it or with each other.
    """
    if pipeline == 0:
        return seed * 1_000_003 + epoch
    return stateless_seed(seed, _AUGMENT, epoch, pipeline)


def augment(batches, data_config, normalization, batch_size, seed_key):
    """``(image_bytes [B], labels [B])`` batches -> augmented ``(images, labels)`` batches.

    Images are decoded in parallel (deterministic order); the augmentation of the i-th image is
    seeded by ``(seed_key, i)`` (``seed_key``: ``augmentation_key``), so a run is reproducible
    however many threads decode.
    """
    d = data_config

    def load(i, example):
        image_bytes, label = example
        seed = tf.stack([tf.cast(seed_key, tf.int64), i])
        return preprocessing.train_preprocess(image_bytes, seed, d.image_size, d.resize_size, normalization), label

    ds = batches.unbatch().enumerate().map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    return ds.batch(batch_size, drop_remainder=True).prefetch(PREFETCH_BATCHES)


def per_replica_batch_size(input_context, batch_size, images_per_class):
    """The batch of one replica; ValueError unless it is a whole number of classes."""
    per_replica = input_context.get_per_replica_batch_size(batch_size)
    if per_replica % images_per_class:
        raise ValueError(
            f"data.batch_size {batch_size} over {input_context.num_replicas_in_sync} replicas gives "
            f"{per_replica} images per replica, not a multiple of data.images_per_class "
            f"({images_per_class}); every replica must receive whole classes."
        )
    return per_replica


class TFRecordSource:
    """Class-grouped TFRecord shards per split (see ARCHITECTURE.md, "Data contracts").

    Args:
      shards: dict split -> shard paths, in manifest order.
      num_images, num_classes: dict split -> count (from the manifest); scanned when missing.
      cycle_length: classes the sampler reads at the same time.
      class_runs: dict split -> per shard ``([[label, count], ...], [byte offset, ...])`` (the
        manifest's record of where each class is); splits without it are indexed by reading
        their labels once.
      num_labels: dict split -> size of its label space, where it exceeds its class count (a
        label space shared with another split, e.g. In-Shop query and gallery).
    """

    def __init__(self, shards, num_images=None, num_classes=None, cycle_length=8, class_runs=None, num_labels=None):
        self._shards = {split: list(paths) for split, paths in shards.items()}
        self._class_runs = dict(class_runs or {})
        self._num_images = dict(num_images or {})
        self._num_classes = dict(num_classes or {})
        self._num_labels = dict(num_labels or {})
        self._cycle_length = cycle_length
        self._indexes, self._samplers = {}, {}

    @classmethod
    def from_manifest(cls, manifest, data_dir, **kwargs):
        """The source of a validated manifest (``tfmetric.data.manifest.load_manifest``)."""
        dataset, splits = manifest["dataset"], manifest["splits"]
        runs = {
            s: ([shard["class_runs"] for shard in info["shards"]], [shard["class_offsets"] for shard in info["shards"]])
            for s, info in splits.items()
            if all("class_offsets" in shard for shard in info["shards"])
        }  # older manifests lack them
        return cls(
            {s: manifest_lib.shard_paths(data_dir, dataset, s, manifest) for s in splits},
            {s: info["num_images"] for s, info in splits.items()},
            {s: info["num_classes"] for s, info in splits.items()},
            class_runs=runs,
            num_labels={s: info["num_labels"] for s, info in splits.items() if "num_labels" in info},
            **kwargs,
        )

    def _paths(self, split):
        if split not in self._shards:
            raise ValueError(f"Unknown split {split!r}. Available: {', '.join(self._shards)}.")
        return self._shards[split]

    def index(self, split):
        """The split's ClassIndex (cached): from the manifest's class runs when it has them, else
        one pass over the labels of every shard, checking the class grouping."""
        if split not in self._indexes:
            counts = self._num_classes.get(split), self._num_labels.get(split)
            if split in self._class_runs:
                index = ClassIndex.from_runs(self._paths(split), *self._class_runs[split], *counts)
            else:
                index = ClassIndex.scan(self._paths(split), *counts)
            self._indexes[split] = index
        return self._indexes[split]

    def num_images(self, split):
        self._paths(split)
        return self._num_images[split] if split in self._num_images else self.index(split).num_images

    def num_classes(self, split):
        self._paths(split)
        return self._num_classes[split] if split in self._num_classes else self.index(split).num_classes

    def labels(self, split):
        """Labels in the order of ``eval_dataset`` / ``raw_dataset``."""
        return self.index(split).labels()

    def _index(self, split, shard_ids=None):
        """The split's index, or its restriction to ``shard_ids`` (one input pipeline's shards)."""
        index = self.index(split)
        return index if shard_ids is None else index.subset(list(shard_ids))

    def sampler(self, split, data_config, seed, batch_size, shard_ids=None):
        """The (cached) sampler the config asks for: ClassBalancedSampler, or ShuffledSampler with
        ``data.class_balanced=false``; with ``data.cache`` it gathers batches from the split's
        encoded images held in memory instead of reading the shards."""
        d = data_config
        key = (
            split,
            batch_size,
            d.class_balanced,
            d.images_per_class,
            d.sample_with_replacement,
            d.cache,
            seed,
            None if shard_ids is None else tuple(shard_ids),
        )
        if key not in self._samplers:
            index = self._index(split, shard_ids)
            self._samplers[key] = (
                ClassBalancedSampler(
                    index,
                    batch_size,
                    d.images_per_class,
                    replace=d.sample_with_replacement,
                    seed=seed,
                    cycle_length=self._cycle_length,
                    in_memory=d.cache,
                )
                if d.class_balanced
                else ShuffledSampler(index, batch_size, seed=seed, cycle_length=self._cycle_length, in_memory=d.cache)
            )
        return self._samplers[key]

    def steps_per_epoch(self, split, global_batch, steps=0):
        """Training steps of an epoch: ``steps`` if given, else the official ``num_images // batch``."""
        return steps or max(1, self.num_images(split) // global_batch)

    def train_batches(self, split, data_config, epoch, steps, seed):
        """The ``(image_bytes, labels)`` batches ``train_dataset`` decodes (one replica)."""
        return self.sampler(split, data_config, seed, data_config.batch_size).batches(epoch, steps)

    def train_dataset(self, split, data_config, normalization, epoch, steps, seed):
        """One epoch of ``steps`` augmented class-balanced batches ``(images, labels)``; ``epoch`` is
        an int or an int64 scalar tensor."""
        batches = self.train_batches(split, data_config, epoch, steps, seed)
        return augment(batches, data_config, normalization, data_config.batch_size, augmentation_key(seed, epoch))

    def train_epochs(self, split, data_config, normalization, first_epoch, end_epoch, steps, seed):
        """Epochs ``first_epoch..end_epoch-1`` of ``train_dataset``, one after the other, as one dataset.

        The same batches as building each epoch's dataset on its own, but built, optimized and
        started once: a new dataset per epoch costs over a second of tracing and graph rewriting
        (the sampler's keyed draws are thousands of ops), and its first batches start cold.
        """
        sampler = self.sampler(split, data_config, seed, data_config.batch_size)  # built eagerly, outside the trace
        if sampler.in_memory:
            sampler.records()  # read eagerly: the trace below cannot iterate the shards
        epochs = tf.data.Dataset.range(first_epoch, end_epoch)
        return epochs.flat_map(lambda epoch: self.train_dataset(split, data_config, normalization, epoch, steps, seed))

    def distribute_dataset_fn(self, split, data_config, normalization, epoch, steps, seed):
        """``fn(input_context)`` for ``strategy.distribute_datasets_from_function``.

        Each replica gets batches of ``batch_size / num_replicas`` images made of whole classes
        (ValueError otherwise). With several input pipelines (hosts), pipeline i reads shards
        i, i + n, ... and so sees only its own classes: no input is shared or duplicated.
        """

        def dataset_fn(input_context):
            d = data_config
            per_replica = per_replica_batch_size(input_context, d.batch_size, d.images_per_class)
            pipelines, pipeline = input_context.num_input_pipelines, input_context.input_pipeline_id
            replicas_here = input_context.num_replicas_in_sync // pipelines
            shard_ids = None
            if pipelines > 1:
                paths = self._paths(split)
                if len(paths) < pipelines:
                    raise ValueError(
                        f"Split {split!r} has {len(paths)} shards for {pipelines} input "
                        f"pipelines; rebuild it with at least --num-shards {pipelines}."
                    )
                shard_ids = range(pipeline, len(paths), pipelines)
            batches = self.sampler(split, d, seed, per_replica, shard_ids).batches(epoch, steps * replicas_here)
            return augment(batches, d, normalization, per_replica, augmentation_key(seed, epoch, pipeline))

        return dataset_fn

    def raw_dataset(self, split, names=False):
        """``(image_bytes, label)`` of every image of the split, unbatched, in file order;
        ``(image_bytes, label, class_name)`` with ``names``."""
        ds = tf.data.TFRecordDataset(self._paths(split))  # one shard after the other, in order
        return ds.map(_parse_named if names else _parse_raw, num_parallel_calls=AUTOTUNE, deterministic=True)

    def eval_dataset(self, split, data_config, normalization):
        """``(images, labels)`` batches of the split in file order, with evaluation preprocessing."""
        d = data_config
        ds = self.raw_dataset(split).map(
            lambda b, y: (preprocessing.eval_preprocess(b, d.image_size, d.resize_size, normalization), y),
            num_parallel_calls=AUTOTUNE,
            deterministic=True,
        )
        if d.cache:
            ds = ds.cache()
        return ds.batch(d.eval_batch_size).prefetch(AUTOTUNE)
