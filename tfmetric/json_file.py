"""The project's JSON files: read with errors that name them, written atomically, versioned artifacts.

``json.load`` alone reports "Expecting value: line 1 column 1 (char 0)" for a truncated or empty
file, which names no file; these raise ``ValueError`` naming the file and what is wrong.

``write_json`` writes a temporary file beside the target and renames it over the target, so a
reader sees the old file or the new one, never half of one. ``Artifact`` describes one kind of
versioned JSON file the project writes into a directory and other code reads back:

    ========================  =======================  ================  ==============================
    artifact                  file                     version field     written by
    ========================  =======================  ================  ==============================
    dataset manifest          manifest.json            schema_version    pipelines.build_tfrecords
    embedding catalog         catalog.json             format_version    pipelines.embed_catalog
    index manifest            index.json               format_version    python -m tfmetric.search build
    model card                model_card.json          card_version      python -m tfmetric.export
    ========================  =======================  ================  ==============================

(tfmetric/data/manifest.py, tfmetric/search/catalog.py, tfmetric/search/index.py and
tfmetric/export/model_card.py define them.) Catalogs and indexes written before their files had
their own names hold ``manifest.json``; it is still read.

Paths with ``://`` (gs:// and the other filesystems TensorFlow reads) go through ``tf.io.gfile``;
TensorFlow is imported only for them, so configs and CLIs read local JSON without it.
"""

import dataclasses
import json
import os


def _gfile():
    import tensorflow as tf  # noqa: PLC0415  only for URIs (see the module docstring)

    return tf.io.gfile


def _is_remote(path):
    return "://" in str(path)


def parse_json(text, path):
    """The JSON value in ``text`` (the contents of ``path``); ValueError naming ``path`` if it is not JSON."""
    try:
        return json.loads(text)
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"{path} is not valid JSON ({e}); it may be truncated or edited by hand.") from None


def read_json(path):
    """The JSON value in the file ``path`` (local or a URI; see parse_json)."""
    if _is_remote(path):
        with _gfile().GFile(path, "rb") as f:
            return parse_json(f.read(), path)
    with open(path, "rb") as f:
        return parse_json(f.read(), path)


def exists(path):
    return _gfile().exists(path) if _is_remote(path) else os.path.exists(path)


def remove(path):
    """Deletes the file ``path`` if it exists."""
    if _is_remote(path):
        if _gfile().exists(path):
            _gfile().remove(path)
    elif os.path.exists(path):
        os.remove(path)


def write_json(path, value, *, indent=2, sort_keys=True):
    """Writes ``value`` as JSON to ``path`` atomically: readers never see a half-written file.

    Local files are synced to disk before the rename. An OSError (a full disk, a size limit) names
    ``path`` and leaves no temporary file behind.
    """
    text = json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n"
    tmp = f"{path}.tmp"
    if _is_remote(path):
        with _gfile().GFile(tmp, "w") as f:
            f.write(text)
        _gfile().rename(tmp, path, overwrite=True)
        return path
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a failed write names no file
        if os.path.exists(tmp):
            os.remove(tmp)
        raise type(e)(e.errno, e.strerror, e.filename or path) from None
    return path


class ArtifactError(ValueError):
    """A JSON artifact that exists but is not one this tfmetric reads (not an object, another version)."""


@dataclasses.dataclass(frozen=True)
class Artifact:
    """One kind of versioned JSON file that marks a directory complete (see the module docstring).

    Args:
      kind: what the file is, in messages ("embedding catalog", "model card", ...).
      file_name: its name inside the directory it describes.
      version_field: the top-level key holding its integer version.
      version: the version this tfmetric writes.
      readable: the versions this tfmetric reads; default ``(version,)``.
      old_names: names earlier releases gave the file; read when ``file_name`` is absent and
        deleted when the artifact is written again.
      hint: what to do about a file of another version, appended to the error.
      error: the ValueError subclass raised for a file that is not readable (default ArtifactError).
    """

    kind: str
    file_name: str
    version_field: str
    version: int
    readable: tuple[int, ...] | None = None
    old_names: tuple[str, ...] = ()
    hint: str = ""
    error: type = ArtifactError

    @property
    def names(self):
        return (self.file_name, *self.old_names)

    def path(self, directory):
        """Where the artifact of ``directory`` is written."""
        return os.path.join(directory, self.file_name)

    def locate(self, directory):
        """The path of the artifact present in ``directory`` (its current name first), or None."""
        for name in self.names:
            path = os.path.join(directory, name)
            if exists(path):
                return path
        return None

    def exists(self, directory):
        return self.locate(directory) is not None

    def remove(self, directory):
        """Deletes the artifact of ``directory`` under every name (before its directory is rewritten)."""
        for name in self.names:
            remove(os.path.join(directory, name))

    def check(self, payload, where=None):
        """``payload`` when it is a JSON object of a readable version, else ``self.error`` naming
        ``where`` (a file), the kind and the version found."""
        where = where or self.kind
        if not isinstance(payload, dict):
            raise self.error(f"{where}: expected a JSON object ({self.kind}), got {type(payload).__name__}.")
        found, readable = payload.get(self.version_field), self.readable or (self.version,)
        if isinstance(found, bool) or found not in readable:
            raise self.error(
                f"{where}: {self.kind} of {self.version_field} {found!r}; this tfmetric reads "
                f"{' or '.join(str(v) for v in readable)}.{' ' + self.hint if self.hint else ''}"
            )
        return payload

    def read(self, directory):
        """The checked artifact of ``directory``.

        Raises:
          FileNotFoundError: ``directory`` holds none (callers that can say why check ``exists`` first).
          self.error: the file is not JSON, not an object, or of a version this tfmetric does not read.
        """
        path = self.locate(directory)
        if path is None:
            raise FileNotFoundError(f"{self.path(directory)}: no {self.kind} there.")
        try:
            payload = read_json(path)
        except ValueError as e:
            raise self.error(str(e)) from None
        return self.check(payload, path)

    def write(self, directory, payload, **json_options):
        """Writes ``payload`` (stamped with this version) atomically as the artifact of ``directory``;
        returns its path. A file under an old name is deleted after the new one is in place."""
        if payload.get(self.version_field, self.version) != self.version:
            raise ValueError(
                f"This tfmetric writes {self.kind}s of {self.version_field} {self.version}. "
                f"Received: {self.version_field}={payload[self.version_field]!r}"
            )
        path = write_json(self.path(directory), {self.version_field: self.version, **payload}, **json_options)
        for name in self.old_names:
            remove(os.path.join(directory, name))
        return path
