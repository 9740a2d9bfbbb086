"""Cars196 (Krause et al., 3DRR 2013) from its published ``cars_annos.mat`` + ``car_ims/`` layout.

Zero-shot split of the metric-learning literature (and the paper, Sec. 4): classes 1-98 train,
99-196 test, all 16,185 images; the mat's ``test`` flag (the classification split) is ignored, as
in the official code. Labels are contiguous within each split in class-id order; ``class_name`` is
the original class id ("1".."196"); ``image_id`` the ``relative_im_path`` (``car_ims/000001.jpg``).
"""

import io
import os

import numpy as np
import scipy.io
import tensorflow as tf

from tfmetric.datasets.base import DatasetFormatError, DatasetNotFoundError, ImageRecord

NAME = "cars196"
SPLITS = ("train", "test")
TRAIN_SPLIT = "train"
QUERY_SPLIT = "test"
GALLERY_SPLIT = None
GENERATED = False
LOAD_OPTIONS = ()

NUM_CLASSES = 196
LAST_TRAIN_CLASS = 98
ANNOTATIONS = "cars_annos.mat"

INSTRUCTIONS = """\
Cars196 has no stable official download: the Stanford links to car_ims.tgz and cars_annos.mat
(http://ai.stanford.edu/~jkrause/car196/) are dead. Obtain both files of the original release from
a copy you trust (it has 16,185 images in car_ims/), then arrange them as

  <raw-dir>/cars_annos.mat
  <raw-dir>/car_ims/000001.jpg ... 016185.jpg      (tar -xzf car_ims.tgz -C <raw-dir>)

where <raw-dir> defaults to <data-dir>/raw/cars196 (data dir: $TFMETRIC_DATA_DIR or ~/tfmetric_data)."""


def download(raw_dir: str) -> None:
    """No stable source exists; raises DatasetNotFoundError with the instructions unless present."""
    if not tf.io.gfile.exists(os.path.join(raw_dir, ANNOTATIONS)):
        raise DatasetNotFoundError(f"Cannot download cars196 automatically.\n\n{INSTRUCTIONS}")


def _scalar(value, what: str, index: int, path: str):
    array = np.asarray(value).reshape(-1)
    if array.size != 1:
        raise DatasetFormatError(f"{path}: annotation {index}: field {what!r} holds {array.size} values")
    return array[0]


def _read_annotations(path: str):
    if not tf.io.gfile.exists(path):
        raise DatasetNotFoundError(f"Missing {path}.\n\n{INSTRUCTIONS}")
    with tf.io.gfile.GFile(path, "rb") as f:
        raw = f.read()
    try:
        mat = scipy.io.loadmat(io.BytesIO(raw), squeeze_me=True)
    except Exception as e:  # scipy raises a zoo of types for a damaged file
        raise DatasetFormatError(f"{path}: not a readable MATLAB file ({type(e).__name__}: {e})") from None
    annotations = mat.get("annotations")
    if annotations is None:
        raise DatasetFormatError(
            f"{path}: no 'annotations' variable (found: {', '.join(k for k in mat if not k.startswith('__'))})"
        )
    annotations = np.atleast_1d(annotations)
    names = annotations.dtype.names or ()
    for field in ("relative_im_path", "class"):
        if field not in names:
            raise DatasetFormatError(
                f"{path}: 'annotations' lacks the field {field!r} (fields: {', '.join(names) or 'none'})"
            )
    return annotations


def load(raw_dir: str):
    """dict split -> list[ImageRecord]; see the module docstring for the protocol."""
    path = os.path.join(raw_dir, ANNOTATIONS)
    annotations = _read_annotations(path)
    entries = []
    for index, entry in enumerate(annotations, start=1):  # 1-based, as MATLAB numbers them
        rel_path = str(_scalar(entry["relative_im_path"], "relative_im_path", index, path))
        try:
            class_id = int(_scalar(entry["class"], "class", index, path))
        except (TypeError, ValueError):
            raise DatasetFormatError(
                f"{path}: annotation {index}: class {entry['class']!r} is not an integer"
            ) from None
        if not 1 <= class_id <= NUM_CLASSES:
            raise DatasetFormatError(f"{path}: annotation {index}: class {class_id} outside 1..{NUM_CLASSES}")
        if not rel_path or os.path.isabs(rel_path) or ".." in rel_path.split("/"):
            raise DatasetFormatError(f"{path}: annotation {index}: bad relative_im_path {rel_path!r}")
        entries.append((class_id, rel_path))

    result = {}
    for split in SPLITS:
        in_split = [(c, p) for c, p in entries if (c <= LAST_TRAIN_CLASS) == (split == "train")]
        labels = {c: i for i, c in enumerate(sorted({c for c, _ in in_split}))}
        result[split] = [
            ImageRecord(image_id=p, label=labels[c], class_name=str(c), split=split, path=os.path.join(raw_dir, p))
            for c, p in sorted(in_split, key=lambda e: (e[0], e[1]))
        ]
    return result
