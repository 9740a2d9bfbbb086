"""Verified downloads of raw dataset archives (``--download`` of the converter).

A dataset module whose archive is public (``cub200``, ``sop``) calls ``fetch_archive`` from its
``download(raw_dir)``; nothing downloads unless the user asks for it.
"""

import hashlib
import os
import posixpath
import sys
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence

from tfmetric.datasets.base import DatasetNotFoundError


def _md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _extract(archive: str, dest_dir: str) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest_dir)  # zipfile strips absolute paths and ".." components
    else:
        with tarfile.open(archive) as t:
            t.extractall(dest_dir, filter="data")  # refuses links and paths outside dest_dir


def fetch_archive(
    urls: Sequence[str], md5: str, dest_dir: str, instructions: str, filename: str | None = None, timeout: float = 60.0
) -> None:
    """Downloads the first reachable of ``urls``, checks its MD5, extracts it into ``dest_dir``.

    Raises:
      DatasetNotFoundError: no URL answered (offline machine, dead link) or the checksum differs;
        the message carries ``instructions`` for getting the files by hand.
    """
    if "://" in dest_dir:
        raise ValueError(
            f"Downloads go to a local directory; fetch the archive, extract it and "
            f"copy the files to the remote one. Received: dest_dir={dest_dir!r}"
        )
    os.makedirs(dest_dir, exist_ok=True)
    name = filename or posixpath.basename(urllib.parse.urlparse(urls[0]).path)
    archive = os.path.join(dest_dir, name)
    partial = archive + ".part"
    failures = []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as f:
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
            break
        except (urllib.error.URLError, OSError, ValueError) as e:
            failures.append(f"{url}: {getattr(e, 'reason', e)}")
    else:
        if os.path.exists(partial):
            os.remove(partial)
        raise DatasetNotFoundError(f"Could not download {name} ({'; '.join(failures)}).\n\n{instructions}")
    actual = _md5(partial)
    if actual != md5:
        os.remove(partial)
        raise DatasetNotFoundError(
            f"{name} from {url} failed verification: md5 {actual}, expected {md5} (incomplete or "
            f"changed download; it was deleted).\n\n{instructions}"
        )
    os.replace(partial, archive)
    sys.stderr.write(f"Verified {name} (md5 {md5}); extracting into {dest_dir}\n")
    _extract(archive, dest_dir)
    os.remove(archive)
