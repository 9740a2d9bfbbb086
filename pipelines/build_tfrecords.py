r"""Beam job: a raw dataset -> class-grouped TFRecord shards + ``manifest.json``.

    python -m pipelines.build_tfrecords --dataset cub200 [--raw-dir DIR] [--data-dir DIR] \
        [--num-shards N] [--max-pixels N] [--download] [any Beam pipeline option]

Runs locally (Beam's FnApiRunner, the engine of the DirectRunner, see DEFAULT_RUNNER) unless
``--runner`` says otherwise; every unrecognised flag goes to Beam (``--direct_num_workers 2
--direct_running_mode multi_processing``; ``--runner DataflowRunner --project ... --region ...
--temp_location gs://... --setup_file ./setup.py``).

Output: ``<data-dir>/tfrecords/<dataset>/<split>/<split>-SSSSS-of-NNNNN.tfrecord`` (the features of
tfmetric.data.schema; every class entirely inside one shard, classes round-robin over the shards,
records sorted by label then image id) and ``manifest.json``, written last (tfmetric.data.manifest).
Unusable images (missing, empty, truncated, corrupt, unsupported, over ``--max-pixels``) are
counted, logged and listed in the manifest with their reason; only a wrong layout fails the job.

Steps: Create image records -> Read and check images -> (classes with images -> label maps) ->
Assign shards -> Group by shard -> Write shards -> Write build summary.
"""
import argparse
import logging
import math
import os
import sys

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from pipelines import tfrecord_output as output
from pipelines import tfrecord_transforms as transforms
from pipelines.beam_flags import parse_job_args
from tfmetric import datasets
from tfmetric.data import image_header, prepare

IMAGES_PER_SHARD = 1000
# Without --runner: the local portable runner that Beam's DirectRunner itself falls back to. It
# honours --direct_num_workers / --direct_running_mode and needs no network, whereas
# `--runner DirectRunner` first tries to download and start the Prism runner (Beam 2.77).
DEFAULT_RUNNER = "FnApiRunner"
_LOG = logging.getLogger(__name__)


def parse_args(argv=None):
    """(app arguments, Beam arguments)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", required=True, choices=datasets.DATASET_NAMES)
    parser.add_argument("--raw-dir", help="raw files (default <data-dir>/raw/<dataset>)")
    parser.add_argument("--data-dir", help="default $TFMETRIC_DATA_DIR, else ~/tfmetric_data")
    parser.add_argument("--num-shards", type=int, default=0,
                        help=f"shards per split, capped at its class count (default: one per "
                             f"{IMAGES_PER_SHARD} images)")
    parser.add_argument("--max-pixels", type=int, default=image_header.DEFAULT_MAX_PIXELS,
                        help="skip images whose header announces more pixels, undecoded "
                             "(default %(default)s; 0 disables the check, though PIL still "
                             "refuses non-JPEG/PNG images over 2 x Image.MAX_IMAGE_PIXELS)")
    parser.add_argument("--train-classes", help="imagefolder: file of train class names")
    parser.add_argument("--test-classes", help="imagefolder: file of test class names")
    parser.add_argument("--download", action="store_true",
                        help="fetch and verify the official archive where one exists")
    args, beam_args = parse_job_args(parser, argv)
    if args.num_shards < 0:
        parser.error(f"--num-shards must be >= 0. Received: {args.num_shards}")
    if args.max_pixels < 0:
        parser.error(f"--max-pixels must be >= 0. Received: {args.max_pixels}")
    if (args.train_classes or args.test_classes) and args.dataset != "imagefolder":
        parser.error("--train-classes/--test-classes apply to --dataset imagefolder only")
    return args, beam_args


def pipeline_options(beam_args) -> PipelineOptions:
    options = PipelineOptions(beam_args)
    if options.view_as(StandardOptions).runner is None:
        options.view_as(StandardOptions).runner = DEFAULT_RUNNER
    return options


def load_records(module, raw_dir: str, args) -> dict:
    """dict split -> list[ImageRecord] from the dataset module (downloading first if asked)."""
    if args.download and hasattr(module, "download"):
        module.download(raw_dir)
    if module.NAME == "imagefolder":
        return module.load(raw_dir, train_classes=args.train_classes, test_classes=args.test_classes)
    return module.load(raw_dir)


def num_shards(requested: int, num_images: int) -> int:
    return requested or max(1, math.ceil(num_images / IMAGES_PER_SHARD))


def build_pipeline(p, records, shards_per_split: dict, staging: str, max_pixels: int) -> None:
    """Adds the conversion to pipeline ``p``; the shards and the summary go to ``staging``."""
    flat = [r for split in sorted(records) for r in records[split]]
    checked = (p
               | "Create image records" >> beam.Create(flat)
               | "Read and check images" >> beam.ParDo(transforms.ReadImageFn(max_pixels))
               .with_outputs(transforms.SKIPPED, transforms.FINGERPRINT, main="images"))
    label_maps = (checked.images
                  | "Classes with images" >> beam.Map(lambda im: (im.split, im.label))
                  | "Distinct classes" >> beam.Distinct()
                  | "Group classes by split" >> beam.GroupByKey()
                  | "Build label maps" >> beam.Map(transforms.label_map))
    shards = (checked.images
              | "Assign shards" >> beam.ParDo(transforms.AssignShardFn(shards_per_split),
                                              label_maps=beam.pvalue.AsDict(label_maps))
              | "Group by shard" >> beam.GroupByKey()
              | "Write shards" >> beam.ParDo(transforms.WriteShardFn(staging)))
    skipped = checked[transforms.SKIPPED] | "Collect skipped" >> beam.combiners.ToList()
    fingerprint = (checked[transforms.FINGERPRINT]
                   | "Fingerprint input" >> beam.CombineGlobally(transforms.FingerprintFn()))
    _ = (shards
         | "Collect shards" >> beam.combiners.ToList()
         | "Write build summary" >> beam.Map(output.write_summary, staging,
                                             skipped=beam.pvalue.AsSingleton(skipped),
                                             fingerprint=beam.pvalue.AsSingleton(fingerprint)))


def _log_metrics(result) -> None:
    try:
        counters = result.metrics().query()["counters"]
    except Exception:  # some runners do not report metrics; they are informative only
        return
    for counter in sorted(counters, key=lambda c: c.key.metric.name):
        if counter.key.metric.namespace == transforms.NAMESPACE:
            _LOG.info("%s: %s", counter.key.metric.name, counter.committed)


def run(argv=None, test_pipeline=None):
    """Converts one dataset; returns the PipelineResult (the manifest is on disk, written last).

    Raises:
      DatasetNotFoundError: raw files missing (the message says what to get where).
      DatasetFormatError: the raw layout is wrong (the message names file and line).
    """
    args, beam_args = parse_args(argv)
    module = datasets.get_dataset(args.dataset)
    data_dir = args.data_dir or datasets.default_data_dir()
    raw_dir = args.raw_dir or datasets.raw_dir(data_dir, args.dataset)
    records = load_records(module, raw_dir, args)
    shards_per_split = {split: num_shards(args.num_shards, len(records.get(split, [])))
                        for split in records}
    _LOG.info("%s: %s", args.dataset, ", ".join(f"{s} {len(r)} images" for s, r in records.items()))

    out_dir = datasets.tfrecord_dir(data_dir, args.dataset)
    staging = output.staging_dir(out_dir)
    output.clean_incomplete(out_dir)
    tf.io.gfile.makedirs(staging)

    p = test_pipeline or beam.Pipeline(options=pipeline_options(beam_args))
    build_pipeline(p, records, shards_per_split, staging, args.max_pixels)
    result = p.run()
    result.wait_until_finish()
    _log_metrics(result)

    arguments = {"dataset": args.dataset, "data_dir": data_dir,
                 "raw_dir": None if module.NAME in prepare.GENERATED else raw_dir,
                 "num_shards": args.num_shards, "max_pixels": args.max_pixels,
                 "train_classes": args.train_classes, "test_classes": args.test_classes}
    if getattr(module, "GENERATOR_VERSION", None) is not None:  # what ensure_tfrecords checks
        arguments["generator_version"] = module.GENERATOR_VERSION
    manifest = output.build_manifest(module, records, output.read_summary(staging), arguments)
    output.promote(staging, out_dir, manifest)
    for split, info in manifest["splits"].items():
        _LOG.info("%s/%s: %d images, %d classes, %d shards, %d skipped", args.dataset, split,
                  info["num_images"], info["num_classes"], len(info["shards"]), len(info["skipped"]))
    if manifest["num_skipped"]:
        _LOG.warning("Skipped %d images (%s); each is listed with its path and reason in %s",
                     manifest["num_skipped"], manifest["skipped_by_reason"],
                     os.path.join(out_dir, "manifest.json"))
    _LOG.info("Wrote %s", out_dir)
    return result


def setup_job_logging():
    """INFO for the job's own messages. The local runner's plumbing is chatty at INFO, and its job
    service repeats every worker warning; worker errors still show."""
    logging.getLogger().setLevel(logging.INFO)
    for name in ("apache_beam.runners.worker", "apache_beam.runners.portability.local_job_service",
                 "apache_beam.runners.portability.fn_api_runner"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv=None):
    setup_job_logging()
    try:
        run(argv)
    except datasets.DatasetNotFoundError as e:
        print(f"{prepare.ERROR_PREFIX} {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(prepare.EXIT_NOT_FOUND)
    except datasets.DatasetFormatError as e:
        print(f"{prepare.ERROR_PREFIX} {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        sys.exit(prepare.EXIT_FORMAT)


if __name__ == "__main__":
    main()
