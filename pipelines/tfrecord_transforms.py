"""The steps of ``build_tfrecords``: check each class's images, assign shards, write shards.

The job moves group keys and small metadata, never image bytes: a worker reads (or, for generated
datasets, renders) one class's images and checks them, and only their header facts travel on
(``ClassCheck``); the worker that writes a shard reads the bytes again, verified by CRC-32 against
the first read. Images that cannot be kept are listed in ``ClassCheck.skipped`` with path and
reason, and every listed image (kept or not) contributes a fingerprint line, so the manifest says
exactly which input it was built from.

Every step has one output (no tagged side outputs) and no side inputs, so the job runs the same
on every Beam runner, the DaskRunner included (see the README, "Speed and scale").
"""

import collections
import hashlib
import logging
import os
import zlib

import apache_beam as beam
import tensorflow as tf
from apache_beam.metrics import Metrics

from pipelines.job_output import shard_path
from tfmetric import datasets
from tfmetric.data import image_header, schema
from tfmetric.data.class_index import RECORD_OVERHEAD

NAMESPACE = "build_tfrecords"
MISSING, UNREADABLE, BAD_NAME = "missing", "unreadable", "bad_file_name"

# One kept image: its header facts, and the CRC-32 the writer checks its second read against.
CheckedImage = collections.namedtuple("CheckedImage", "image_id format height width crc32 reencoded")
# One class: the listed records (no bytes unless in memory), its kept images, skipped entries and
# fingerprint lines; ``label`` is the dataset's label until shards are assigned.
ClassCheck = collections.namedtuple("ClassCheck", "split label class_name records images skipped fingerprints")

_LOG = logging.getLogger(__name__)
_PROGRESS_EVERY = 1000


def printable_path(path):
    """``path`` with the bytes of a non-UTF-8 file name (surrogate-escaped by os.listdir) as ``\\xff``."""
    if path is None:
        return None
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def shard_name(split: str, index: int, num_shards: int) -> str:
    return shard_path(split, index, num_shards, ".tfrecord")


class ClassRecords(tuple):
    """One class's listed records: a tuple that Beam's default coder pickles as one object (it
    encodes a plain tuple element by element, pickling every record on its own, at each shuffle)."""

    __slots__ = ()


def class_units(records: dict) -> list:
    """dict split -> ImageRecords -> one ClassRecords per (split, label), in listing order."""
    units = collections.defaultdict(list)
    for split in sorted(records):
        for record in records[split]:
            units[(split, record.label)].append(record)
    return [ClassRecords(unit) for _, unit in sorted(units.items())]


class ClassReader:
    """Bytes of one class's records: in memory, from their path (any filesystem TensorFlow reads), or
    rendered by the dataset module's ``generate_class`` (generated datasets list no bytes).

    Args:
      dataset: the dataset name, for ``generate_class``.
    """

    def __init__(self, dataset: str):
        self._dataset = dataset

    def read(self, records, wanted=None):
        """[(record, bytes or None, (reason, detail) or None)] for the records whose id is in
        ``wanted`` (default all), in the order of ``records`` (one class's, in listing order)."""
        if records and records[0].path is None and records[0].data is None:
            encoded = datasets.get_dataset(self._dataset).generate_class(records[0].class_name)
            if len(encoded) != len(records):
                raise RuntimeError(
                    f"{self._dataset}.generate_class({records[0].class_name!r}) gave "
                    f"{len(encoded)} images for {len(records)} listed ones"
                )
            return [(r, data, None) for r, data in zip(records, encoded) if wanted is None or r.image_id in wanted]
        return [self._read_one(r) for r in records if wanted is None or r.image_id in wanted]

    @staticmethod
    def _read_one(record):
        if record.data is not None:
            return record, record.data, None
        # Local files through Python's own file object: TensorFlow's costs more per file, and
        # every image is read twice (check, then write).
        local = "://" not in record.path
        try:
            with open(record.path, "rb") if local else tf.io.gfile.GFile(record.path, "rb") as f:
                return record, f.read(), None
        except (tf.errors.NotFoundError, FileNotFoundError):
            return record, None, (MISSING, "listed in the annotations but not on disk")
        except (tf.errors.OpError, OSError) as e:
            return record, None, (UNREADABLE, str(e).splitlines()[0] if str(e) else repr(e))


class CheckClassFn(beam.DoFn):
    """Records of one class -> its ``ClassCheck`` (header facts of the kept images, no bytes).

    Args:
      dataset: the dataset name (generated datasets render the class here).
      max_pixels: images whose header announces more pixels are skipped without decoding.
    """

    def __init__(self, dataset: str, max_pixels: int):
        self._dataset, self._max_pixels = dataset, max_pixels

    def setup(self):
        self._reader = ClassReader(self._dataset)
        self._read = Metrics.counter(NAMESPACE, "images_read")
        self._reencoded = Metrics.counter(NAMESPACE, "images_reencoded")
        self._skipped = {}
        self._seen = 0

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
        kept, skipped, fingerprints = [], [], []
        readable = []
        for record in records:  # a name that is not UTF-8 cannot be opened by TensorFlow's file API
            if record.path is not None and printable_path(record.path) != record.path:
                self._read.inc()
                fingerprints.append(f"{record.split}\t{record.class_name}\t{record.image_id}\t{BAD_NAME}")
                skipped.append(
                    self._skip(record, BAD_NAME, "the file name is not valid UTF-8; rename the file to keep it")
                )
            else:
                readable.append(record)
        for record, data, error in self._reader.read(readable):
            self._read.inc()
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
            if info.reencoded:
                self._reencoded.inc()
            kept.append(
                CheckedImage(record.image_id, info.format, info.height, info.width, zlib.crc32(data), info.reencoded)
            )
        first = records[0]
        yield ClassCheck(
            first.split,
            first.label,
            first.class_name,
            tuple(readable),
            tuple(kept),
            tuple(skipped),
            tuple(fingerprints),
        )


def by_label_space(check: ClassCheck, label_spaces: dict):
    """(label space, ``check`` without its skipped entries and fingerprint lines): those go to the
    summary on their own, and the shard shuffles carry only what the writers need."""
    return label_spaces.get(check.split, check.split), check._replace(skipped=(), fingerprints=())


def assign_shards(space_and_checks, shards_per_split: dict):
    """(label space, its ClassChecks) -> ((split, shard index, num shards), ClassCheck relabelled).

    A label space is a split, or several splits that share their labels (In-Shop query and
    gallery): the classes that kept images in any of its splits are relabelled contiguously, in
    the dataset's label order, over their union, so one class keeps one label in all of them
    whatever images were skipped. Within each split the classes go round-robin over
    ``min(shards, classes)`` shards, so every shard holds whole classes and the classes are spread
    evenly.
    """
    _, checks = space_and_checks
    kept = [c for c in checks if c.images]
    mapping = {old: new for new, old in enumerate(sorted({c.label for c in kept}))}
    for split in sorted({c.split for c in kept}):
        classes = sorted((c for c in kept if c.split == split), key=lambda c: c.label)
        num_shards = max(1, min(shards_per_split[split], len(classes)))
        for rank, check in enumerate(classes):
            yield (split, rank % num_shards, num_shards), check._replace(label=mapping[check.label])


class WriteShardFn(beam.DoFn):
    """((split, index, num_shards), ClassChecks) -> one TFRecord file, records sorted by (label, id).

    Reads each kept image again (or renders its class again) and fails if the bytes differ from
    the checked ones. Sorting makes a re-run over the same input byte-identical whatever order the
    runner delivers.

    Args:
      output_dir: the staging directory; the shard goes to ``<output_dir>/<split>/``.
      dataset: the dataset name (generated datasets render the class here).
      max_pixels: the check's pixel limit, for images that are re-encoded.
    """

    def __init__(self, output_dir: str, dataset: str, max_pixels: int):
        self._output_dir, self._dataset, self._max_pixels = output_dir, dataset, max_pixels

    def setup(self):
        self._reader = ClassReader(self._dataset)
        self._written = Metrics.counter(NAMESPACE, "images_written")
        self._shards = Metrics.counter(NAMESPACE, "shards_written")

    def _encoded(self, record, data, error, checked):
        if error is not None or zlib.crc32(data) != checked.crc32:
            raise RuntimeError(
                f"{record.path or record.image_id} changed while the job ran "
                f"({error[1] if error else 'different bytes'}); run the job again."
            )
        return image_header.inspect_image(data, self._max_pixels).encoded if checked.reencoded else data

    def process(self, element):
        (split, index, num_shards), checks = element
        rel_path = f"{split}/{shard_name(split, index, num_shards)}"
        path = os.path.join(self._output_dir, rel_path)
        tf.io.gfile.makedirs(os.path.dirname(path))
        checks = sorted(checks, key=lambda c: c.label)
        count, offset, runs, class_offsets = 0, 0, [], []
        with tf.io.TFRecordWriter(path) as writer:
            for check in checks:
                kept = {im.image_id: im for im in check.images}
                read = {
                    r.image_id: (r, data, error) for r, data, error in self._reader.read(check.records, wanted=kept)
                }
                class_offsets.append(offset)  # where the class starts, so the sampler can seek to it
                for image_id in sorted(kept):
                    im = kept[image_id]
                    record = schema.serialize_example(
                        self._encoded(*read[image_id], im),
                        im.format,
                        im.height,
                        im.width,
                        check.label,
                        check.class_name,
                        image_id,
                    )
                    writer.write(record)
                    offset += len(record) + RECORD_OVERHEAD
                count += len(kept)
                runs.append([check.label, len(kept)])  # one run per class, in file order
        self._written.inc(count)
        self._shards.inc()
        yield {
            "split": split,
            "index": index,
            "path": rel_path,
            "num_images": count,
            "num_classes": len(runs),
            "class_runs": runs,
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
