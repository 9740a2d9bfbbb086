"""The converter as users run it: its own error is the first stderr line, with documented exit codes."""

import json
import os
import subprocess
import sys

import pytest

PROG = "python -m pipelines.build_tfrecords"


def run_job(*args):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # the default notices
    return subprocess.run(
        [sys.executable, "-m", "pipelines.build_tfrecords", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.mark.parametrize(
    "args, status, needle, outcome",
    [
        (["--dataset", "cars196", "--num-shards", "-1"], 2, "--num-shards must be >= 0. Received: -1", None),
        (["--dataset", "mnist"], 2, "argument --dataset: invalid choice: 'mnist'", None),
        (["--dataset", "cars196"], 3, "Missing ", "not_found"),
    ],
)
def test_errors_come_first_with_their_exit_code(tmp_path, args, status, needle, outcome):
    result_file = tmp_path / "result.json"
    result = run_job(*args, "--data-dir", str(tmp_path / "data"), "--result-file", str(result_file))
    assert result.returncode == status, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{PROG}: error: ") and needle in first
    assert "Traceback" not in result.stderr and not (tmp_path / "data" / "tfrecords").exists()
    if outcome is None:  # bad flags: no job ran, no outcome written
        assert not result_file.exists()
    else:  # what ensure_tfrecords reads: the status and the message of the first stderr line
        written = json.loads(result_file.read_text())
        assert written["status"] == outcome and first.endswith(written["message"].splitlines()[0])


def test_malformed_raw_data_exits_4_naming_the_file(tmp_path):
    raw = tmp_path / "data" / "raw" / "sop" / "Stanford_Online_Products"
    raw.mkdir(parents=True)
    (raw / "Ebay_train.txt").write_text("image_id class_id super_class_id path\n1 x 1 a.jpg\n")
    (raw / "Ebay_test.txt").write_text("image_id class_id super_class_id path\n")
    result = run_job("--dataset", "sop", "--data-dir", str(tmp_path / "data"))
    assert result.returncode == 4, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{PROG}: error: ") and "Ebay_train.txt" in first
