"""The record every dataset module yields, and the errors they raise.

A dataset module (``tfmetric/datasets/<name>.py``) parses one raw published layout into
``ImageRecord``s with labels already assigned: contiguous ``0..C-1`` within a split, in the
dataset's natural class order (numeric class ids sort numerically). Splits that share one label
space (In-Shop query/gallery) use the same label for the same class.
"""

import dataclasses
import os
from collections.abc import Sequence

import tensorflow as tf


class DatasetNotFoundError(FileNotFoundError):
    """Raw files are missing; the message says which files are expected where and how to get them."""


class DatasetFormatError(ValueError):
    """The raw layout itself is wrong (unparsable annotation file); the message names file and line."""


@dataclasses.dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset split.

    Args:
      image_id: stable unique id within the dataset, e.g. the path relative to the raw dir.
      label: contiguous integer label within the split (``image/class/label``).
      class_name: the original class id or name (``image/class/name``).
      split: split name, e.g. ``train`` or ``test``.
      path: absolute path of the image file for on-disk datasets, else None.
      data: encoded image bytes for generated / in-memory datasets, else None.
    """

    image_id: str
    label: int
    class_name: str
    split: str
    path: str | None = None
    data: bytes | None = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        with open(self.path, "rb") as f:
            return f.read()


def read_lines(path: str, missing_message: str) -> list[tuple[int, str]]:
    """``(line number, line)`` of every non-blank line of an annotation file (local or ``gs://``).

    Raises:
      DatasetNotFoundError: ``path`` does not exist; the error is ``missing_message``.
    """
    if not tf.io.gfile.exists(path):
        raise DatasetNotFoundError(missing_message)
    with tf.io.gfile.GFile(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    return [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]


def check_header(path: str, lines: Sequence[tuple[int, str]], header: Sequence[str]) -> None:
    """DatasetFormatError naming the file and line unless the first line is ``header`` (by words)."""
    number, line = lines[0] if lines else (1, "")
    if line.split() != list(header):
        raise DatasetFormatError(f"{path}:{number}: expected the header {' '.join(header)!r}, got {line!r}")


def default_data_dir() -> str:
    """``$TFMETRIC_DATA_DIR``, else ``~/tfmetric_data``."""
    return os.environ.get("TFMETRIC_DATA_DIR") or os.path.join(os.path.expanduser("~"), "tfmetric_data")


def raw_dir(data_dir: str, dataset: str) -> str:
    return os.path.join(data_dir, "raw", dataset)


def tfrecord_dir(data_dir: str, dataset: str) -> str:
    return os.path.join(data_dir, "tfrecords", dataset)
