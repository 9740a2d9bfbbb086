"""Stanford Online Products: Ebay_train.txt / Ebay_test.txt -> train / test."""

import os
import urllib.error

import pytest

from tests import fixtures as fx
from tfmetric.datasets import DatasetFormatError, DatasetNotFoundError, download, get_dataset, sop


def test_module_contract():
    assert get_dataset("sop") is sop
    assert (sop.SPLITS, sop.QUERY_SPLIT, sop.GALLERY_SPLIT) == (("train", "test"), "test", None)


def test_splits_as_listed(tmp_path):
    root = fx.make_sop(str(tmp_path), train={5: 2, 2: 1}, test={11400: 1, 11319: 2})
    splits = sop.load(root)
    assert [(r.label, r.class_name) for r in splits["train"]] == [(0, "2"), (1, "5"), (1, "5")]
    assert [(r.label, r.class_name) for r in splits["test"]] == [(0, "11319"), (0, "11319"), (1, "11400")]
    first = splits["train"][0]
    assert first.image_id == "bicycle_final/100000000002_0.JPG"
    assert first.path == os.path.join(root, "Stanford_Online_Products", first.image_id)
    assert all(os.path.exists(r.path) for rs in splits.values() for r in rs)


def test_missing_list(tmp_path):
    root = fx.make_sop(str(tmp_path))
    path = os.path.join(root, "Stanford_Online_Products", "Ebay_test.txt")
    os.remove(path)
    with pytest.raises(DatasetNotFoundError) as e:
        sop.load(root)
    assert path in str(e.value) and "Stanford_Online_Products.zip" in str(e.value)


def test_bad_header_and_rows(tmp_path):
    root = fx.make_sop(str(tmp_path))
    path = os.path.join(root, "Stanford_Online_Products", "Ebay_train.txt")
    lines = open(path).read().splitlines()
    fx.write_text(path, ["id class path"] + lines[1:])
    with pytest.raises(DatasetFormatError, match=r"Ebay_train.txt:1: expected the header"):
        sop.load(root)
    fx.write_text(path, lines[:3] + ["4 x 1 bicycle_final/a.JPG"] + lines[3:])
    with pytest.raises(DatasetFormatError, match=r"Ebay_train.txt:4: expected"):
        sop.load(root)


def test_download_offline_tries_every_mirror(tmp_path, monkeypatch):
    tried = []

    def offline(url, timeout=None):
        tried.append(url)
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(DatasetNotFoundError) as e:
        sop.download(str(tmp_path))
    assert tried == sop.URLS
    assert "Could not download Stanford_Online_Products.zip" in str(e.value)
    assert "unzip Stanford_Online_Products.zip -d <raw-dir>" in str(e.value)
