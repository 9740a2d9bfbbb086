"""Dataset modules: each parses one raw published layout (or generates data) into ImageRecords.

Every module exposes:
  NAME            the dataset name used by ``--dataset``
  SPLITS          all split names, e.g. ("train", "test") or ("train", "query", "gallery")
  TRAIN_SPLIT     the split training samples from
  QUERY_SPLIT     the split evaluated as queries
  GALLERY_SPLIT   the split searched by queries, or None for self-retrieval within QUERY_SPLIT
  load(raw_dir)   -> dict split -> list[ImageRecord] (generated sets ignore raw_dir)
  GENERATED       True for sets rendered in memory (no raw files): they also define
                  list_images(raw_dir) (records without bytes) and generate_class(class_name)
                  (one class's bytes), so the converter's workers render the images
  LOAD_OPTIONS    the keyword arguments of load() that the converter's flags of the same name
                  set (imagefolder: train_classes, test_classes); () for most
  INSTRUCTIONS    what to download and where the files must end up
  LABEL_SPACES    optional: split -> shared label space, for splits labelled from one map
                  (In-Shop query and gallery); the converter relabels per space, not per split
"""

import importlib

from tfmetric.datasets.base import (
    DatasetFormatError,
    DatasetNotFoundError,
    ImageRecord,
    default_data_dir,
    raw_dir,
    tfrecord_dir,
)

DATASET_NAMES = ("synthetic", "digits", "cars196", "cub200", "sop", "inshop", "imagefolder")


def get_dataset(name: str):
    """The dataset module for ``name``; ValueError naming the allowed values otherwise."""
    if name not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}. Allowed values: {', '.join(DATASET_NAMES)}.")
    return importlib.import_module(f"tfmetric.datasets.{name}")


__all__ = [
    "DATASET_NAMES",
    "DatasetFormatError",
    "DatasetNotFoundError",
    "ImageRecord",
    "default_data_dir",
    "get_dataset",
    "raw_dir",
    "tfrecord_dir",
]
