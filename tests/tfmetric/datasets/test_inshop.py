"""In-Shop: list_eval_partition.txt -> train / query / gallery, query and gallery share labels."""

import os

import pytest

from tests import fixtures as fx
from tfmetric.datasets import DatasetFormatError, DatasetNotFoundError, get_dataset, inshop


def test_module_contract():
    assert get_dataset("inshop") is inshop
    assert (inshop.SPLITS, inshop.TRAIN_SPLIT, inshop.QUERY_SPLIT, inshop.GALLERY_SPLIT) == (
        ("train", "query", "gallery"),
        "train",
        "query",
        "gallery",
    )


def test_splits_and_shared_label_space(tmp_path):
    root = fx.make_inshop(str(tmp_path))
    splits = inshop.load(root)
    assert [(r.label, r.class_name) for r in splits["train"]] == ([(0, "id_00000001")] * 2 + [(1, "id_00000003")] * 3)
    # id_00000005 has gallery images only; it still takes its place in the shared label space.
    assert [(r.label, r.class_name) for r in splits["query"]] == ([(0, "id_00000002")] + [(1, "id_00000004")] * 2)
    assert [(r.label, r.class_name) for r in splits["gallery"]] == (
        [(0, "id_00000002")] * 2 + [(1, "id_00000004"), (2, "id_00000005")]
    )
    first = splits["train"][0]
    assert first.image_id.startswith("img/WOMEN/Dresses/id_00000001/")
    assert first.path == os.path.join(root, first.image_id)
    assert all(os.path.exists(r.path) for rs in splits.values() for r in rs)


def test_missing_partition(tmp_path):
    with pytest.raises(DatasetNotFoundError) as e:
        inshop.load(str(tmp_path))
    assert "list_eval_partition.txt" in str(e.value) and "Google Drive" in str(e.value)
    with pytest.raises(DatasetNotFoundError, match="Cannot download inshop"):
        inshop.download(str(tmp_path))


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda lines: ["many"] + lines[1:], ":1: expected the image count"),
        (lambda lines: [lines[0], "image item status"] + lines[2:], ":2: expected the header"),
        (lambda lines: lines[:4] + [lines[4].replace("train", "val")] + lines[5:], ":5: expected"),
        (lambda lines: [str(int(lines[0]) + 1)] + lines[1:], ":1: announces"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path, edit, where):
    root = fx.make_inshop(str(tmp_path))
    path = os.path.join(root, "list_eval_partition.txt")
    fx.write_text(path, edit(open(path).read().splitlines()))
    with pytest.raises(DatasetFormatError, match=f"list_eval_partition.txt{where}"):
        inshop.load(root)
