"""The transforms of ``embed_catalog``: list inputs, read and check images, RunInference, rows.

Images travel as ``ImageInput(image_id, source, data)``; ``data`` is None until the file is read.
A DoFn that can fail emits ``(OK, value)`` or ``(FAILED, failure)`` on its one output and
``outcomes`` splits them (tagged side outputs are not what every runner supports: Beam's
DaskRunner merges them into the main output). A failure is a dict (id, source, reason, detail),
counted as ``failed_<reason>`` in the ``embed_catalog`` Metrics namespace.

Each image is checked before batching (header sniff, pixel limit and a cheap decode,
``tfmetric.data.image_header.inspect_image``), because the SavedModel fails a whole batch for one
bad image; the few bad images the check lets through are still isolated by the embedder, which
retries a failed batch image by image (reason ``model_rejected``).
"""

import collections
import csv
import logging
import posixpath
import uuid

import apache_beam as beam
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from tfmetric.data import image_header, schema
from tfmetric.search import catalog, image_source
from tfmetric.search.embedder import DEFAULT_SIGNATURE, MODEL_REJECTED, SavedModelEmbedder

NAMESPACE = "embed_catalog"
OK, FAILED = "ok", "failed"
MISSING, UNREADABLE, BAD_RECORD, BAD_LINE = "missing", "unreadable", "bad_record", "bad_manifest_line"
BAD_TFRECORD = "truncated_tfrecord"
_GLOB_CHARS = "*?["

ImageInput = collections.namedtuple("ImageInput", "image_id source data")
_LOG = logging.getLogger(__name__)


def pattern_base(pattern):
    """The directory an input pattern's ids are relative to: everything before the first wildcard,
    cut at the last ``/`` (a pattern without wildcards: its directory)."""
    cut = min([pattern.find(c) for c in _GLOB_CHARS if c in pattern] or [len(pattern)])
    return pattern[: pattern.rfind("/", 0, cut) + 1]


def relative_id(path, base):
    return path[len(base) :] if base and path.startswith(base) else path


def _of_kind(outcome, kind):
    if outcome[0] == kind:
        yield outcome[1]


def outcomes(pcoll, label):
    """(the OK values, the FAILED values) of a PCollection of ``(kind, value)``."""
    return (
        pcoll | f"{label} ok" >> beam.FlatMap(_of_kind, OK),
        pcoll | f"{label} failed" >> beam.FlatMap(_of_kind, FAILED),
    )


class _FailingDoFn(beam.DoFn):
    """A DoFn whose outputs are ``(OK, value)``, or ``(FAILED, failure)`` counted per reason."""

    def setup(self):
        self._failed = {}

    def fail(self, image_id, source, reason, detail):
        if reason not in self._failed:
            self._failed[reason] = Metrics.counter(NAMESPACE, f"failed_{reason}")
        self._failed[reason].inc()
        _LOG.warning("Not embedding %s (%s): %s", source or image_id, reason, detail)
        return FAILED, {"id": image_id, "source": source, "reason": reason, "detail": detail}


class ParseManifestLineFn(_FailingDoFn):
    """(CSV image list, ``id,path`` line) -> ImageInput; relative paths are relative to the list's file.

    Blank lines and an ``id,path`` header are skipped; other lines without exactly two non-empty
    fields fail with reason ``bad_manifest_line``.
    """

    def process(self, element):
        filename, line = element
        if not line.strip():
            return
        fields = next(csv.reader([line]), [])
        if [f.strip().lower() for f in fields] == ["id", "path"]:
            return
        if len(fields) != 2 or not all(f.strip() for f in fields):
            yield self.fail(line.strip(), filename, BAD_LINE, "expected two non-empty fields: id,path")
            return
        image_id, path = (f.strip() for f in fields)
        if "://" not in path and not path.startswith("/"):
            path = posixpath.join(posixpath.dirname(filename), path)
        yield OK, ImageInput(image_id, path, None)


class ReadTFRecordFileFn(_FailingDoFn):
    """A TFRecord file's path -> ``(source, serialized record)`` for each record; a damaged file fails alone.

    The source locates the record (``tfmetric.search.image_source``: ``<path>#offset=<byte
    offset>``) so the search plot and service can read the image back. Every record is CRC-checked
    as it is read; the records before a truncated or corrupt one are kept and the file goes to the
    dead letter (reason ``truncated_tfrecord``, id and source the file's path) saying how many
    records were read, instead of failing the whole job (the framing gives no way past it).
    """

    def process(self, path):
        read = 0
        try:
            for offset, serialized in image_source.iter_records(path):
                read += 1
                yield OK, (image_source.tfrecord_source(path, offset), serialized)
        except ValueError as e:
            yield self.fail(
                path,
                path,
                BAD_TFRECORD,
                f"{str(e).splitlines()[0]}; the {read} records before it were read, the rest of the file was not",
            )
        except (OSError, tf.errors.OpError) as e:
            yield self.fail(path, path, UNREADABLE, str(getattr(e, "message", e)).splitlines()[0])


class ParseExampleFn(_FailingDoFn):
    """(source, serialized ``tf.train.Example`` of the project's schema) -> ImageInput with its bytes."""

    def process(self, element):
        source, serialized = element
        try:
            features = tf.train.Example.FromString(serialized).features.feature
            image_id = features[schema.IMAGE_ID].bytes_list.value[0].decode("utf-8")
        except Exception as e:  # any undecodable record is one failed input, not a failed job
            yield self.fail(None, source, BAD_RECORD, f"not a tf.train.Example with {schema.IMAGE_ID} ({e})")
            return
        encoded = features[schema.ENCODED].bytes_list.value
        if not encoded:
            yield self.fail(image_id, source, BAD_RECORD, f"no {schema.ENCODED} feature")
            return
        yield OK, ImageInput(image_id, source, encoded[0])


class ReadAndCheckImageFn(_FailingDoFn):
    """ImageInput -> ((id, source), encoded bytes) ready to batch, read once and checked.

    Args:
      max_pixels: images whose header declares more pixels fail undecoded (the model's limit).
    """

    def __init__(self, max_pixels):
        self._max_pixels = max_pixels

    def setup(self):
        super().setup()
        self._read = Metrics.counter(NAMESPACE, "images_read")
        self._reencoded = Metrics.counter(NAMESPACE, "images_reencoded")

    def _load(self, image):
        if image.data is not None:
            return image.data
        with FileSystems.open(image.source, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            return f.read()

    def process(self, image):
        self._read.inc()
        try:
            data = self._load(image)
        except IsADirectoryError:
            # A pattern like dir/* also matches sub-directories; they are not inputs. (A bare
            # return: Beam warns about any other return in a process method that yields.)
            return
        except Exception as e:  # filesystems raise their own types (BeamIOError, GCS errors, ...)
            message = str(e).splitlines()[0] if str(e) else repr(e)
            missing = (
                isinstance(e, FileNotFoundError) or "not found" in message.lower() or "no such file" in message.lower()
            )
            yield self.fail(image.image_id, image.source, MISSING if missing else UNREADABLE, message)
            return
        try:
            info = image_header.inspect_image(data, self._max_pixels)
        except image_header.ImageError as e:
            yield self.fail(image.image_id, image.source, e.reason, e.detail)
            return
        if info.reencoded:
            self._reencoded.inc()
        yield OK, ((image.image_id, image.source), info.encoded)


class SavedModelHandler(ModelHandler):
    """RunInference model handler: encoded images -> ``EmbedResult`` through a SavedModel signature.

    Loads with ``tf.saved_model.load`` (``SavedModelEmbedder``); RunInference keeps one loaded
    model per worker process, or one per machine shared by its processes with
    ``share_model_across_processes``.

    Args:
      model_dir: ``saved_models/<name>/<version>``.
      signature: ``serving_default`` or ``serving_binary``.
      batch_size: images per model call (``EmbedImages`` groups this many consecutive images of a
        bundle into one batch; the last of a bundle may be smaller).
      share_model_across_processes: load the model once per machine instead of once per process
        (Beam's multi_process_shared), for large models on workers with many SDK processes.
      threads: TensorFlow's intra- and inter-op thread pools of each worker process (0: TensorFlow's
        default, all cores). Several SDK processes per machine (Dataflow starts one per vCPU) each
        using every core oversubscribe it; ``cores / processes`` avoids that.
    """

    def __init__(
        self, model_dir, signature=DEFAULT_SIGNATURE, batch_size=32, share_model_across_processes=False, threads=0
    ):
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size, large_model=share_model_across_processes)
        self.model_dir, self.signature, self.threads = model_dir, signature, threads
        self.batch_size = batch_size

    def load_model(self):
        if self.threads:
            try:
                tf.config.threading.set_intra_op_parallelism_threads(self.threads)
                tf.config.threading.set_inter_op_parallelism_threads(self.threads)
            except RuntimeError:  # this process already ran TensorFlow (the in-process local runner)
                _LOG.warning("TensorFlow is already initialised in this process; --threads is ignored here.")
        return SavedModelEmbedder(self.model_dir, self.signature)

    def run_inference(self, batch, model, inference_args=None):
        results = model.embed(list(batch))
        return [PredictionResult(example, result) for example, result in zip(batch, results)]

    def get_num_bytes(self, batch):
        return sum(len(encoded) for encoded in batch)

    def get_metrics_namespace(self):
        return f"{NAMESPACE}_inference"


class ToRowFn(_FailingDoFn):
    """((id, source), PredictionResult) -> a Parquet row (``tfmetric.search.catalog``), or ``failed``."""

    def __init__(self, has_float):
        self._has_float = has_float

    def setup(self):
        super().setup()
        self._embedded = Metrics.counter(NAMESPACE, "images_embedded")

    def process(self, element):
        (image_id, source), prediction = element
        result = prediction.inference
        if result.error:
            yield self.fail(image_id, source, MODEL_REJECTED, result.error)
            return
        self._embedded.inc()
        row = {catalog.ID: image_id, catalog.BITS: result.bits.tobytes(), catalog.SOURCE: source}
        if self._has_float:
            row[catalog.EMBEDDING] = result.embedding
        yield OK, row


def _batch_order(keyed):
    (image_id, source), _ = keyed
    return str(image_id), str(source)


class KeyIntoBatchesFn(beam.DoFn):
    """Keys every ``batch_size`` consecutive elements of a bundle alike, so that a GroupByKey
    forms the model's batches. RunInference's own batching (BatchElements) emits a bundle's last
    batch from ``finish_bundle``, which Beam's DaskRunner drops; a GroupByKey works everywhere.

    Args:
      batch_size: elements per key.
    """

    def __init__(self, batch_size):
        self._batch_size = batch_size

    def start_bundle(self):
        self._bundle, self._count = uuid.uuid4().hex, 0

    def process(self, element):
        yield (self._bundle, self._count // self._batch_size), element
        self._count += 1


class EmbedImages(beam.PTransform):
    """PCollection[ImageInput] -> {"rows": Parquet rows, "failed": failure dicts}.

    Args:
      handler: a ``SavedModelHandler``; it is wrapped in ``KeyedModelHandler`` so every
        prediction keeps its (id, source).
      max_pixels: the pixel limit of the pre-check.
    """

    def __init__(self, handler, max_pixels=image_header.DEFAULT_MAX_PIXELS):
        super().__init__()
        self._handler, self._max_pixels = handler, max_pixels

    def expand(self, images):
        checked, unreadable = outcomes(
            images | "Read and check images" >> beam.ParDo(ReadAndCheckImageFn(self._max_pixels)), "Checked"
        )
        has_float = self._handler.signature == DEFAULT_SIGNATURE
        batches = (
            checked
            | "Key into batches" >> beam.ParDo(KeyIntoBatchesFn(self._handler.batch_size))
            | "Group into batches" >> beam.GroupByKey()
            | "Batch" >> beam.MapTuple(lambda _, batch: sorted(batch, key=_batch_order))
        )
        rows, rejected = outcomes(
            batches
            | "RunInference" >> RunInference(KeyedModelHandler(self._handler).with_no_batching())
            | "To rows" >> beam.ParDo(ToRowFn(has_float)),
            "Rows",
        )
        failed = (unreadable, rejected) | "Merge failures" >> beam.Flatten()
        return {"rows": rows, "failed": failed}


class SummaryFn(beam.CombineFn):
    """("row", 1), ("failed", failure), ("duplicate", id) and ("file", name) entries -> the job's
    summary {"count", "failed", "duplicate_ids"} (job_output.write_summary); file names only make
    the summary wait for the sinks."""

    def create_accumulator(self):
        return 0, [], []

    def add_input(self, accumulator, entry):
        count, failed, duplicates = accumulator
        kind, value = entry
        if kind == "row":
            return count + value, failed, duplicates
        if kind == "failed":
            failed.append(value)
        elif kind == "duplicate":
            duplicates.append(value)
        return count, failed, duplicates

    def merge_accumulators(self, accumulators):
        count, failed, duplicates = self.create_accumulator()
        for c, f, d in accumulators:
            count, failed, duplicates = count + c, failed + f, duplicates + d
        return count, failed, duplicates

    def extract_output(self, accumulator):
        count, failed, duplicates = accumulator
        return {
            "count": count,
            "failed": sorted(failed, key=lambda f: (str(f["id"]), str(f["source"]))),
            "duplicate_ids": sorted(duplicates),
        }
