"""The DoFns of ``build_tfrecords``: read and check images, relabel and assign shards, write shards.

Images travel as ``CheckedImage`` tuples; an image that cannot be kept goes to the ``skipped``
output with its path and reason instead, and every listed image (kept or not) contributes a line
to the ``fingerprint`` output, so the manifest can say exactly which input it was built from.
"""
import collections
import hashlib
import itertools
import logging
import os

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics import Metrics

from tfmetric.data import image_header, schema

NAMESPACE = "build_tfrecords"
SKIPPED = "skipped"
FINGERPRINT = "fingerprint"
MISSING, UNREADABLE, BAD_NAME = "missing", "unreadable", "bad_file_name"

CheckedImage = collections.namedtuple(
    "CheckedImage", "split label class_name image_id format height width encoded")

_LOG = logging.getLogger(__name__)
_PROGRESS_EVERY = 1000


def printable_path(path):
    """``path`` with the bytes of a non-UTF-8 file name (surrogate-escaped by os.listdir) as ``\\xff``."""
    if path is None:
        return None
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def shard_name(split: str, index: int, num_shards: int) -> str:
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


class ReadImageFn(beam.DoFn):
    """ImageRecord -> CheckedImage, or a ``skipped`` entry naming the file and the reason.

    Args:
      max_pixels: images whose header announces more pixels are skipped without decoding.
    """

    def __init__(self, max_pixels: int):
        self._max_pixels = max_pixels

    def setup(self):
        self._read = Metrics.counter(NAMESPACE, "images_read")
        self._reencoded = Metrics.counter(NAMESPACE, "images_reencoded")
        self._skipped = {}
        self._seen = 0

    def _skip(self, record, reason, detail):
        if reason not in self._skipped:
            self._skipped[reason] = Metrics.counter(NAMESPACE, f"skipped_{reason}")
        self._skipped[reason].inc()
        _LOG.warning("Skipping %s (%s): %s", record.path or record.image_id, reason, detail)
        return beam.pvalue.TaggedOutput(SKIPPED, {
            "split": record.split, "image_id": record.image_id, "path": printable_path(record.path),
            "class_name": record.class_name, "reason": reason, "detail": detail})

    def _load(self, record):
        if record.data is not None:
            return record.data
        with tf.io.gfile.GFile(record.path, "rb") as f:  # local paths, gs://, ...
            return f.read()

    def process(self, record):
        self._read.inc()
        self._seen += 1
        if self._seen % _PROGRESS_EVERY == 0:
            _LOG.info("This worker has read %d images", self._seen)
        key = f"{record.split}\t{record.class_name}\t{record.image_id}"
        if record.path is not None and printable_path(record.path) != record.path:
            yield beam.pvalue.TaggedOutput(FINGERPRINT, f"{key}\t{BAD_NAME}")
            yield self._skip(record, BAD_NAME, "the file name is not valid UTF-8; rename the file to keep it")
            return
        try:
            data = self._load(record)
        except tf.errors.NotFoundError:
            yield beam.pvalue.TaggedOutput(FINGERPRINT, f"{key}\t{MISSING}")
            yield self._skip(record, MISSING, "listed in the annotations but not on disk")
            return
        except (tf.errors.OpError, OSError) as e:
            yield beam.pvalue.TaggedOutput(FINGERPRINT, f"{key}\t{UNREADABLE}")
            yield self._skip(record, UNREADABLE, str(e).splitlines()[0] if str(e) else repr(e))
            return
        yield beam.pvalue.TaggedOutput(FINGERPRINT, f"{key}\t{hashlib.sha256(data).hexdigest()}")
        try:
            info = image_header.inspect_image(data, self._max_pixels)
        except image_header.ImageError as e:
            yield self._skip(record, e.reason, e.detail)
            return
        if info.reencoded:
            self._reencoded.inc()
        yield CheckedImage(record.split, record.label, record.class_name, record.image_id,
                           info.format, info.height, info.width, info.encoded)


def label_map(split_and_labels):
    """(split, labels with images) -> (split, {parser label: contiguous label})."""
    split, labels = split_and_labels
    return split, {old: new for new, old in enumerate(sorted(labels))}


class AssignShardFn(beam.DoFn):
    """Relabels contiguously over the classes that kept images and keys each image by its shard.

    Classes go round-robin over ``min(shards, classes)`` shards, so every shard holds whole
    classes and the classes are spread evenly.

    Args:
      shards_per_split: dict split -> requested number of shards.
    """

    def __init__(self, shards_per_split: dict):
        self._shards_per_split = dict(shards_per_split)

    def process(self, image, label_maps):
        mapping = label_maps[image.split]
        label = mapping[image.label]
        num_shards = max(1, min(self._shards_per_split[image.split], len(mapping)))
        yield (image.split, label % num_shards, num_shards), image._replace(label=label)


class WriteShardFn(beam.DoFn):
    """((split, index, num_shards), images) -> one TFRecord file, records sorted by (label, id).

    Sorting makes a re-run over the same input byte-identical whatever order the runner delivers.

    Args:
      output_dir: the staging directory; the shard goes to ``<output_dir>/<split>/``.
    """

    def __init__(self, output_dir: str):
        self._output_dir = output_dir

    def setup(self):
        self._written = Metrics.counter(NAMESPACE, "images_written")
        self._shards = Metrics.counter(NAMESPACE, "shards_written")

    def process(self, element):
        (split, index, num_shards), images = element
        images = sorted(images, key=lambda im: (im.label, im.image_id))
        rel_path = f"{split}/{shard_name(split, index, num_shards)}"
        path = os.path.join(self._output_dir, rel_path)
        tf.io.gfile.makedirs(os.path.dirname(path))
        with tf.io.TFRecordWriter(path) as writer:
            for im in images:
                writer.write(schema.serialize_example(im.encoded, im.format, im.height, im.width,
                                                      im.label, im.class_name, im.image_id))
        self._written.inc(len(images))
        self._shards.inc()
        # One run per class, in file order (the records are sorted by label).
        runs = [[label, sum(1 for _ in run)]
                for label, run in itertools.groupby(images, key=lambda im: im.label)]
        yield {"split": split, "index": index, "path": rel_path, "num_images": len(images),
               "num_classes": len(runs), "class_runs": runs}


class FingerprintFn(beam.CombineFn):
    """Order-independent SHA-256 over one line per listed image (split, class, id, content hash)."""

    def create_accumulator(self):
        return []

    def add_input(self, accumulator, line):
        accumulator.append(line)
        return accumulator

    def merge_accumulators(self, accumulators):
        return [line for acc in accumulators for line in acc]

    def extract_output(self, accumulator):
        digest = hashlib.sha256()
        for line in sorted(accumulator):
            digest.update(line.encode("utf-8") + b"\n")
        return f"sha256:{digest.hexdigest()}"
