"""Opens the data source a config asks for: the dataset's TFRecords, converted first if needed."""

from tfmetric import datasets
from tfmetric.data import prepare
from tfmetric.data.tfrecord_source import TFRecordSource


def resolve_dirs(data_config):
    """(data_dir, raw_dir) with the documented defaults filled in."""
    data_dir = data_config.data_dir or datasets.default_data_dir()
    raw_dir = data_config.raw_dir or datasets.raw_dir(data_dir, data_config.dataset)
    return data_dir, raw_dir


def open_source(data_config):
    """(TFRecordSource, dataset module) for ``data_config.dataset``.

    The TFRecords under ``<data_dir>/tfrecords/<dataset>/`` are built from the raw data by the Beam
    converter first when they are missing (``tfmetric.data.prepare.ensure_tfrecords``; generated
    sets such as synthetic and digits too).

    Raises:
      ValueError: unknown dataset name.
      tfmetric.datasets.DatasetNotFoundError: neither TFRecords nor raw files (the message says
        which files to get and where to put them).
      tfmetric.datasets.DatasetFormatError: malformed raw files or shards.
    """
    module = datasets.get_dataset(data_config.dataset)
    data_dir, raw_dir = resolve_dirs(data_config)
    try:
        manifest = prepare.ensure_tfrecords(data_config.dataset, data_dir, raw_dir)
    except datasets.DatasetNotFoundError:
        if not module.GENERATED:
            module.load(raw_dir)  # raises the dataset's own message, naming the file it misses first
        raise
    return TFRecordSource.from_manifest(manifest, data_dir), module
