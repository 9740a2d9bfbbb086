"""CUB-200-2011: CUB_200_2011/*.txt -> classes 1-100 train, 101-200 test."""

import os
import urllib.error

import pytest

from tests import fixtures as fx
from tfmetric.datasets import DatasetFormatError, DatasetNotFoundError, cub200, download, get_dataset


def test_module_contract():
    assert get_dataset("cub200") is cub200
    assert (cub200.SPLITS, cub200.QUERY_SPLIT, cub200.GALLERY_SPLIT) == (("train", "test"), "test", None)


def test_split_by_class(tmp_path):
    root = fx.make_cub200(str(tmp_path), {1: 2, 100: 1, 101: 1, 200: 2})
    splits = cub200.load(root)
    assert [(r.label, r.class_name) for r in splits["train"]] == [(0, "1"), (0, "1"), (1, "100")]
    assert [(r.label, r.class_name) for r in splits["test"]] == [(0, "101"), (1, "200"), (1, "200")]
    first = splits["train"][0]
    assert first.image_id == "001.Bird_1/Bird_1_0000.jpg"
    assert first.path == os.path.join(root, "CUB_200_2011", "images", "001.Bird_1", "Bird_1_0000.jpg")
    assert all(os.path.exists(r.path) for rs in splits.values() for r in rs)


@pytest.mark.parametrize("missing", ["images.txt", "image_class_labels.txt", "classes.txt"])
def test_missing_annotation_file(tmp_path, missing):
    root = fx.make_cub200(str(tmp_path))
    path = os.path.join(root, "CUB_200_2011", missing)
    os.remove(path)
    with pytest.raises(DatasetNotFoundError) as e:
        cub200.load(root)
    assert path in str(e.value) and "CUB_200_2011.tgz" in str(e.value)


def test_bad_lines_name_file_and_line(tmp_path):
    root = fx.make_cub200(str(tmp_path))
    images = os.path.join(root, "CUB_200_2011", "images.txt")
    lines = open(images).read().splitlines()
    fx.write_text(images, lines[:2] + ["three 003.x/y.jpg"] + lines[3:])
    with pytest.raises(DatasetFormatError, match=r"images.txt:3: expected '<id> <value>'"):
        cub200.load(root)
    fx.write_text(images, lines + [lines[0]])
    with pytest.raises(DatasetFormatError, match=rf"images.txt:{len(lines) + 1}: duplicate id 1"):
        cub200.load(root)
    fx.write_text(images, lines + ["99 001.Bird_1/extra.jpg"])
    with pytest.raises(DatasetFormatError, match="no class for image 99"):
        cub200.load(root)


def test_download_offline_says_what_to_get(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetNotFoundError) as e:
        cub200.download(str(tmp_path))
    message = str(e.value)
    assert "network is unreachable" in message and cub200.URL in message
    assert cub200.MD5 in message and "<raw-dir>/CUB_200_2011/images.txt" in message


def test_download_is_a_no_op_when_present(tmp_path, monkeypatch):
    monkeypatch.setattr(download, "fetch_archive", lambda *a, **k: pytest.fail("downloaded"))
    cub200.download(fx.make_cub200(str(tmp_path)))
