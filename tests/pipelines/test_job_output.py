"""job_output.written_atomically: the final name appears only for a complete write."""

import os

import pytest

from pipelines.job_output import written_atomically


def test_a_complete_write_is_renamed_into_place_and_replaces_an_old_file(tmp_path):
    path = tmp_path / "shard-00000-of-00001.bin"
    path.write_bytes(b"old")
    with written_atomically(str(path)) as temporary:
        assert os.path.dirname(temporary) == str(tmp_path) and temporary != str(path)
        with open(temporary, "wb") as f:
            f.write(b"new")
        assert path.read_bytes() == b"old"  # not yet
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == [path.name]


def test_a_failed_write_leaves_neither_file(tmp_path):
    path = tmp_path / "part.bin"
    with pytest.raises(OSError, match="disk full"):
        with written_atomically(str(path)) as temporary:
            with open(temporary, "wb") as f:
                f.write(b"half")
            raise OSError("disk full")
    assert os.listdir(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):
        with written_atomically(str(path)):  # nothing written yet: nothing to delete
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []
