"""The dataset manifest ``manifest.json``: what a TFRecord directory holds; written last, it marks completion.

A dataset's TFRecord directory ``<data-dir>/tfrecords/<dataset>/`` is complete only when its
manifest exists and validates; a directory without one is a half-written output and every reader
treats it as missing. The manifest is replaced atomically (``tfmetric.json_file.Artifact``).

Layout of the manifest (``schema_version`` 1)::

    {"schema_version": 1, "dataset": "cars196",
     "train_split": "train", "query_split": "test", "gallery_split": null,
     "splits": {"train": {"num_images": 8054, "num_classes": 98, "num_listed": 8054,
                          "shards": [{"path": "train/train-00000-of-00008.tfrecord",
                                      "num_images": 1003, "num_classes": 13,
                                      "class_runs": [[0, 83], [8, 74], ...],
                                      "class_offsets": [0, 4561234, ...], "num_bytes": 2613407}, ...],
                          "skipped": [{"image_id": ..., "path": ..., "class_name": ...,
                                       "reason": "truncated", "detail": ...}, ...],
                          "empty_classes": []}, ...},
     "num_skipped": 0, "skipped_by_reason": {},
     "arguments": {...the converter's arguments...},
     "fingerprint": "sha256:...",   # of every listed image's split, class, id and content
     "features": {"image/encoded": "bytes", ...}}

A shard's ``class_runs`` lists its classes in file order as ``[label, number of records]`` (one
contiguous run per class) and ``class_offsets`` the byte offset of each run's first record, so
the sampler can read any class directly without reading the labels; manifests without them
(older converters) are still valid and the sampler reads the labels once. A split whose labels
are shared with other splits (In-Shop query and gallery) has ``num_labels``, the size of the
shared label space (its labels are num_classes of 0..num_labels-1). A shard's ``num_bytes`` is its
size when written: a truncated or replaced shard fails validation (and
``prepare.ensure_tfrecords`` rebuilds it) before any work starts; older manifests lack it.
"""

import os

import tensorflow as tf

from tfmetric.data.schema import SCHEMA_VERSION
from tfmetric.datasets.base import DatasetFormatError, DatasetNotFoundError, tfrecord_dir
from tfmetric.json_file import Artifact, ArtifactError

MANIFEST_NAME = "manifest.json"
_SPLIT_KEYS = ("num_images", "num_classes", "shards", "skipped")


class ManifestError(DatasetFormatError, ArtifactError):
    """A manifest exists but is unreadable, of another schema version, or inconsistent."""


DATASET_MANIFEST = Artifact(
    "dataset manifest",
    MANIFEST_NAME,
    "schema_version",
    SCHEMA_VERSION,
    hint="Rebuild the TFRecords.",
    error=ManifestError,
)


def manifest_path(directory: str) -> str:
    return DATASET_MANIFEST.path(directory)


def write_manifest(directory: str, manifest: dict) -> str:
    """Writes ``directory/manifest.json`` atomically and returns its path."""
    return DATASET_MANIFEST.write(directory, manifest, indent=1, sort_keys=False)


def read_manifest(directory: str) -> dict:
    """The parsed manifest of ``directory``.

    Raises:
      DatasetNotFoundError: no manifest (the directory is missing or incomplete).
      ManifestError: the file is not a JSON object of this schema version.
    """
    if not DATASET_MANIFEST.exists(directory):
        raise DatasetNotFoundError(
            f"No complete TFRecords at {directory}: {MANIFEST_NAME} is missing (a directory "
            f"without one is an incomplete conversion). Build them with "
            f"`python -m pipelines.build_tfrecords --dataset <name>`."
        )
    return DATASET_MANIFEST.read(directory)


def validate_manifest(manifest: dict, directory: str | None = None) -> dict:
    """Checks the manifest's structure and counts; with ``directory``, that every shard exists.

    Returns the manifest. Raises ManifestError naming the first problem.
    """
    where = manifest_path(directory) if directory else "manifest"
    DATASET_MANIFEST.check(manifest, where)
    splits = manifest.get("splits")
    if not isinstance(splits, dict) or not splits:
        raise ManifestError(f"{where}: 'splits' must be a non-empty object")
    for name, split in splits.items():
        missing = [k for k in _SPLIT_KEYS if k not in split]
        if missing:
            raise ManifestError(f"{where}: split {name!r} lacks {', '.join(missing)}")
        counted = sum(s["num_images"] for s in split["shards"])
        if counted != split["num_images"]:
            raise ManifestError(
                f"{where}: split {name!r} has num_images {split['num_images']} but its shards hold {counted}"
            )
        for shard in split["shards"]:
            offsets = shard.get("class_offsets")
            if offsets is not None and (
                len(offsets) != len(shard.get("class_runs") or ())
                or any(b <= a for a, b in zip(offsets, offsets[1:]))
                or any(o < 0 for o in offsets)
            ):
                raise ManifestError(
                    f"{where}: shard {shard['path']}: class_offsets must be one increasing byte offset per class run"
                )
            runs = shard.get("class_runs")
            if runs is not None and (
                len(runs) != shard.get("num_classes") or sum(count for _, count in runs) != shard["num_images"]
            ):
                raise ManifestError(
                    f"{where}: shard {shard['path']}: class_runs describe {len(runs)} "
                    f"classes and {sum(count for _, count in runs)} records, not "
                    f"{shard.get('num_classes')} and {shard['num_images']}"
                )
        if directory:
            for shard in split["shards"]:
                path = os.path.join(directory, shard["path"])
                if not tf.io.gfile.exists(path):
                    raise ManifestError(f"{where}: shard {shard['path']} is missing")
                size = tf.io.gfile.stat(path).length
                if "num_bytes" in shard and size != shard["num_bytes"]:  # older manifests lack sizes
                    raise ManifestError(
                        f"{where}: shard {path} is {size} bytes but was written with "
                        f"{shard['num_bytes']} (truncated or replaced); rebuild the TFRecords"
                    )
    return manifest


def load_manifest(data_dir: str, dataset: str) -> dict:
    """The validated manifest of ``<data_dir>/tfrecords/<dataset>/`` (see ``read_manifest``)."""
    directory = tfrecord_dir(data_dir, dataset)
    return validate_manifest(read_manifest(directory), directory)


def is_complete(directory: str) -> bool:
    """Whether ``directory`` holds a valid manifest whose shards all exist."""
    try:
        validate_manifest(read_manifest(directory), directory)
    except (DatasetNotFoundError, ManifestError):
        return False
    return True


def shard_paths(data_dir: str, dataset: str, split: str, manifest: dict | None = None) -> list[str]:
    """Full paths of ``split``'s shards, in shard order (loads the manifest if not given)."""
    if manifest is None:
        manifest = load_manifest(data_dir, dataset)
    splits = manifest["splits"]
    if split not in splits:
        raise ValueError(f"Unknown split {split!r} for {dataset}. Allowed values: {', '.join(splits)}.")
    directory = tfrecord_dir(data_dir, dataset)
    return [os.path.join(directory, shard["path"]) for shard in splits[split]["shards"]]
