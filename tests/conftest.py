"""Suite-wide set-up: nothing reads or writes the user's data dir, and shared converted data."""
import os
import tempfile

import pytest

# Before any test imports tfmetric: the default data dir of every test (and of the CLIs they run
# in subprocesses) is a throw-away directory, never ~/tfmetric_data.
os.environ["TFMETRIC_DATA_DIR"] = tempfile.mkdtemp(prefix="tfmetric-test-data-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def digits_data_dir(tmp_path_factory):
    """digits converted to TFRecords once per test process (Beam job), shared by the tests."""
    from tfmetric.data import prepare

    data_dir = str(tmp_path_factory.mktemp("data"))
    prepare.ensure_tfrecords("digits", data_dir)
    return data_dir
