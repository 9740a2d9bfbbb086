"""Versioning and the atomic rename: TF Serving's watcher only ever sees complete integer versions."""

import os

import pytest

from tfmetric import config as config_lib
from tfmetric.export import model_card, writer


def _write(files):
    def write(tmp):
        os.makedirs(tmp)
        # While writing, the only new entry is a temporary directory that is not an integer.
        root = os.path.dirname(tmp)
        assert not os.path.basename(tmp).isdigit() and os.path.basename(tmp).startswith(".tmp-")
        assert writer.versions(root) == files["before"]
        with open(os.path.join(tmp, "saved_model.pb"), "w") as f:
            f.write("x")

    return write


def test_versions_count_up_from_one_and_ignore_other_entries(tmp_path):
    root = tmp_path / "m"
    assert writer.next_version(str(root)) == 1
    assert writer.write_version(str(root), _write({"before": []})) == str(root / "1")
    (root / "notes").mkdir()
    (root / "7.bak").mkdir()
    (root / "3").write_text("a file, not a version")
    assert writer.write_version(str(root), _write({"before": [1]})) == str(root / "2")
    (root / "10").mkdir()
    assert writer.write_version(str(root), _write({"before": [1, 2, 10]})) == str(root / "11")
    assert writer.latest_version_dir(str(root)) == str(root / "11")
    assert sorted(os.listdir(root)) == ["1", "10", "11", "2", "3", "7.bak", "notes"]


def test_failed_write_leaves_nothing(tmp_path):
    def write(tmp):
        os.makedirs(tmp)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        writer.write_version(str(tmp_path / "m"), write)
    assert os.listdir(tmp_path / "m") == []


def test_version_taken_during_the_write_moves_to_the_next(tmp_path):
    root = tmp_path / "m"

    def write(tmp):
        os.makedirs(tmp)
        (root / "1").mkdir()  # a concurrent export finishes first
        (root / "1" / "saved_model.pb").write_text("other")

    assert writer.write_version(str(root), write) == str(root / "2")
    assert (root / "1" / "saved_model.pb").read_text() == "other"


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "x y", None])
def test_bad_model_names(name):
    with pytest.raises(ValueError, match=r"Invalid model name .*Received: name=") as e:
        writer.check_model_name(name)
    assert "--" not in str(e.value)


def test_config_hash_is_stable_and_sensitive():
    a, b = config_lib.preset("digits"), config_lib.preset("digits")
    assert model_card.config_hash(a) == model_card.config_hash(b)
    b.train.lr = 0.5
    assert model_card.config_hash(a) != model_card.config_hash(b)
