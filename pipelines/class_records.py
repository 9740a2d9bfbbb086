"""A class's listed records as the converter's pipeline carries them, and reading their bytes.

``class_units`` turns a dataset's listing into one ``ClassRecords`` per class (the elements that
enter the pipeline, without bytes); ``ClassReader`` reads, or renders, a class's images once, in
the order of its shard. Read failures are reasons (``MISSING``, ``UNREADABLE``, ``BAD_NAME``), not
exceptions: the converter skips and lists those images.
"""

import collections
import dataclasses
import os

import tensorflow as tf

from tfmetric import datasets

MISSING, UNREADABLE, BAD_NAME = "missing", "unreadable", "bad_file_name"


def printable_path(path):
    """``path`` with the bytes of a non-UTF-8 file name (surrogate-escaped by os.listdir) as ``\\xff``."""
    if path is None:
        return None
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def open_file(path: str, mode: str):
    """Local files through Python's own file object (TensorFlow's costs more per call), others
    through ``tf.io.gfile``."""
    return open(path, mode) if "://" not in path else tf.io.gfile.GFile(path, mode)


class ClassRecords:
    """One class's listed records as one object; iterating and indexing give ImageRecords.

    Beam's default coder pickles it whole (a plain tuple it encodes element by element, pickling
    every record on its own, at each shuffle), the fields all its records share are stored once,
    and Dask's tokenizer hashes it as one pickle, not record by record (``dask.bag.from_sequence``
    on the DaskRunner).

    Raises:
      ValueError: ``records`` is empty, or its records differ in split, label or class name.
    """

    __slots__ = ("split", "label", "class_name", "_ids", "_paths", "_data")

    def __init__(self, records):
        records = list(records)
        if not records:
            raise ValueError("records must not be empty. Received: records=[]")
        first = records[0]
        if any((r.split, r.label, r.class_name) != (first.split, first.label, first.class_name) for r in records):
            raise ValueError(
                "records of one class must share split, label and class name. "
                f"Received: {sorted({(r.split, r.label, r.class_name) for r in records})}"
            )
        self.split, self.label, self.class_name = first.split, first.label, first.class_name
        self._ids = tuple(r.image_id for r in records)
        self._paths = tuple(r.path for r in records)
        self._data = tuple(r.data for r in records)

    def _record(self, i):
        return datasets.ImageRecord(
            self._ids[i], self.label, self.class_name, self.split, self._paths[i], self._data[i]
        )

    def __len__(self):
        return len(self._ids)

    def __getitem__(self, i):
        return self._record(range(len(self))[i])

    def __iter__(self):
        return map(self._record, range(len(self)))

    def _state(self):
        return self.split, self.label, self.class_name, self._ids, self._paths, self._data

    def __eq__(self, other):
        return isinstance(other, ClassRecords) and self._state() == other._state()

    def __hash__(self):
        return hash(self._state())

    def __repr__(self):
        return (
            f"ClassRecords(split={self.split!r}, label={self.label}, class_name={self.class_name!r}, "
            f"{len(self)} records)"
        )


def class_units(records: dict, label_spaces: dict | None = None) -> list:
    """dict split -> ImageRecords -> one ClassRecords per (split, label), in listing order.

    Each record's label becomes the rank of its label among those listed in its label space (a
    split, or the splits ``label_spaces`` maps to one space): the label its class has in the
    shards unless some class of the space keeps no image.
    """
    spaces = label_spaces or {}
    listed = collections.defaultdict(set)
    for split, split_records in records.items():
        listed[spaces.get(split, split)].update(r.label for r in split_records)
    ranks = {space: {label: rank for rank, label in enumerate(sorted(labels))} for space, labels in listed.items()}
    units = collections.defaultdict(list)
    for split in sorted(records):
        rank = ranks[spaces.get(split, split)]
        for record in records[split]:
            label = rank[record.label]
            units[(split, record.label)].append(
                record if record.label == label else dataclasses.replace(record, label=label)
            )
    return [ClassRecords(unit) for _, unit in sorted(units.items())]


class ClassReader:
    """Bytes of one class's records: in memory, from their path (any filesystem TensorFlow reads), or
    rendered by the dataset module's ``generate_class`` (generated datasets list no bytes).

    Args:
      dataset: the dataset name, for ``generate_class``.
    """

    def __init__(self, dataset: str):
        self._dataset = dataset

    def read(self, records):
        """Yields (record, bytes or None, (reason, detail) or None) for ``records`` (one class's, in
        listing order) sorted by image id, the order of the class's records in its shard; files
        are read one at a time."""
        order = sorted(range(len(records)), key=lambda i: records[i].image_id)
        if records and records[0].path is None and records[0].data is None:
            encoded = datasets.get_dataset(self._dataset).generate_class(records[0].class_name)
            if len(encoded) != len(records):
                raise RuntimeError(
                    f"{self._dataset}.generate_class({records[0].class_name!r}) gave "
                    f"{len(encoded)} images for {len(records)} listed ones"
                )
            for i in order:
                yield records[i], encoded[i], None
            return
        for i in order:
            yield self._read_one(records[i])

    @staticmethod
    def _read_one(record):
        if record.data is not None:
            return record, record.data, None
        if printable_path(record.path) != record.path:  # TensorFlow's file API cannot open it
            return record, None, (BAD_NAME, "the file name is not valid UTF-8; rename the file to keep it")
        try:
            with open_file(record.path, "rb") as f:
                return record, f.read(), None
        except (tf.errors.NotFoundError, FileNotFoundError):
            return record, None, (MISSING, "listed in the annotations but not on disk")
        except (tf.errors.OpError, OSError) as e:
            return record, None, (UNREADABLE, str(e).splitlines()[0] if str(e) else repr(e))
