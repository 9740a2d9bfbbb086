"""DeepFashion In-Shop Clothes Retrieval (Liu et al., CVPR 2016) from its published layout.

``list_eval_partition.txt`` gives train (25,882 images, 3,997 items), query (14,218) and gallery
(12,612); query and gallery share one label space (the 3,985 test items, labelled in item-id order
over both), so a query's label equals the label of its item's gallery images. ``class_name`` is the
item id (``id_00000002``); ``image_id`` the listed path (``img/WOMEN/Dresses/...jpg``).
"""

import os

import tensorflow as tf

from tfmetric.datasets.base import DatasetFormatError, DatasetNotFoundError, ImageRecord, check_header, read_lines

NAME = "inshop"
SPLITS = ("train", "query", "gallery")
TRAIN_SPLIT = "train"
QUERY_SPLIT = "query"
GALLERY_SPLIT = "gallery"
GENERATED = False
LOAD_OPTIONS = ()
# Query and gallery share one label map (built by the converter from the union of their items).
LABEL_SPACES = {"query": "test", "gallery": "test"}

PARTITION = "list_eval_partition.txt"
HEADER = ["image_name", "item_id", "evaluation_status"]

INSTRUCTIONS = """\
In-Shop Clothes Retrieval is distributed through Google Drive only (no stable direct link): from
https://mmlab.ie.cuhk.edu.hk/projects/DeepFashion/InShopRetrieval.html open the "In-shop Clothes
Retrieval Benchmark" folder and fetch Img/img.zip and Eval/list_eval_partition.txt, then arrange

  <raw-dir>/list_eval_partition.txt
  <raw-dir>/img/WOMEN/Dresses/id_00000002/02_1_front.jpg ...      (unzip img.zip -d <raw-dir>)

where <raw-dir> defaults to <data-dir>/raw/inshop (data dir: $TFMETRIC_DATA_DIR or ~/tfmetric_data)."""


def download(raw_dir: str) -> None:
    """No stable source exists; raises DatasetNotFoundError with the instructions unless present."""
    if not tf.io.gfile.exists(os.path.join(raw_dir, PARTITION)):
        raise DatasetNotFoundError(f"Cannot download inshop automatically.\n\n{INSTRUCTIONS}")


def _read_partition(path: str):
    """[(split, item_id, image_name)], checking the count line, the header and every row."""
    lines = read_lines(path, f"Missing {path}.\n\n{INSTRUCTIONS}")
    count_line, count = lines[0] if lines else (1, "")
    if not count.strip().isdigit():
        raise DatasetFormatError(f"{path}:{count_line}: expected the image count, got {count!r}")
    check_header(path, lines[1:], HEADER)
    rows = []
    for number, line in lines[2:]:
        parts = line.split()
        if len(parts) != 3 or parts[2] not in SPLITS:
            raise DatasetFormatError(
                f"{path}:{number}: expected '<image_name> <item_id> train|query|gallery', got {line!r}"
            )
        rows.append((parts[2], parts[1], parts[0]))
    if len(rows) != int(count):
        raise DatasetFormatError(f"{path}:{count_line}: announces {int(count)} images but lists {len(rows)}")
    return rows


def load(raw_dir: str):
    """dict split -> list[ImageRecord]; see the module docstring for the protocol."""
    rows = _read_partition(os.path.join(raw_dir, PARTITION))
    train_items = sorted({item for split, item, _ in rows if split == "train"})
    test_items = sorted({item for split, item, _ in rows if split != "train"})
    label_spaces = {"train": {item: i for i, item in enumerate(train_items)}}
    label_spaces["query"] = label_spaces["gallery"] = {item: i for i, item in enumerate(test_items)}
    result = {}
    for split in SPLITS:
        labels = label_spaces[split]
        result[split] = [
            ImageRecord(
                image_id=name, label=labels[item], class_name=item, split=split, path=os.path.join(raw_dir, name)
            )
            for s, item, name in sorted(rows, key=lambda r: (r[1], r[2]))
            if s == split
        ]
    return result
