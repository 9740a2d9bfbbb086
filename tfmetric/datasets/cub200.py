"""CUB-200-2011 (Wah et al., 2011) from its published ``CUB_200_2011/`` layout.

Zero-shot split (the paper, Sec. 4): classes 1-100 train, 101-200 test, all 11,788 images (the
dataset's own ``train_test_split.txt`` is the classification split and is ignored). Labels are
contiguous within each split in class-id order; ``class_name`` is the original class id
("1".."200"); ``image_id`` the path in ``images.txt`` (``001.Black_footed_Albatross/...jpg``).
"""

import os

import tensorflow as tf

from tfmetric.datasets import download as download_lib
from tfmetric.datasets.base import DatasetFormatError, ImageRecord, read_lines

NAME = "cub200"
SPLITS = ("train", "test")
TRAIN_SPLIT = "train"
QUERY_SPLIT = "test"
GALLERY_SPLIT = None
GENERATED = False
LOAD_OPTIONS = ()

NUM_CLASSES = 200
LAST_TRAIN_CLASS = 100
BASE = "CUB_200_2011"
URL = "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1"
ARCHIVE = "CUB_200_2011.tgz"
MD5 = "97eceeb196236b17998738112f37df78"

INSTRUCTIONS = f"""\
Download CUB_200_2011.tgz (1.1 GB, md5 {MD5}) from CaltechDATA,
  {URL}
(or pass --download to the converter), and extract it into <raw-dir>:

  tar -xzf CUB_200_2011.tgz -C <raw-dir>

so that these exist:
  <raw-dir>/CUB_200_2011/images.txt, image_class_labels.txt, classes.txt
  <raw-dir>/CUB_200_2011/images/001.Black_footed_Albatross/*.jpg ...

where <raw-dir> defaults to <data-dir>/raw/cub200 (data dir: $TFMETRIC_DATA_DIR or ~/tfmetric_data)."""


def download(raw_dir: str) -> None:
    """Fetches, verifies (MD5) and extracts the official archive unless the layout is present."""
    if tf.io.gfile.exists(os.path.join(raw_dir, BASE, "images.txt")):
        return
    download_lib.fetch_archive([URL], MD5, raw_dir, INSTRUCTIONS, filename=ARCHIVE)


def _read_table(path: str) -> dict:
    """``<int id> <value>`` per line -> {id: value}, with the file and line of any bad line."""
    table = {}
    for number, line in read_lines(path, f"Missing {path}.\n\n{INSTRUCTIONS}"):
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise DatasetFormatError(f"{path}:{number}: expected '<id> <value>', got {line!r}")
        key = int(parts[0])
        if key in table:
            raise DatasetFormatError(f"{path}:{number}: duplicate id {key}")
        table[key] = parts[1].strip()
    return table


def load(raw_dir: str):
    """dict split -> list[ImageRecord]; see the module docstring for the protocol."""
    base = os.path.join(raw_dir, BASE)
    images_txt = os.path.join(base, "images.txt")
    labels_txt = os.path.join(base, "image_class_labels.txt")
    classes = _read_table(os.path.join(base, "classes.txt"))
    images = _read_table(images_txt)
    class_of = _read_table(labels_txt)
    for class_id in classes:
        if not 1 <= class_id <= NUM_CLASSES:
            raise DatasetFormatError(
                f"{os.path.join(base, 'classes.txt')}: class id {class_id} outside 1..{NUM_CLASSES}"
            )
    entries = []
    for image_id, rel_path in images.items():
        if image_id not in class_of:
            raise DatasetFormatError(f"{labels_txt}: no class for image {image_id} ({rel_path}) listed in {images_txt}")
        value = class_of[image_id]
        if not value.isdigit() or int(value) not in classes:
            raise DatasetFormatError(f"{labels_txt}: image {image_id}: class {value!r} is not an id of classes.txt")
        entries.append((int(value), rel_path))

    result = {}
    for split in SPLITS:
        in_split = [(c, p) for c, p in entries if (c <= LAST_TRAIN_CLASS) == (split == "train")]
        labels = {c: i for i, c in enumerate(sorted({c for c, _ in in_split}))}
        result[split] = [
            ImageRecord(
                image_id=p, label=labels[c], class_name=str(c), split=split, path=os.path.join(base, "images", p)
            )
            for c, p in sorted(in_split)
        ]
    return result
