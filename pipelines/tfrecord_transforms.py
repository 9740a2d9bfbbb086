"""The steps of ``build_tfrecords``: convert each class, assign shards, write shards.

The job moves group keys and small metadata, never image bytes: a worker reads (or, for generated
datasets, renders) one class's images once, checks each, and writes the kept ones as records into
the class's fragment, a TFRecord file in the staging directory; only the fragment's name and size
travel on (``ClassCheck``). The worker that writes a shard concatenates its classes' fragments.
Images that cannot be kept are listed in ``ClassCheck.skipped`` with path and reason, and every
listed image (kept or not) contributes a fingerprint line, so the manifest says exactly which
input it was built from.

Labels: ``class_records.class_units`` gives every class the label it gets in the shards if each
class keeps an image, its rank among the labels listed in its label space; fragments carry that
label. A class that keeps no image shifts the labels after it, and only the shards holding such
classes are rewritten record by record with the new labels (``WriteShardFn``); the others are
byte copies.

Every step has one output (no tagged side outputs) and no side inputs, so the job runs the same
on every Beam runner, the DaskRunner included (see the README, "Speed and scale").
"""

import collections
import hashlib
import logging
import os

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics import Metrics

from pipelines.class_records import ClassReader, open_file, printable_path
from pipelines.job_output import shard_path, written_atomically
from tfmetric.data import image_header, schema
from tfmetric.data.class_index import RECORD_OVERHEAD

NAMESPACE = "build_tfrecords"
# Where the fragments go inside the staging directory; the launcher deletes it before the output
# is complete (fragments_dir).
FRAGMENTS = "_fragments"
_COPY_CHUNK = 4 << 20

# One class after conversion: ``label`` is the one its fragment's records carry; ``fragment`` is
# the fragment's path relative to the staging directory, holding ``num_images`` records (perhaps
# none) in ``num_bytes`` bytes; then its skipped entries and fingerprint lines.
ClassCheck = collections.namedtuple(
    "ClassCheck", "split label class_name fragment num_images num_bytes skipped fingerprints"
)

_LOG = logging.getLogger(__name__)
_PROGRESS_EVERY = 1000


def shard_name(split: str, index: int, num_shards: int) -> str:
    return shard_path(split, index, num_shards, ".tfrecord")


def fragments_dir(staging: str) -> str:
    return os.path.join(staging, FRAGMENTS)


def fragment_name(split: str, label: int) -> str:
    return f"{FRAGMENTS}/{split}/class-{label:06d}.tfrecord"


class CheckClassFn(beam.DoFn):
    """Records of one class -> its ``ClassCheck``; the kept images go into the class's fragment.

    Args:
      staging: the staging directory; the fragment goes to ``<staging>/<fragment_name>``.
      dataset: the dataset name (generated datasets render the class here).
      max_pixels: images whose header announces more pixels are skipped without decoding.
    """

    def __init__(self, staging: str, dataset: str, max_pixels: int):
        self._staging, self._dataset, self._max_pixels = staging, dataset, max_pixels

    def setup(self):
        self._reader = ClassReader(self._dataset)
        self._read = Metrics.counter(NAMESPACE, "images_read")
        self._reencoded = Metrics.counter(NAMESPACE, "images_reencoded")
        self._skipped = {}
        self._seen = 0
        self._directories = set()

    def _skip(self, record, reason, detail):
        if reason not in self._skipped:
            self._skipped[reason] = Metrics.counter(NAMESPACE, f"skipped_{reason}")
        self._skipped[reason].inc()
        _LOG.warning("Skipping %s (%s): %s", printable_path(record.path) or record.image_id, reason, detail)
        return {
            "split": record.split,
            "image_id": record.image_id,
            "path": printable_path(record.path),
            "class_name": record.class_name,
            "reason": reason,
            "detail": detail,
        }

    def process(self, records):
        first = records[0]
        fragment = fragment_name(first.split, first.label)
        path = os.path.join(self._staging, fragment)
        if os.path.dirname(path) not in self._directories:
            tf.io.gfile.makedirs(os.path.dirname(path))
            self._directories.add(os.path.dirname(path))
        skipped, fingerprints = [], []
        num_images = num_bytes = reencoded = 0
        with written_atomically(path) as temporary, tf.io.TFRecordWriter(temporary) as writer:
            for record, data, error in self._reader.read(records):
                self._seen += 1
                if self._seen % _PROGRESS_EVERY == 0:
                    _LOG.info("This worker has read %d images", self._seen)
                key = f"{record.split}\t{record.class_name}\t{record.image_id}"
                if error is not None:
                    fingerprints.append(f"{key}\t{error[0]}")
                    skipped.append(self._skip(record, *error))
                    continue
                fingerprints.append(f"{key}\t{hashlib.sha256(data).hexdigest()}")
                try:
                    info = image_header.inspect_image(data, self._max_pixels)
                except image_header.ImageError as e:
                    skipped.append(self._skip(record, e.reason, e.detail))
                    continue
                reencoded += info.reencoded
                encoded = schema.serialize_example(
                    info.encoded, info.format, info.height, info.width, record.label, record.class_name, record.image_id
                )
                writer.write(encoded)
                num_images += 1
                num_bytes += len(encoded) + RECORD_OVERHEAD
        self._read.inc(len(records))
        if reencoded:
            self._reencoded.inc(reencoded)
        yield ClassCheck(
            first.split,
            first.label,
            first.class_name,
            fragment,
            num_images,
            num_bytes,
            tuple(skipped),
            tuple(fingerprints),
        )


def by_label_space(check: ClassCheck, label_spaces: dict):
    """(label space, ``check`` without its skipped entries and fingerprint lines): those go to the
    summary on their own, and the shard shuffles carry only what the writers need."""
    return label_spaces.get(check.split, check.split), check._replace(skipped=(), fingerprints=())


def assign_shards(space_and_checks, shards_per_split: dict):
    """(label space, its ClassChecks) -> ((split, shard index, num shards), (label, ClassCheck)).

    A label space is a split, or several splits that share their labels (In-Shop query and
    gallery): the classes that kept images in any of its splits are labelled contiguously, in
    the dataset's label order, over their union, so one class keeps one label in all of them
    whatever images were skipped (the label of its fragment unless a class before it kept none).
    Within each split the classes go round-robin over ``min(shards, classes)`` shards, so every
    shard holds whole classes and the classes are spread evenly.
    """
    _, checks = space_and_checks
    kept = [c for c in checks if c.num_images]
    mapping = {old: new for new, old in enumerate(sorted({c.label for c in kept}))}
    for split in sorted({c.split for c in kept}):
        classes = sorted((c for c in kept if c.split == split), key=lambda c: c.label)
        num_shards = max(1, min(shards_per_split[split], len(classes)))
        for rank, check in enumerate(classes):
            yield (split, rank % num_shards, num_shards), (mapping[check.label], check)


def _copy(source, destination) -> int:
    """Copies file object ``source`` to ``destination`` in chunks; returns the bytes copied."""
    copied = 0
    while chunk := source.read(_COPY_CHUNK):
        destination.write(chunk)
        copied += len(chunk)
    return copied


class WriteShardFn(beam.DoFn):
    """((split, index, num_shards), [(label, ClassCheck)]) -> one TFRecord file of those classes in
    label order, each class's records in image id order (as in its fragment).

    Where every class keeps the label of its fragment, the shard is the fragments' bytes end to
    end; otherwise it is rewritten record by record with the new labels (``schema.relabel``). The
    sort makes a re-run over the same input byte-identical whatever order the runner delivers, and
    the shard is written under a temporary name and renamed into place.

    Args:
      staging: the staging directory: the fragments are there, the shard goes to
        ``<staging>/<split>/``.
    """

    def __init__(self, staging: str):
        self._staging = staging

    def setup(self):
        self._written = Metrics.counter(NAMESPACE, "images_written")
        self._shards = Metrics.counter(NAMESPACE, "shards_written")
        self._relabelled = Metrics.counter(NAMESPACE, "shards_relabelled")

    def _concatenate(self, path, classes) -> list:
        with open_file(path, "wb") as out:
            for _, check in classes:
                fragment = os.path.join(self._staging, check.fragment)
                with open_file(fragment, "rb") as f:
                    copied = _copy(f, out)
                if copied != check.num_bytes:
                    raise RuntimeError(
                        f"{fragment} holds {copied} bytes, but {check.num_bytes} were written to it; run the job again."
                    )
        return [check.num_bytes for _, check in classes]

    def _rewrite(self, path, classes) -> list:
        sizes = []
        with tf.io.TFRecordWriter(path) as writer:
            for label, check in classes:
                size = 0
                records = tf.data.TFRecordDataset(os.path.join(self._staging, check.fragment))
                for record in records.as_numpy_iterator():
                    if label != check.label:
                        record = schema.relabel(record, label)
                    writer.write(record)
                    size += len(record) + RECORD_OVERHEAD
                sizes.append(size)
        return sizes

    def process(self, element):
        (split, index, num_shards), classes = element
        rel_path = f"{split}/{shard_name(split, index, num_shards)}"
        path = os.path.join(self._staging, rel_path)
        tf.io.gfile.makedirs(os.path.dirname(path))
        classes = sorted(classes, key=lambda c: c[0])
        relabel = any(label != check.label for label, check in classes)
        with written_atomically(path) as temporary:
            sizes = (self._rewrite if relabel else self._concatenate)(temporary, classes)
        class_offsets, offset = [], 0
        for size in sizes:  # where each class starts, so the sampler can seek to it
            class_offsets.append(offset)
            offset += size
        count = sum(check.num_images for _, check in classes)
        self._written.inc(count)
        self._shards.inc()
        if relabel:
            self._relabelled.inc()
        yield {
            "split": split,
            "index": index,
            "path": rel_path,
            "num_images": count,
            "num_classes": len(classes),
            "class_runs": [[label, check.num_images] for label, check in classes],  # one run per class, in file order
            "class_offsets": class_offsets,
        }


def summary_entries(check: ClassCheck):
    """What one class adds to the build summary: its skipped images and fingerprint lines."""
    yield "class", (check.skipped, check.fingerprints)


def fingerprint(lines) -> str:
    """Order-independent SHA-256 over one line per listed image (split, class, id, content hash)."""
    digest = hashlib.sha256()
    for line in sorted(lines):
        digest.update(line.encode("utf-8") + b"\n")
    return f"sha256:{digest.hexdigest()}"


class SummaryFn(beam.CombineFn):
    """("shard", written shard) and ("class", (skipped, fingerprint lines)) entries -> the build
    summary {"shards", "skipped", "fingerprint"} (job_output.write_summary)."""

    def create_accumulator(self):
        return [], [], []

    def add_input(self, accumulator, entry):
        kind, value = entry
        shards, skipped, lines = accumulator
        if kind == "shard":
            shards.append(value)
        else:
            skipped.extend(value[0])
            lines.extend(value[1])
        return accumulator

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for acc in accumulators:
            for into, part in zip(merged, acc):
                into.extend(part)
        return merged

    def extract_output(self, accumulator):
        shards, skipped, lines = accumulator
        return {
            "shards": sorted(shards, key=lambda s: (s["split"], s["index"])),
            "skipped": sorted(skipped, key=lambda s: (s["split"], s["image_id"])),
            "fingerprint": fingerprint(lines),
        }
