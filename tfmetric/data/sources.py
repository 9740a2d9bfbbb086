"""Opens the data source a config asks for."""
from tfmetric import datasets
from tfmetric.data.memory_source import MemorySource


def resolve_dirs(data_config):
    """(data_dir, raw_dir) with the documented defaults filled in."""
    data_dir = data_config.data_dir or datasets.default_data_dir()
    raw_dir = data_config.raw_dir or datasets.raw_dir(data_dir, data_config.dataset)
    return data_dir, raw_dir


def open_source(data_config):
    """(source, dataset module) for ``data_config.dataset``.

    Raises:
      ValueError: unknown dataset name.
      tfmetric.datasets.DatasetNotFoundError: raw files missing (the message says what to get).
    """
    module = datasets.get_dataset(data_config.dataset)
    _, raw_dir = resolve_dirs(data_config)
    records = module.load(raw_dir)
    return MemorySource.from_records(records), module
