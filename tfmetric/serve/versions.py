"""The index a service answers from, and its replacement by newer versions without downtime.

``--index`` is either an index directory (it has ``index.json``, or ``manifest.json`` from an
earlier release) or a directory of integer versions of one, as ``python -m tfmetric.search build
--index indexes/products/3`` writes them:

    indexes/products/1/   complete (index.json, written last)
    indexes/products/2/   complete: served
    indexes/products/3/   still being built (no index.json yet): ignored until it is complete

A background thread looks for a higher complete version every ``poll_seconds``, loads it fully
beside the one being served, then replaces the served snapshot with one assignment (atomic in
Python). A request takes the snapshot once when it starts and uses only it, so requests in flight
finish on the old version, which is freed when the last of them ends. A version that fails to
load is logged once and skipped; the old one stays served.
"""

import logging
import os
import threading
from typing import Any, NamedTuple

from tfmetric.search import index as index_lib

_LOG = logging.getLogger(__name__)


class Snapshot(NamedTuple):
    """One loaded index version: everything a request needs, immutable once published."""

    version: int | None  # None when --index is a single index directory
    directory: str
    searcher: Any  # tfmetric.search.modes.ModeSearcher
    rows_by_id: dict  # catalog id -> first row, for the thumbnails of neighbours


def is_index(directory):
    return index_lib.INDEX_MANIFEST.exists(directory)


def complete_versions(root):
    """[(version, directory)] of the complete integer versions under ``root``, ascending."""
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name.isdigit() and os.path.isdir(path) and is_index(path):
            found.append((int(name), path))
    return sorted(found)


class IndexVersions:
    """The served Snapshot of ``root``, refreshed from newer versions.

    Args:
      root: an index directory or a directory of integer versions.
      load: directory -> (searcher, rows_by_id); raises on an unusable index.
      poll_seconds: interval of the background check (``start``).
    """

    def __init__(self, root, load, poll_seconds=2.0):
        if not os.path.isdir(root):
            raise NotADirectoryError(
                f"index_dir is not a directory; pass an index directory or a directory of "
                f"integer versions of one (python -m tfmetric.search build --index DIR/1). "
                f"Received: index_dir={root}"
            )
        self.root, self._load, self.poll_seconds = root, load, poll_seconds
        self.versioned = not is_index(root)
        self._failed = set()
        self._stop = threading.Event()
        self._thread = None
        if self.versioned:
            versions = complete_versions(root)
            if not versions:
                raise FileNotFoundError(
                    f"index_dir is neither an index (no {index_lib.MANIFEST_NAME}) nor a "
                    f"directory holding a complete integer version (1/, 2/, ... with "
                    f"{index_lib.MANIFEST_NAME}). Received: index_dir={root}"
                )
            version, directory = versions[-1]
        else:
            version, directory = None, root
        self.current = self._snapshot(version, directory)

    def _snapshot(self, version, directory):
        searcher, rows_by_id = self._load(directory)
        return Snapshot(version, directory, searcher, rows_by_id)

    def refresh(self):
        """Switches to the highest complete version if it is newer; True when it switched."""
        if not self.versioned:
            return False
        candidates = [
            (v, d) for v, d in complete_versions(self.root) if v > self.current.version and v not in self._failed
        ]
        if not candidates:
            return False
        version, directory = candidates[-1]
        try:
            snapshot = self._snapshot(version, directory)
        except Exception as e:  # a bad new version must not take the service down
            self._failed.add(version)
            _LOG.error("Not switching to index version %d (%s): %s", version, directory, e)
            return False
        previous, self.current = self.current, snapshot  # the switch: one reference assignment
        _LOG.warning("Switched from index version %s to %d (%s)", previous.version, version, directory)
        return True

    def _watch(self):
        while not self._stop.wait(self.poll_seconds):
            try:
                self.refresh()
            except OSError as e:  # e.g. the root is briefly unreadable
                _LOG.error("Checking %s for new index versions failed: %s", self.root, e)

    def start(self):
        if self.versioned and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="index-versions", daemon=True)
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
