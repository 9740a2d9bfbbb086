"""Any ``<root>/<class_name>/<image>`` tree, split into disjoint train and test classes.

By default the first half of the sorted class names (rounded up) are train classes and the rest
test classes; ``train_classes`` / ``test_classes`` (a file with one class name per line, or a list
of names) choose them instead, and a class named in neither is left out. Images may sit in
sub-folders of their class folder. Every non-hidden file is listed: a file that turns out not to be
an image is reported and skipped by the converter, not dropped silently here. Labels are
contiguous within each split in sorted class-name order; ``class_name`` is the folder name;
``image_id`` the path relative to the root (``<class>/<file>``).
"""

import os
from collections.abc import Iterable

import tensorflow as tf

from tfmetric.datasets.base import DatasetFormatError, DatasetNotFoundError, ImageRecord, read_lines

NAME = "imagefolder"
SPLITS = ("train", "test")
TRAIN_SPLIT = "train"
QUERY_SPLIT = "test"
GALLERY_SPLIT = None
GENERATED = False
LOAD_OPTIONS = ("train_classes", "test_classes")  # set by the converter's flags

INSTRUCTIONS = """\
Put one folder per class under <raw-dir> (pass it with --raw-dir):

  <raw-dir>/<class_name>/<image>.jpg ...

Classes are split by sorted name (first half train) unless --train-classes FILE and/or
--test-classes FILE (one class name per line) are given."""

ClassSpec = str | Iterable[str] | None


def _hidden(name: str) -> bool:
    return name.startswith(".")


def _class_list(spec: ClassSpec, known: list[str], root: str) -> list[str] | None:
    if spec is None:
        return None
    if isinstance(spec, str):  # a file of class names
        named = [
            (f"{spec}:{n}", line.strip())
            for n, line in read_lines(spec, f"Class list {spec} does not exist.")
            if not line.lstrip().startswith("#")
        ]
    else:
        named = [(f"class list entry {n}", str(name)) for n, name in enumerate(spec, start=1)]
    known_set = set(known)
    for where, name in named:
        if name not in known_set:
            raise DatasetFormatError(f"{where}: class {name!r} is not a folder of {root}")
    return [name for _, name in named]


def _local(path: str) -> bool:
    return "://" not in path


def _printable(name: str) -> str:
    """A name os.listdir surrogate-escaped (not UTF-8) with its odd bytes as ``\\xff``: ids and
    class names are UTF-8 features; the converter skips such a file and counts it."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _images(class_dir: str) -> list[str]:
    """Non-hidden files under ``class_dir``, recursively, as paths relative to it, sorted."""
    found = []
    # gfile decodes every name in a directory as UTF-8 and fails on one that is not; os.walk keeps
    # such a name (surrogate-escaped) so that the converter can skip it, naming it.
    for dirpath, dirnames, filenames in (os.walk if _local(class_dir) else tf.io.gfile.walk)(class_dir):
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        rel = os.path.relpath(dirpath, class_dir)
        for name in filenames:
            if not _hidden(name):
                found.append(name if rel == "." else f"{rel}/{name}")
    return sorted(found)


def load(raw_dir: str, train_classes: ClassSpec = None, test_classes: ClassSpec = None):
    """dict split -> list[ImageRecord]; see the module docstring for the split rules."""
    if not tf.io.gfile.isdir(raw_dir):
        raise DatasetNotFoundError(f"Image folder {raw_dir} does not exist.\n\n{INSTRUCTIONS}")
    listdir, isdir = (os.listdir, os.path.isdir) if _local(raw_dir) else (tf.io.gfile.listdir, tf.io.gfile.isdir)
    names = sorted(d.rstrip("/") for d in listdir(raw_dir) if not _hidden(d) and isdir(os.path.join(raw_dir, d)))
    if len(names) < 2:
        raise DatasetNotFoundError(
            f"{raw_dir} holds {len(names)} class folder(s); at least 2 are "
            f"needed (one for training, one for testing).\n\n{INSTRUCTIONS}"
        )
    train = _class_list(train_classes, names, raw_dir)
    test = _class_list(test_classes, names, raw_dir)
    if train is None and test is None:
        half = (len(names) + 1) // 2
        train, test = names[:half], names[half:]
    elif train is None:
        train = [n for n in names if n not in set(test)]
    elif test is None:
        test = [n for n in names if n not in set(train)]
    overlap = sorted(set(train) & set(test))
    if overlap:
        raise DatasetFormatError(f"Classes in both train and test: {', '.join(overlap[:10])}")

    result = {}
    for split, classes in (("train", train), ("test", test)):
        files = {name: _images(os.path.join(raw_dir, name)) for name in sorted(set(classes))}
        non_empty = [name for name in files if files[name]]  # keeps labels contiguous
        result[split] = [
            ImageRecord(
                image_id=_printable(f"{name}/{rel}"),
                label=label,
                class_name=_printable(name),
                split=split,
                path=os.path.join(raw_dir, name, rel),
            )
            for label, name in enumerate(non_empty)
            for rel in files[name]
        ]
    return result
