"""Where ``build_tfrecords`` writes, and how an output becomes complete.

Shards are written into a staging directory ``<data-dir>/tfrecords/<dataset>.incomplete/``; the
pipeline's last step leaves a build summary there (job_output.write_summary). Only after the
pipeline succeeded is the staging directory renamed to ``<data-dir>/tfrecords/<dataset>/`` and the
manifest written into it, atomically and last. A directory without a manifest is incomplete: the
next run deletes it, and an older complete output stays readable until the new one replaces it.
"""

import collections
import logging
import os

import tensorflow as tf

import tfmetric
from tfmetric.data import manifest as manifest_lib
from tfmetric.data import schema

_LOG = logging.getLogger(__name__)


def staging_dir(out_dir: str) -> str:
    return out_dir.rstrip("/") + ".incomplete"


def clean_incomplete(out_dir: str) -> None:
    """Deletes a previous run's staging directory, and ``out_dir`` itself if it lacks a manifest."""
    staging = staging_dir(out_dir)
    if tf.io.gfile.exists(staging):
        _LOG.info("Deleting the incomplete output of an earlier run: %s", staging)
        tf.io.gfile.rmtree(staging)
    if tf.io.gfile.exists(out_dir) and not manifest_lib.is_complete(out_dir):
        _LOG.info("Deleting %s: it has no valid %s (an interrupted run)", out_dir, manifest_lib.MANIFEST_NAME)
        tf.io.gfile.rmtree(out_dir)


def build_manifest(module, records, summary: dict, arguments: dict) -> dict:
    """The manifest (see tfmetric.data.manifest) from the parsed records and the build summary
    (``tfrecord_transforms.SummaryFn``)."""
    splits = {}
    reasons = collections.Counter()
    spaces = getattr(module, "LABEL_SPACES", {})
    for split in module.SPLITS:
        listed = records.get(split, [])
        shards = sorted((s for s in summary["shards"] if s["split"] == split), key=lambda s: s["index"])
        skipped = sorted(
            ({k: v for k, v in s.items() if k != "split"} for s in summary["skipped"] if s["split"] == split),
            key=lambda s: s["image_id"],
        )
        reasons.update(s["reason"] for s in skipped)
        listed_per_class = collections.Counter(r.class_name for r in listed)
        skipped_per_class = collections.Counter(s["class_name"] for s in skipped)
        splits[split] = {
            "num_images": sum(s["num_images"] for s in shards),
            "num_classes": sum(s["num_classes"] for s in shards),  # shards hold whole classes
            "num_listed": len(listed),
            "shards": [
                {k: s[k] for k in ("path", "num_images", "num_classes", "class_runs", "class_offsets")} for s in shards
            ],
            "skipped": skipped,
            "empty_classes": sorted(c for c, n in skipped_per_class.items() if n == listed_per_class[c]),
        }
    for split in set(spaces) & set(splits):  # labels of a shared space index the union's classes
        splits[split]["num_labels"] = len(
            {
                label
                for other in splits
                if spaces.get(other) == spaces[split]
                for s in splits[other]["shards"]
                for label, _ in s["class_runs"]
            }
        )
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "dataset": module.NAME,
        "train_split": module.TRAIN_SPLIT,
        "query_split": module.QUERY_SPLIT,
        "gallery_split": module.GALLERY_SPLIT,
        "splits": splits,
        "num_skipped": sum(reasons.values()),
        "skipped_by_reason": dict(sorted(reasons.items())),
        "arguments": arguments,
        "fingerprint": summary["fingerprint"],
        "features": {
            name: ("int64" if spec.dtype == tf.int64 else "bytes") for name, spec in schema.FEATURE_SPEC.items()
        },
        "created_by": f"pipelines.build_tfrecords (tfmetric {tfmetric.__version__})",
    }


def promote(staging: str, out_dir: str, manifest: dict) -> None:
    """Replaces ``out_dir`` by ``staging`` and writes the manifest last."""
    if tf.io.gfile.exists(out_dir):
        manifest_lib.DATASET_MANIFEST.remove(out_dir)  # from here on the old output reads as incomplete
        tf.io.gfile.rmtree(out_dir)
    tf.io.gfile.rename(staging, out_dir)
    for split in manifest["splits"].values():  # sizes let a reader find a truncated shard up front
        for shard in split["shards"]:
            shard["num_bytes"] = tf.io.gfile.stat(os.path.join(out_dir, shard["path"])).length
    manifest_lib.write_manifest(out_dir, manifest)
