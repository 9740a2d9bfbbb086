r"""Beam job: a catalog of images -> embeddings + sign bits (Parquet) through an exported SavedModel.

    python -m pipelines.embed_catalog --model saved_models/<name>/<version> --input PATTERN \
        --output-dir DIR [--signature serving_default|serving_binary] [--batch-size N] \
        [--input-format auto|images|tfrecord|manifest] [--num-shards N] [--max-pixels N] \
        [--share-model-across-processes] [--threads N] [any Beam pipeline option]

Input (``--input-format auto`` decides by the pattern's extension):
- images: a file pattern of JPEG/PNG files, local or on any filesystem Beam supports (gs://...);
  the id is the path relative to the pattern's directory part (``imgs/**`` -> ``sub/a.jpg``);
- tfrecord (``*.tfrecord*``): records of tfmetric.data.schema; the id is ``image/id``;
- manifest (``*.csv``, ``*.txt``): ``id,path`` lines (optional header), paths relative to the
  manifest's directory or absolute/URIs.

Output in ``--output-dir`` (format: tfmetric/search/catalog.py): ``embeddings-*.parquet`` (id,
embedding, bits, source), ``dead_letter-*.jsonl`` (id, source, reason, detail of every input that
could not be embedded, also counted per reason as Beam Metrics) and ``manifest.json``, written
last (model identity, dimension, count, failed inputs, duplicate ids).

Runs locally on Beam's FnApiRunner (the DirectRunner's engine; see build_tfrecords.DEFAULT_RUNNER)
unless ``--runner`` says otherwise: ``--direct_num_workers 2 --direct_running_mode
multi_processing`` locally; ``--runner DataflowRunner --setup_file ./setup.py ...`` (README).

Steps: List inputs -> Reshuffle -> Read and check images -> RunInference (KeyedModelHandler of a
SavedModelHandler) -> To rows -> Write Parquet; failures -> Write dead letter; Write summary.
"""
import argparse
import json
import logging
import os
import sys

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

import tfmetric
from pipelines import embed_output as output
from pipelines import embed_transforms as transforms
from pipelines.build_tfrecords import pipeline_options, setup_job_logging
from pipelines.beam_flags import parse_job_args
from tfmetric.cli_utils import run_main
from tfmetric.search import catalog
from tfmetric.export.model_card import card_max_pixels, read_model_card
from tfmetric.search.embedder import DEFAULT_SIGNATURE, EMBED_SIGNATURES, SavedModelEmbedder, model_identity

PROG = "python -m pipelines.embed_catalog"
INPUT_FORMATS = ("auto", "images", "tfrecord", "manifest")
DEFAULT_BATCH_SIZE = 32
_LOG = logging.getLogger(__name__)


def parse_args(argv=None):
    """(app arguments, Beam arguments)."""
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0], allow_abbrev=False)
    p.add_argument("--model", required=True, help="exported version: saved_models/<name>/<version>")
    p.add_argument("--input", required=True, help="file pattern of images, TFRecords or an id,path manifest")
    p.add_argument("--output-dir", required=True, help="where the Parquet shards and manifest.json go")
    p.add_argument("--signature", default=DEFAULT_SIGNATURE, choices=EMBED_SIGNATURES,
                   help="serving_default: float embeddings and their sign bits; serving_binary: bits only")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="images per model call")
    p.add_argument("--input-format", default="auto", choices=INPUT_FORMATS)
    p.add_argument("--num-shards", type=int, default=0, help="Parquet shards (default 0: the runner decides)")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="images declaring more pixels fail undecoded (default: the model card's limit)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished catalog already in --output-dir (default: refuse)")
    p.add_argument("--share-model-across-processes", action="store_true",
                   help="load the model once per worker machine instead of once per SDK process")
    p.add_argument("--threads", type=int, default=0,
                   help="TensorFlow threads per worker process (default 0: all cores; with several worker "
                        "processes per machine, cores / processes)")
    args, beam_args = parse_job_args(p, argv)
    for flag, value, low in (("--batch-size", args.batch_size, 1), ("--num-shards", args.num_shards, 0),
                             ("--threads", args.threads, 0)):
        if value < low:
            p.error(f"{flag} must be >= {low}. Received: {value}")
    return args, beam_args


def input_format(pattern, requested="auto"):
    """``images``, ``tfrecord`` or ``manifest`` for an input pattern."""
    if requested != "auto":
        return requested
    name = pattern.lower().rstrip("/").rsplit("/", 1)[-1]
    if ".tfrecord" in name:
        return "tfrecord"
    if name.endswith((".csv", ".txt", ".tsv")):
        return "manifest"
    return "images"


def check_input(pattern):
    """Raises FileNotFoundError when ``pattern`` matches nothing (before any worker starts)."""
    try:
        matched = FileSystems.match([pattern])[0].metadata_list
    except Exception:  # BeamIOError for a missing literal path
        matched = []
    if not matched:
        raise FileNotFoundError(f"--input {pattern}: matches no files.")


def model_info(model_dir, signature):
    """(identity, dimension, max_pixels) of the model, failing early on a wrong --model/--signature."""
    card = read_model_card(model_dir)
    embedder = None
    if card is None or signature not in card.get("signatures", {signature: None}):
        embedder = SavedModelEmbedder(model_dir, signature)  # raises the missing-model / -signature error
    identity = model_identity(model_dir, card=card)
    if identity["embedding_dim"] is None:  # no card: the float signature's width is the dimension
        if embedder is None or signature != DEFAULT_SIGNATURE:
            embedder = SavedModelEmbedder(model_dir, DEFAULT_SIGNATURE)
        identity["embedding_dim"] = embedder.output_width
    return identity, identity["embedding_dim"], card_max_pixels(card)


def read_inputs(p, pattern, fmt):
    """(PCollection[ImageInput], list of failure PCollections) for an input pattern."""
    if fmt == "tfrecord":
        # Shards are read in parallel file by file (a damaged file goes to the dead letter alone);
        # the image bytes are not shuffled a second time.
        read = (p | "Match TFRecords" >> fileio.MatchFiles(pattern) | "Paths" >> beam.Map(lambda m: m.path)
                | "Spread files" >> beam.Reshuffle()
                | "Read TFRecords" >> beam.ParDo(transforms.ReadTFRecordFileFn()).with_outputs(
                    transforms.FAILED, main="records"))
        parsed = (read.records
                  | "Parse examples" >> beam.ParDo(transforms.ParseExampleFn()).with_outputs(
                      transforms.FAILED, main="images"))
        return parsed.images, [read[transforms.FAILED], parsed[transforms.FAILED]]
    if fmt == "manifest":
        parsed = (p | "Read manifest" >> beam.io.ReadFromTextWithFilename(pattern)
                  | "Parse manifest lines" >> beam.ParDo(transforms.ParseManifestLineFn()).with_outputs(
                      transforms.FAILED, main="images"))
        images, failed = parsed.images, [parsed[transforms.FAILED]]
    else:
        base = transforms.pattern_base(pattern)
        images = (p | "Match files" >> fileio.MatchFiles(pattern)
                  | "Image inputs" >> beam.Map(
                      lambda m: transforms.ImageInput(transforms.relative_id(m.path, base), m.path, None)))
        failed = []
    # Listing is cheap and happens in one place; spread the reading and the model over the workers.
    return images | "Spread over workers" >> beam.Reshuffle(), failed


def build_pipeline(p, args, fmt, dim, max_pixels):
    """Adds the job to pipeline ``p`` reading inputs of format ``fmt``; everything goes to
    ``args.output_dir``."""
    has_float = args.signature == DEFAULT_SIGNATURE
    handler = transforms.SavedModelHandler(args.model, args.signature, args.batch_size,
                                           args.share_model_across_processes, args.threads)
    images, failed = read_inputs(p, args.input, fmt)
    embedded = images | "Embed images" >> transforms.EmbedImages(handler, max_pixels)
    rows = embedded["rows"]
    _ = rows | "Write Parquet" >> beam.io.WriteToParquet(
        output.embeddings_prefix(args.output_dir), catalog.parquet_schema(dim, has_float),
        file_name_suffix=catalog.PARQUET_SUFFIX, num_shards=args.num_shards)
    failed = (failed + [embedded["failed"]]) | "All failures" >> beam.Flatten()
    _ = (failed | "Failure as JSON" >> beam.Map(json.dumps, sort_keys=True)
         | "Write dead letter" >> beam.io.WriteToText(output.dead_letter_prefix(args.output_dir),
                                                      file_name_suffix=output.DEAD_LETTER_SUFFIX))
    ids = rows | "Ids" >> beam.Map(lambda row: row[catalog.ID])
    count = ids | "Count rows" >> beam.combiners.Count.Globally()
    duplicates = (ids | "Count per id" >> beam.combiners.Count.PerElement()
                  | "Repeated ids" >> beam.Filter(lambda kv: kv[1] > 1) | "Id" >> beam.Keys()
                  | "Collect repeated ids" >> beam.combiners.ToList())
    _ = (p | "Summary trigger" >> beam.Create([None])
         | "Write summary" >> beam.Map(output.write_summary, args.output_dir,
                                       count=beam.pvalue.AsSingleton(count),
                                       failed=beam.pvalue.AsSingleton(failed | "Collect failures" >>
                                                                      beam.combiners.ToList()),
                                       duplicate_ids=beam.pvalue.AsSingleton(duplicates)))


def run(argv=None, test_pipeline=None):
    """Embeds one catalog; returns (PipelineResult, manifest). The manifest is written last."""
    args, beam_args = parse_args(argv)
    if "://" not in args.input:  # sources recorded for the search plot must not depend on the cwd
        args.input = os.path.abspath(args.input)
    identity, dim, max_pixels = model_info(args.model, args.signature)
    max_pixels = args.max_pixels if args.max_pixels is not None else max_pixels
    fmt = input_format(args.input, args.input_format)
    check_input(args.input)
    output.prepare_output_dir(args.output_dir, overwrite=args.overwrite)

    p = test_pipeline or beam.Pipeline(options=pipeline_options(beam_args))
    build_pipeline(p, args, fmt, dim, max_pixels)
    result = p.run()
    result.wait_until_finish()

    manifest = output.finish(
        args.output_dir, identity, dim, args.signature == DEFAULT_SIGNATURE, signature=args.signature,
        input={"pattern": args.input, "format": fmt}, batch_size=args.batch_size, max_pixels=max_pixels,
        created_by=f"pipelines.embed_catalog (tfmetric {tfmetric.__version__})")
    _LOG.info("Embedded %d images into %s (%d Parquet shards)", manifest["count"], args.output_dir,
              len(manifest["files"]))
    if manifest["num_failed"]:
        _LOG.warning("%d inputs failed (%s); each is listed with its reason in %s/manifest.json and the "
                     "dead_letter files", manifest["num_failed"], manifest["failed_by_reason"], args.output_dir)
    if manifest["duplicate_ids"]:
        _LOG.warning("%d ids occur more than once, e.g. %s", len(manifest["duplicate_ids"]),
                     manifest["duplicate_ids"][0])
    return result, manifest


def main(argv=None):
    setup_job_logging()

    def go():
        _, manifest = run(argv)
        print(f"Embedded {manifest['count']} images ({manifest['num_failed']} failed) -> "
              f"{manifest['dimension']}-d {'embeddings and bits' if manifest['has_float'] else 'bits'}")
        return 0

    return run_main(PROG, go)


if __name__ == "__main__":
    sys.exit(main())
