r"""Beam job: a catalog of images -> embeddings + sign bits (Parquet) through an exported SavedModel.

    python -m pipelines.embed_catalog --model saved_models/<name>/<version> --input PATTERN \
        --output-dir DIR [--signature serving_default|serving_binary] [--batch-size N] \
        [--input-format auto|images|tfrecord|csv] [--num-shards N] [--max-pixels N] \
        [--share-model-across-processes] [--threads N] [any Beam pipeline option]

Input (``--input-format auto`` decides by the pattern's extension):
- images: a file pattern of JPEG/PNG files, local or on any filesystem Beam supports (gs://...);
  the id is the path relative to the pattern's directory part (``imgs/**`` -> ``sub/a.jpg``);
- tfrecord (``*.tfrecord*``): records of tfmetric.data.schema; the id is ``image/id``, the source
  ``<file>#offset=<byte offset>`` (``tfmetric.search.image_source``), which the search reads back;
- csv (``*.csv``, ``*.txt``, ``*.tsv``): an image list of ``id,path`` lines (optional header),
  paths relative to the list's directory or absolute/URIs (``manifest``, its old name, still works).

Output in ``--output-dir`` (format: tfmetric/search/catalog.py): ``embeddings-*.parquet`` (id,
embedding, bits, source), ``dead_letter-*.jsonl`` (id, source, reason, detail of every input that
could not be embedded, also counted per reason as Beam Metrics) and the catalog manifest
``catalog.json``, written last (model identity, dimension, count, failed inputs, duplicate ids).

Runs locally on Beam's FnApiRunner (the DirectRunner's engine; see beam_job.DEFAULT_RUNNER)
unless ``--runner`` says otherwise: ``--direct_num_workers 2 --direct_running_mode
multi_processing`` locally; ``--runner DataflowRunner --setup_file ./setup.py ...`` (README).

Steps: List inputs -> Reshuffle -> Read and check images -> RunInference (KeyedModelHandler of a
SavedModelHandler) -> To rows -> Write Parquet; failures -> Write dead letter; (written files, rows,
failures, repeated ids) -> Summarize -> Write summary. Every step has one output and the job uses
no side inputs of its own, so it runs unchanged on Beam's DaskRunner (README, "Speed and scale").
"""

import functools
import logging
import math
import os
import sys

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

import tfmetric
from pipelines import embed_output as output
from pipelines import embed_transforms as transforms
from pipelines.beam_job import parse_job_args, pipeline_options, setup_job_logging, wait_until_finish
from pipelines.job_output import WriteShards, write_summary
from tfmetric.cli_utils import ArgumentParser, run_main
from tfmetric.export.model_card import card_max_pixels, read_model_card
from tfmetric.search import catalog
from tfmetric.search.embedder import DEFAULT_SIGNATURE, EMBED_SIGNATURES, model_identity

PROG = "python -m pipelines.embed_catalog"
INPUT_FORMATS = ("auto", "images", "tfrecord", "csv")
FORMAT_ALIASES = {"manifest": "csv"}  # old names of input formats, still accepted
DEFAULT_BATCH_SIZE = 32
IMAGES_PER_SHARD = 10_000
_LOG = logging.getLogger(__name__)


def parse_args(argv=None):
    """(app arguments, Beam arguments)."""
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--model", required=True, help="exported version: saved_models/<name>/<version>")
    p.add_argument("--input", required=True, help="file pattern of images, TFRecords or id,path CSV image lists")
    p.add_argument("--output-dir", required=True, help="where the Parquet shards and catalog.json go")
    p.add_argument(
        "--signature",
        default=DEFAULT_SIGNATURE,
        choices=EMBED_SIGNATURES,
        help="serving_default: float embeddings and their sign bits; serving_binary: bits only",
    )
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per model call")
    p.add_argument(
        "--input-format",
        default="auto",
        choices=INPUT_FORMATS + tuple(FORMAT_ALIASES),
        help="auto (default): by the --input pattern's extension; csv: id,path lines (manifest: its old name)",
    )
    p.add_argument(
        "--num-shards",
        type=int,
        default=0,
        help=f"Parquet shards (default 0: one per {IMAGES_PER_SHARD} images of an image pattern, else one)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="images declaring more pixels fail undecoded (default: the model card's limit)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace a finished catalog already in --output-dir (default: refuse)"
    )
    p.add_argument(
        "--share-model-across-processes",
        action="store_true",
        help="load the model once per worker machine instead of once per SDK process",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="TensorFlow threads per worker process (default 0: all cores; with several worker "
        "processes per machine, cores / processes)",
    )
    args, beam_args = parse_job_args(p, argv)
    for flag, value, low in (
        ("--batch-size", args.batch_size, 1),
        ("--num-shards", args.num_shards, 0),
        ("--threads", args.threads, 0),
    ):
        if value < low:
            p.error(f"{flag} must be >= {low}. Received: {value}")
    return args, beam_args


def input_format(pattern, requested="auto"):
    """``images``, ``tfrecord`` or ``csv`` for an input pattern."""
    if requested != "auto":
        return FORMAT_ALIASES.get(requested, requested)
    name = pattern.lower().rstrip("/").rsplit("/", 1)[-1]
    if ".tfrecord" in name:
        return "tfrecord"
    if name.endswith((".csv", ".txt", ".tsv")):
        return "csv"
    return "images"


def check_input(pattern):
    """The number of files ``pattern`` matches; FileNotFoundError when none (before any worker starts)."""
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # BeamIOError for a missing literal path
        matched = []
    if not matched:
        raise FileNotFoundError(f"--input {pattern}: matches no files.")
    return len(matched)


def default_num_shards(fmt, num_matched):
    """Parquet shards without --num-shards: one per IMAGES_PER_SHARD matched images, else one."""
    return max(1, math.ceil(num_matched / IMAGES_PER_SHARD)) if fmt == "images" else 1


def model_info(model_dir, signature):
    """(identity, dimension, max_pixels) of the model from its card (the workers load the model),
    failing early on a wrong --model/--signature."""
    card = read_model_card(model_dir)
    if signature not in card["signatures"]:
        raise ValueError(f"--model {model_dir}: no {signature!r} signature (has: {', '.join(card['signatures'])}).")
    identity = model_identity(model_dir, card=card)
    return identity, identity["embedding_dim"], card_max_pixels(card)


def read_inputs(p, pattern, fmt):
    """(PCollection[ImageInput], list of failure PCollections) for an input pattern."""
    if fmt == "tfrecord":
        # Shards are read in parallel file by file (each record keeps its file and offset as its
        # source); the image bytes are not shuffled a second time.
        records, unreadable = transforms.outcomes(
            p
            | "Match TFRecords" >> fileio.MatchFiles(pattern)
            | "File names" >> beam.Map(lambda m: m.path)
            | "Spread files" >> beam.Reshuffle()
            | "Read TFRecords" >> beam.ParDo(transforms.ReadTFRecordFileFn()),
            "Read",
        )
        images, failed = transforms.outcomes(
            records | "Parse examples" >> beam.ParDo(transforms.ParseExampleFn()), "Parsed"
        )
        return images, [unreadable, failed]
    if fmt == "csv":
        images, failed = transforms.outcomes(
            p
            | "Read CSV image lists" >> beam.io.ReadFromTextWithFilename(pattern)
            | "Parse CSV lines" >> beam.ParDo(transforms.ParseManifestLineFn()),
            "Parsed",
        )
        failed = [failed]
    else:
        base = transforms.pattern_base(pattern)
        images = (
            p
            | "Match files" >> fileio.MatchFiles(pattern)
            | "Image inputs"
            >> beam.Map(lambda m: transforms.ImageInput(transforms.relative_id(m.path, base), m.path, None))
        )
        failed = []
    # Listing is cheap and happens in one place; spread the reading and the model over the workers.
    return images | "Spread over workers" >> beam.Reshuffle(), failed


def build_pipeline(p, args, fmt, dim, max_pixels, num_shards=1):
    """Adds the job to pipeline ``p`` reading inputs of format ``fmt``; everything goes to
    ``args.output_dir``, the embeddings in ``num_shards`` Parquet files."""
    has_float = args.signature == DEFAULT_SIGNATURE
    handler = transforms.SavedModelHandler(
        args.model, args.signature, args.batch_size, args.share_model_across_processes, args.threads
    )
    images, failed = read_inputs(p, args.input, fmt)
    embedded = images | "Embed images" >> transforms.EmbedImages(handler, max_pixels)
    rows = embedded["rows"]
    parquet = rows | "Write Parquet" >> WriteShards(
        output.embeddings_prefix(args.output_dir),
        catalog.PARQUET_SUFFIX,
        num_shards,
        key=lambda row: row[catalog.ID],
        write=functools.partial(output.write_parquet, schema=catalog.parquet_schema(dim, has_float)),
    )
    failed = (failed + [embedded["failed"]]) | "All failures" >> beam.Flatten()
    dead_letter = failed | "Write dead letter" >> WriteShards(
        output.dead_letter_prefix(args.output_dir),
        output.DEAD_LETTER_SUFFIX,
        1,
        key=lambda failure: failure["id"],
        write=output.write_dead_letter,
    )
    duplicates = (
        rows
        | "Ids" >> beam.Map(lambda row: row[catalog.ID])
        | "Count per id" >> beam.combiners.Count.PerElement()
        | "Repeated ids" >> beam.Filter(lambda kv: kv[1] > 1)
        | "Id" >> beam.Keys()
    )
    # One combine over the written file names, rows, failures and repeated ids: the summary is
    # written after both sinks finished, and every step feeds the last one (runners that execute
    # only what the last step needs, like the DaskRunner, run it all).
    _ = (
        (
            parquet | "Parquet entries" >> beam.Map(lambda name: ("file", name)),
            dead_letter | "Dead letter entries" >> beam.Map(lambda name: ("file", name)),
            rows | "Row entries" >> beam.Map(lambda _: ("row", 1)),
            failed | "Failure entries" >> beam.Map(lambda failure: ("failed", failure)),
            duplicates | "Repeated id entries" >> beam.Map(lambda image_id: ("duplicate", image_id)),
        )
        | "Summary entries" >> beam.Flatten()
        | "Summarize" >> beam.CombineGlobally(transforms.SummaryFn()).without_defaults()
        | "Write summary" >> beam.Map(lambda summary: write_summary(args.output_dir, summary))
    )


def run(argv=None, test_pipeline=None):
    """Embeds one catalog; returns (PipelineResult, manifest). The manifest is written last."""
    args, beam_args = parse_args(argv)
    if "://" not in args.input:  # sources recorded for the search plot must not depend on the cwd
        args.input = os.path.abspath(args.input)
    identity, dim, max_pixels = model_info(args.model, args.signature)
    max_pixels = args.max_pixels if args.max_pixels is not None else max_pixels
    fmt = input_format(args.input, args.input_format)
    num_shards = args.num_shards or default_num_shards(fmt, check_input(args.input))
    output.prepare_output_dir(args.output_dir, overwrite=args.overwrite)

    p = test_pipeline or beam.Pipeline(options=pipeline_options(beam_args))
    build_pipeline(p, args, fmt, dim, max_pixels, num_shards)
    result = p.run()
    wait_until_finish(result)

    manifest = output.finish(
        args.output_dir,
        identity,
        dim,
        args.signature == DEFAULT_SIGNATURE,
        signature=args.signature,
        input={"pattern": args.input, "format": fmt},
        batch_size=args.batch_size,
        max_pixels=max_pixels,
        created_by=f"pipelines.embed_catalog (tfmetric {tfmetric.__version__})",
    )
    _LOG.info(
        "Embedded %d images into %s (%d Parquet shards)", manifest["count"], args.output_dir, len(manifest["files"])
    )
    if manifest["num_failed"]:
        _LOG.warning(
            "%d inputs failed (%s); each is listed with its reason in %s/catalog.json and the dead_letter files",
            manifest["num_failed"],
            manifest["failed_by_reason"],
            args.output_dir,
        )
    if manifest["duplicate_ids"]:
        _LOG.warning(
            "%d ids occur more than once, e.g. %s", len(manifest["duplicate_ids"]), manifest["duplicate_ids"][0]
        )
    return result, manifest


def main(argv=None):
    setup_job_logging()

    def go():
        _, manifest = run(argv)
        print(
            f"Embedded {manifest['count']} images ({manifest['num_failed']} failed) -> "
            f"{manifest['dimension']}-d {'embeddings and bits' if manifest['has_float'] else 'bits'}"
        )
        return 0

    return run_main(PROG, go, {"model_dir": "--model", "signature": "--signature"})


if __name__ == "__main__":
    sys.exit(main())
