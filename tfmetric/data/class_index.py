"""Where every class of a split lives in its class-grouped TFRecord shards.

``pipelines.build_tfrecords`` writes each class as one contiguous run of records inside one shard
and records, per shard, the runs (``class_runs``: ``[label, count]`` in file order) and the byte
offset of each run's first record (``class_offsets``). With both, the sampler can read any class
directly: it opens the shard at the class's offset and reads only that class's records. Shards
without that record (older manifests, or shards written by hand) are indexed by reading them once.
"""

import numpy as np
import tensorflow as tf

from tfmetric.data import schema
from tfmetric.datasets.base import DatasetFormatError

_INDEX_SPEC = {
    schema.LABEL: schema.FEATURE_SPEC[schema.LABEL],
    schema.CLASS_NAME: schema.FEATURE_SPEC[schema.CLASS_NAME],
}
RECORD_OVERHEAD = 16  # bytes around a record's data in a TFRecord file: length, its CRC, data CRC


class ShardLayoutError(DatasetFormatError):
    """Shards that do not hold whole classes as contiguous runs (the sampler cannot stream them)."""


class ClassIndex:
    """Where every class of a split lives: its shard, first record, image count and byte offset.

    Args:
      paths: shard paths in split order.
      runs: int64 [L, 3] rows (shard, start, count), row c for label c; count 0 for a label
        that is not in these shards (a subset of the split, or a label space shared with another
        split).
      order: the labels present, in file order (shard by shard).
      offsets: int64 [L], byte offset of class c's first record in its shard (-1 when absent).
    """

    def __init__(self, paths, runs, order, offsets):
        self.paths = list(paths)
        self.runs = np.asarray(runs, np.int64).reshape(-1, 3)
        self.order = np.asarray(order, np.int64)
        self.offsets = np.asarray(offsets, np.int64).reshape(-1)
        self.classes = np.flatnonzero(self.runs[:, 2] > 0)

    @property
    def num_classes(self):
        return len(self.classes)

    @property
    def num_images(self):
        return int(self.runs[:, 2].sum())

    def labels(self):
        """Labels of every record, in file order."""
        return np.repeat(self.order, self.runs[self.order, 2])

    def subset(self, shard_ids):
        """The index restricted to some shards (labels unchanged), e.g. one input pipeline's share."""
        keep = np.isin(self.runs[:, 0], shard_ids) & (self.runs[:, 2] > 0)
        remap = np.full(len(self.paths), -1, np.int64)
        remap[list(shard_ids)] = np.arange(len(shard_ids))
        runs = self.runs.copy()
        runs[:, 0] = remap[runs[:, 0]]
        runs[~keep] = (-1, 0, 0)
        return ClassIndex(
            [self.paths[s] for s in shard_ids],
            runs,
            [c for c in self.order if keep[c]],
            np.where(keep, self.offsets, -1),
        )

    @classmethod
    def scan(cls, paths, num_classes=None, num_labels=None, reader=tf.data.TFRecordDataset):
        """Reads the labels of every shard (not the images) and checks the class grouping.

        Raises:
          ShardLayoutError: a class is split over two shards or not contiguous inside its shard,
            or the labels are not 0..C-1 (nor C classes of 0..num_labels-1); the message names
            the shard(s) and the class.
        """
        found = {}  # label -> (shard, start, count, byte offset)
        order = []
        for s, path in enumerate(paths):
            position, byte, current = 0, 0, None
            for chunk in (
                reader(path).batch(4096).map(lambda r: (tf.io.parse_example(r, _INDEX_SPEC), tf.strings.length(r)))
            ):
                features, lengths = chunk
                labels, names = features[schema.LABEL].numpy(), features[schema.CLASS_NAME].numpy()
                ends = byte + np.cumsum(lengths.numpy() + RECORD_OVERHEAD)
                starts_b = np.r_[byte, ends[:-1]]
                starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
                for k, start in enumerate(starts):
                    stop = starts[k + 1] if k + 1 < len(starts) else len(labels)
                    label = int(labels[start])
                    if current is not None and current[0] == label:  # run continues over chunks
                        current[2] += stop - start
                        continue
                    if current is not None:
                        cls._add_run(found, order, paths, s, current)
                    current = [label, position + start, stop - start, int(starts_b[start]), names[start]]
                position += len(labels)
                byte = int(ends[-1])
            if current is not None:
                cls._add_run(found, order, paths, s, current)
        return cls._from_runs_found(paths, found, order, num_classes, num_labels)

    @classmethod
    def from_runs(cls, paths, shard_runs, shard_offsets, num_classes=None, num_labels=None):
        """The index from the converter's record of each shard's classes, without reading the shards.

        Args:
          paths: shard paths in split order.
          shard_runs: per shard, ``[[label, count], ...]`` in file order (the manifest's
            ``class_runs``, written by ``pipelines.build_tfrecords`` beside the shards).
          shard_offsets: per shard, the byte offset of each run's first record (the manifest's
            ``class_offsets``).
          num_classes: classes expected; num_labels: the size of the label space they come from
            (more than num_classes when the split shares its labels with another split).

        Raises:
          ShardLayoutError: as ``scan``, for runs that do not describe whole, contiguous classes.
        """
        if len(shard_runs) != len(paths) or len(shard_offsets) != len(paths):
            raise ShardLayoutError(
                f"{len(shard_runs)} lists of class runs and {len(shard_offsets)} of "
                f"class offsets for {len(paths)} shards."
            )
        found, order = {}, []
        for s, (runs, offsets) in enumerate(zip(shard_runs, shard_offsets)):
            if len(offsets) != len(runs):
                raise ShardLayoutError(f"{paths[s]}: {len(runs)} class runs but {len(offsets)} offsets.")
            start = 0
            for (label, count), offset in zip(runs, offsets):
                cls._add_run(found, order, paths, s, [int(label), start, int(count), int(offset), None])
                start += int(count)
        return cls._from_runs_found(paths, found, order, num_classes, num_labels)

    @classmethod
    def _from_runs_found(cls, paths, found, order, num_classes, num_labels):
        num_classes = len(found) if num_classes is None else num_classes
        num_labels = num_classes if num_labels is None else num_labels
        outside = sorted(c for c in found if c >= num_labels)
        missing = sorted(set(range(num_labels)) - set(found)) if num_labels == num_classes else []
        if missing or outside or len(found) != num_classes:
            raise ShardLayoutError(
                f"Labels of {len(paths)} shard(s) starting with {paths[0] if paths else '-'} must be "
                f"{num_classes} distinct labels of 0..{num_labels - 1}; found {len(found)}, missing "
                f"{missing[:5]}, out of range {outside[:5]}."
            )
        runs = [found.get(c, (-1, 0, 0, -1))[:3] for c in range(num_labels)]
        offsets = [found.get(c, (-1, 0, 0, -1))[3] for c in range(num_labels)]
        return cls(paths, runs, order, offsets)

    @staticmethod
    def _add_run(found, order, paths, shard, run):
        label, start, count, offset, name = run
        name = "" if name is None else f" ({name.decode('utf-8', 'replace')!r})"  # None: from runs
        if label < 0:
            raise ShardLayoutError(f"{paths[shard]}: negative label {label}{name}.")
        if label in found:
            first_shard, first_start, first_count, _ = found[label]
            if first_shard == shard:
                raise ShardLayoutError(
                    f"Class {label}{name} is not contiguous in shard {paths[shard]}: records "
                    f"{first_start}-{first_start + first_count - 1}, then again from record {start}. "
                    f"Each class must be one run of records; rebuild with pipelines.build_tfrecords."
                )
            raise ShardLayoutError(
                f"Class {label}{name} is in two shards: {paths[first_shard]} and {paths[shard]}. "
                f"Each class must sit inside one shard; rebuild with pipelines.build_tfrecords."
            )
        found[label] = (shard, start, count, offset)
        order.append(label)
