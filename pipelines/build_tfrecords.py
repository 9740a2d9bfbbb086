r"""Beam job: a raw dataset -> class-grouped TFRecord shards + ``manifest.json``.

    python -m pipelines.build_tfrecords --dataset cub200 [--raw-dir DIR] [--data-dir DIR] \
        [--num-shards N] [--max-pixels N] [--download] [any Beam pipeline option]

Runs locally (Beam's FnApiRunner, the engine of the DirectRunner, see beam_job.DEFAULT_RUNNER) unless
``--runner`` says otherwise; every unrecognised flag goes to Beam (``--direct_num_workers 2
--direct_running_mode multi_processing``; ``--runner DataflowRunner --project ... --region ...
--temp_location gs://... --setup_file ./setup.py``).

Output: ``<data-dir>/tfrecords/<dataset>/<split>/<split>-SSSSS-of-NNNNN.tfrecord`` (the features of
tfmetric.data.schema; every class entirely inside one shard, classes round-robin over the shards,
records sorted by label then image id) and ``manifest.json``, written last (tfmetric.data.manifest).
Unusable images (missing, empty, truncated, corrupt, unsupported, over ``--max-pixels``) are
counted, logged and listed in the manifest with their reason; only a wrong layout fails the job.

Steps: List classes (records without bytes) -> Convert classes (one class per element: read and
check its images once, write the kept ones into the class's fragment; its name and size go on)
-> Group classes by label space -> Assign shards -> Group by shard -> Write shards (the fragments
end to end, relabelled only where a class kept no image) -> Summarize -> Write build summary. The
same graph runs on every runner; ``--runner DaskRunner --dask_client_address tcp://HOST:8786``
runs it on a Dask cluster (README, "Speed and scale"). The fragments take as much room as the
shards until the job ends; the launcher then deletes them.
"""

import argparse
import logging
import math
import os
import sys

import apache_beam as beam
import tensorflow as tf

from pipelines import class_records
from pipelines import tfrecord_output as output
from pipelines import tfrecord_transforms as transforms
from pipelines.beam_job import parse_job_args, pipeline_options, setup_job_logging, wait_until_finish
from pipelines.job_output import take_summary, write_summary
from tfmetric import datasets
from tfmetric.cli_utils import ArgumentParser
from tfmetric.data import image_header, prepare

IMAGES_PER_SHARD = 1000
_LOG = logging.getLogger(__name__)
PROG = "python -m " + prepare.JOB_MODULE
# The flags that set a dataset module's LOAD_OPTIONS.
CLASS_LIST_OPTIONS = ("train_classes", "test_classes")
# Documented exit codes: 0 done, 2 bad flags, 3 raw data missing, 4 raw data malformed, 1 any other
# failure; an expected error is printed as the first stderr line, "<PROG>: error: <message>".
EXIT_NOT_FOUND = 3
EXIT_FORMAT = 4


def parse_args(argv=None):
    """(app arguments, Beam arguments)."""
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--dataset", required=True, choices=datasets.DATASET_NAMES)
    parser.add_argument("--raw-dir", help="raw files (default <data-dir>/raw/<dataset>)")
    parser.add_argument("--data-dir", help="default $TFMETRIC_DATA_DIR, else ~/tfmetric_data")
    parser.add_argument(
        "--num-shards",
        type=int,
        default=0,
        help=f"shards per split, capped at its class count (default: one per {IMAGES_PER_SHARD} images)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=image_header.DEFAULT_MAX_PIXELS,
        help="skip images whose header announces more pixels, undecoded "
        "(default %(default)s; 0 disables the check, though PIL still "
        "refuses non-JPEG/PNG images over 2 x Image.MAX_IMAGE_PIXELS)",
    )
    parser.add_argument("--train-classes", help="imagefolder: file of train class names")
    parser.add_argument("--test-classes", help="imagefolder: file of test class names")
    parser.add_argument(
        "--download", action="store_true", help="fetch and verify the official archive where one exists"
    )
    parser.add_argument(
        prepare.RESULT_FLAG,
        metavar="PATH",
        help="also write the outcome as JSON here (what tfmetric.data.prepare reads)",
    )
    args, beam_args = parse_job_args(parser, argv)
    if args.num_shards < 0:
        parser.error(f"--num-shards must be >= 0. Received: {args.num_shards}")
    if args.max_pixels < 0:
        parser.error(f"--max-pixels must be >= 0. Received: {args.max_pixels}")
    given = {option for option in CLASS_LIST_OPTIONS if getattr(args, option)}
    if given and not given <= set(datasets.get_dataset(args.dataset).LOAD_OPTIONS):
        takers = [n for n in datasets.DATASET_NAMES if given <= set(datasets.get_dataset(n).LOAD_OPTIONS)]
        parser.error(f"--train-classes/--test-classes apply to --dataset {' or '.join(takers)} only")
    return args, beam_args


def load_records(module, raw_dir: str, args) -> dict:
    """dict split -> list[ImageRecord] from the dataset module (downloading first if asked)."""
    if args.download and hasattr(module, "download"):
        module.download(raw_dir)
    if module.GENERATED:  # the workers render each class's bytes
        return module.list_images(raw_dir)
    return module.load(raw_dir, **{option: getattr(args, option) for option in module.LOAD_OPTIONS})


def num_shards(requested: int, num_images: int) -> int:
    return requested or max(1, math.ceil(num_images / IMAGES_PER_SHARD))


def build_pipeline(
    p, records, shards_per_split: dict, staging: str, max_pixels: int, dataset: str, label_spaces=None
) -> None:
    """Adds the conversion to pipeline ``p``; the shards and the summary go to ``staging``.

    Only records without bytes (paths, or ids the workers render for generated datasets) enter
    the pipeline, one element per class; only fragment names and sizes are shuffled.
    ``label_spaces`` maps a split to the label space it shares with other splits (the dataset
    module's ``LABEL_SPACES``); labels are made contiguous per label space.
    """
    spaces = dict(label_spaces or {})
    checks = (
        p
        | "List classes" >> beam.Create(class_records.class_units(records, spaces))
        | "Convert classes" >> beam.ParDo(transforms.CheckClassFn(staging, dataset, max_pixels))
    )
    shards = (
        checks
        | "Key by label space" >> beam.Map(transforms.by_label_space, spaces)
        | "Group classes by label space" >> beam.GroupByKey()
        | "Assign shards" >> beam.FlatMap(transforms.assign_shards, shards_per_split)
        | "Group by shard" >> beam.GroupByKey()
        | "Write shards" >> beam.ParDo(transforms.WriteShardFn(staging))
    )
    # One combine over everything the manifest needs, so the last step depends on every shard
    # (runners that execute only what the last step needs, like the DaskRunner, run it all).
    _ = (
        (
            shards | "Shard entries" >> beam.Map(lambda shard: ("shard", shard)),
            checks | "Skip and fingerprint entries" >> beam.FlatMap(transforms.summary_entries),
        )
        | "Summary entries" >> beam.Flatten()
        | "Summarize" >> beam.CombineGlobally(transforms.SummaryFn()).without_defaults()
        | "Write build summary" >> beam.Map(lambda summary: write_summary(staging, summary))
    )


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
    shards_per_split = {split: num_shards(args.num_shards, len(records.get(split, []))) for split in records}
    _LOG.info("%s: %s", args.dataset, ", ".join(f"{s} {len(r)} images" for s, r in records.items()))

    out_dir = datasets.tfrecord_dir(data_dir, args.dataset)
    staging = output.staging_dir(out_dir)
    output.clean_incomplete(out_dir)
    tf.io.gfile.makedirs(staging)

    p = test_pipeline or beam.Pipeline(options=pipeline_options(beam_args))
    build_pipeline(
        p, records, shards_per_split, staging, args.max_pixels, args.dataset, getattr(module, "LABEL_SPACES", None)
    )
    result = p.run()
    wait_until_finish(result)
    _log_metrics(result)
    if tf.io.gfile.exists(transforms.fragments_dir(staging)):  # every shard is written
        tf.io.gfile.rmtree(transforms.fragments_dir(staging))

    arguments = {
        "dataset": args.dataset,
        "data_dir": data_dir,
        "raw_dir": None if module.GENERATED else raw_dir,
        "num_shards": args.num_shards,
        "max_pixels": args.max_pixels,
        "train_classes": args.train_classes,
        "test_classes": args.test_classes,
    }
    if getattr(module, "GENERATOR_VERSION", None) is not None:  # what ensure_tfrecords checks
        arguments["generator_version"] = module.GENERATOR_VERSION
    manifest = output.build_manifest(module, records, take_summary(staging), arguments)
    output.promote(staging, out_dir, manifest)
    for split, info in manifest["splits"].items():
        _LOG.info(
            "%s/%s: %d images, %d classes, %d shards, %d skipped",
            args.dataset,
            split,
            info["num_images"],
            info["num_classes"],
            len(info["shards"]),
            len(info["skipped"]),
        )
    if manifest["num_skipped"]:
        _LOG.warning(
            "Skipped %d images (%s); each is listed with its path and reason in %s",
            manifest["num_skipped"],
            manifest["skipped_by_reason"],
            os.path.join(out_dir, "manifest.json"),
        )
    _LOG.info("Wrote %s", out_dir)
    return result


def _result_file(argv):
    """The ``--result-file`` of ``argv`` (None without one), read before the job's own parsing."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(prepare.RESULT_FLAG)
    return parser.parse_known_args(argv)[0].result_file


def main(argv=None):
    setup_job_logging()
    result_file = _result_file(argv)
    try:
        run(argv)
    except (datasets.DatasetNotFoundError, datasets.DatasetFormatError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr, flush=True)
        if result_file:
            prepare.write_result(result_file, e)
        sys.exit(EXIT_NOT_FOUND if isinstance(e, datasets.DatasetNotFoundError) else EXIT_FORMAT)
    if result_file:
        prepare.write_result(result_file)


if __name__ == "__main__":
    main()
