"""Suite-wide set-up: nothing reads or writes the user's data dir, shared converted data, and an
order that lets pytest-xdist's workers finish together."""

import fcntl
import os
import tempfile

import pytest

# Before any test imports tfmetric: the default data dir of every test (and of the CLIs they run
# in subprocesses) is a throw-away directory, never ~/tfmetric_data.
os.environ["TFMETRIC_DATA_DIR"] = tempfile.mkdtemp(prefix="tfmetric-test-data-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(items):
    """Modules holding a test marked slow run first, each module's tests still together and in order.

    Under ``pytest -n 2 --dist worksteal`` (``make test``) the long end-to-end tests then start
    early and the many short ones fill both workers at the end, so neither waits long for the other.
    """
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: the order is otherwise unchanged


@pytest.fixture(scope="session")
def digits_data_dir(tmp_path_factory):
    """digits converted to TFRecords (a Beam job) once per test session, shared by the tests and by
    pytest-xdist's workers: one converts, the others wait on the lock and reuse it. Tests only read it."""
    from tfmetric.data import prepare

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, above each worker's own
    data_dir = root / "digits-data"
    with open(f"{data_dir}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        prepare.ensure_tfrecords("digits", str(data_dir))  # returns the manifest when it is built
    return str(data_dir)
