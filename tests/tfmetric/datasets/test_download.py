"""fetch_archive: the first reachable URL, verified by MD5, extracted; offline, the instructions."""

import hashlib
import io
import os
import tarfile
import urllib.error

import pytest

from tests import fixtures as fx
from tfmetric import datasets
from tfmetric.datasets import download


def tgz_with(files):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_fetch_archive_verifies_and_extracts(tmp_path):
    archive = tgz_with({"CUB_200_2011/images.txt": b"1 a/b.jpg\n"})
    source = fx.write_bytes(str(tmp_path / "src" / "CUB_200_2011.tgz"), archive)
    dest = str(tmp_path / "raw")
    download.fetch_archive([f"file://{source}"], hashlib.md5(archive).hexdigest(), dest, "HOWTO")
    assert open(os.path.join(dest, "CUB_200_2011", "images.txt")).read() == "1 a/b.jpg\n"
    assert os.listdir(dest) == ["CUB_200_2011"]  # the archive is removed after extraction

    with pytest.raises(datasets.DatasetNotFoundError, match="(?s)failed verification.*HOWTO"):
        download.fetch_archive([f"file://{source}"], "0" * 32, str(tmp_path / "raw2"), "HOWTO")
    assert os.listdir(tmp_path / "raw2") == []


def test_fetch_archive_offline(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(download.urllib.request, "urlopen", offline)
    with pytest.raises(datasets.DatasetNotFoundError) as e:
        download.fetch_archive(["https://a/x.zip", "ftp://b/x.zip"], "0" * 32, str(tmp_path), "HOWTO")
    assert "https://a/x.zip: [Errno -3]" in str(e.value) and "ftp://b/x.zip" in str(e.value)
    assert str(e.value).endswith("HOWTO")
