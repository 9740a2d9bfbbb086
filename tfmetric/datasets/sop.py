"""Stanford Online Products (Oh Song et al., CVPR 2016) from its published layout.

Splits as listed in ``Ebay_train.txt`` (59,551 images, 11,318 classes) and ``Ebay_test.txt``
(60,502 images, 11,316 classes). Labels are contiguous within each split in class-id order;
``class_name`` is the original ``class_id``; ``image_id`` the listed path
(``bicycle_final/111085122871_0.JPG``), relative to ``Stanford_Online_Products/``.
"""

import os

import tensorflow as tf

from tfmetric.datasets import download as download_lib
from tfmetric.datasets.base import DatasetFormatError, ImageRecord, check_header, read_lines

NAME = "sop"
SPLITS = ("train", "test")
TRAIN_SPLIT = "train"
QUERY_SPLIT = "test"
GALLERY_SPLIT = None
GENERATED = False
LOAD_OPTIONS = ()

BASE = "Stanford_Online_Products"
LISTS = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}
HEADER = ["image_id", "class_id", "super_class_id", "path"]
URLS = [
    "http://ftp.cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
    "ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
]
ARCHIVE = "Stanford_Online_Products.zip"
MD5 = "7f73d41a2f44250d4779881525aea32e"

INSTRUCTIONS = f"""\
Download Stanford_Online_Products.zip (2.9 GB, md5 {MD5}), linked from
https://cvgl.stanford.edu/projects/lifted_struct/ ({URLS[0]}),
or pass --download to the converter, and unzip it into <raw-dir>:

  unzip Stanford_Online_Products.zip -d <raw-dir>

so that these exist:
  <raw-dir>/Stanford_Online_Products/Ebay_train.txt, Ebay_test.txt
  <raw-dir>/Stanford_Online_Products/bicycle_final/*.JPG ...

where <raw-dir> defaults to <data-dir>/raw/sop (data dir: $TFMETRIC_DATA_DIR or ~/tfmetric_data)."""


def download(raw_dir: str) -> None:
    """Fetches, verifies (MD5) and extracts the official archive unless the layout is present."""
    if all(tf.io.gfile.exists(os.path.join(raw_dir, BASE, f)) for f in LISTS.values()):
        return
    download_lib.fetch_archive(URLS, MD5, raw_dir, INSTRUCTIONS, filename=ARCHIVE)


def _read_list(path: str):
    """[(class_id, path)] of one Ebay_*.txt, with the file and line of any bad line."""
    lines = read_lines(path, f"Missing {path}.\n\n{INSTRUCTIONS}")
    check_header(path, lines, HEADER)
    rows = []
    for number, line in lines[1:]:
        parts = line.split()
        if len(parts) != 4 or not all(p.isdigit() for p in parts[:3]):
            raise DatasetFormatError(
                f"{path}:{number}: expected '<image_id> <class_id> <super_class_id> <path>', got {line!r}"
            )
        rows.append((int(parts[1]), parts[3]))
    return rows


def load(raw_dir: str):
    """dict split -> list[ImageRecord]; see the module docstring for the protocol."""
    base = os.path.join(raw_dir, BASE)
    result = {}
    for split in SPLITS:
        rows = _read_list(os.path.join(base, LISTS[split]))
        labels = {c: i for i, c in enumerate(sorted({c for c, _ in rows}))}
        result[split] = [
            ImageRecord(image_id=p, label=labels[c], class_name=str(c), split=split, path=os.path.join(base, p))
            for c, p in sorted(rows)
        ]
    return result
