"""ensure_tfrecords: existing, built by the converter subprocess, or a clear error."""

import json
import os
import sys

import pytest

from tests import fixtures as fx
from tfmetric import datasets
from tfmetric.data import manifest as manifest_lib
from tfmetric.data import prepare
from tfmetric.data.schema import SCHEMA_VERSION


def no_subprocess(*args, **kwargs):
    raise AssertionError("the converter must not run")


def write_complete_output(data_dir, dataset="cub200", **arguments):
    directory = datasets.tfrecord_dir(data_dir, dataset)
    fx.write_bytes(os.path.join(directory, "train", "train-00000-of-00001.tfrecord"), b"")
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "splits": {
            "train": {
                "num_images": 0,
                "num_classes": 0,
                "skipped": [],
                "shards": [{"path": "train/train-00000-of-00001.tfrecord", "num_images": 0, "num_classes": 0}],
            }
        },
    }
    if arguments:
        manifest["arguments"] = arguments
    manifest_lib.write_manifest(directory, manifest)
    return manifest


def test_build_command_maps_arguments():
    command = prepare.build_command(
        "imagefolder",
        "/d",
        "/r",
        dict(
            num_shards=4,
            train_classes="t.txt",
            download=True,
            max_pixels=None,
            direct_num_workers=2,
            direct_running_mode="multi_processing",
        ),
    )
    assert command[:3] == [sys.executable, "-m", "pipelines.build_tfrecords"]
    flat = " ".join(command[3:])
    assert flat == (
        "--dataset imagefolder --data-dir /d --raw-dir /r --direct_num_workers 2 "
        "--direct_running_mode multi_processing --download --num-shards 4 "
        "--train-classes t.txt"
    )
    with pytest.raises(ValueError, match="runner"):
        prepare.build_command("cub200", "/d", None, {"runner": "DataflowRunner"})


def test_existing_manifest_is_returned_without_converting(tmp_path, monkeypatch):
    expected = write_complete_output(str(tmp_path))
    monkeypatch.setattr(prepare, "_run_streaming", no_subprocess)
    assert prepare.ensure_tfrecords("cub200", str(tmp_path)) == expected


def test_stale_generated_dataset_is_rebuilt(tmp_path, monkeypatch, capsys):
    from tfmetric.datasets import synthetic

    data = str(tmp_path)
    current = synthetic.GENERATOR_VERSION
    write_complete_output(data, "synthetic", num_shards=0, generator_version=current - 1)
    calls = []

    def converter(command):  # stands in for the Beam job: writes the current generator's output
        calls.append(command)
        write_complete_output(data, "synthetic", num_shards=0, generator_version=current)
        return 0, []

    monkeypatch.setattr(prepare, "_run_streaming", converter)
    manifest = prepare.ensure_tfrecords("synthetic", data)
    assert len(calls) == 1 and manifest["arguments"]["generator_version"] == current
    assert (
        f"built by version {current - 1} of the synthetic generator, which is now version {current}"
        in capsys.readouterr().err
    )
    assert prepare.ensure_tfrecords("synthetic", data) == manifest and len(calls) == 1  # now current


def test_manifest_built_with_other_converter_arguments_is_rebuilt(tmp_path, monkeypatch, capsys):
    data = str(tmp_path)
    fx.make_cub200(datasets.raw_dir(data, "cub200"))
    write_complete_output(data, num_shards=2, max_pixels=100)
    monkeypatch.setattr(prepare, "_run_streaming", no_subprocess)
    assert prepare.ensure_tfrecords("cub200", data, num_shards=2)["arguments"]["num_shards"] == 2
    calls = []

    def converter(command):
        calls.append(command)
        write_complete_output(data, num_shards=3, max_pixels=100)
        return 0, []

    monkeypatch.setattr(prepare, "_run_streaming", converter)
    assert prepare.ensure_tfrecords("cub200", data, num_shards=3)["arguments"]["num_shards"] == 3
    assert "--num-shards" in calls[0]
    assert "built with num_shards=2, asked for num_shards=3" in capsys.readouterr().err


def test_neither_tfrecords_nor_raw_data(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare, "_run_streaming", no_subprocess)
    os.makedirs(datasets.raw_dir(str(tmp_path), "cub200"))  # empty raw dir counts as missing
    with pytest.raises(datasets.DatasetNotFoundError) as e:
        prepare.ensure_tfrecords("cub200", str(tmp_path))
    message = str(e.value)
    assert datasets.raw_dir(str(tmp_path), "cub200") in message
    assert "CUB_200_2011.tgz" in message and "image_class_labels.txt" in message
    with pytest.raises(ValueError, match="Allowed values"):
        prepare.ensure_tfrecords("mnist", str(tmp_path))


def converter_writing(status, result):
    """Stands in for the job: writes ``result`` (a dict, or None for none) to its --result-file."""
    calls = []

    def converter(command):
        calls.append(command)
        if result is not None:
            with open(command[command.index(prepare.RESULT_FLAG) + 1], "w") as f:
                json.dump(result, f)
        return status, ["INFO reading\n", "Traceback (most recent call last):\n", "  boom\n"]

    return converter, calls


@pytest.mark.parametrize(
    "status, result, error",
    [
        (3, {"status": "not_found", "message": "/r/images.txt:3: bad\n  second line"}, datasets.DatasetNotFoundError),
        (4, {"status": "format", "message": "/r/images.txt:3: bad\n  second line"}, datasets.DatasetFormatError),
    ],
)
def test_converter_failures_become_errors(tmp_path, monkeypatch, status, result, error):
    fx.make_cub200(datasets.raw_dir(str(tmp_path), "cub200"))
    converter, calls = converter_writing(status, result)
    monkeypatch.setattr(prepare, "_run_streaming", converter)
    with pytest.raises(error) as e:
        prepare.ensure_tfrecords("cub200", str(tmp_path), num_shards=3)
    assert "--num-shards" in calls[0] and "--raw-dir" in calls[0]
    assert str(e.value) == "/r/images.txt:3: bad\n  second line"
    assert not os.path.exists(calls[0][calls[0].index(prepare.RESULT_FLAG) + 1])  # a temporary file


def test_converter_failing_without_a_result_is_a_conversion_error(tmp_path, monkeypatch):
    fx.make_cub200(datasets.raw_dir(str(tmp_path), "cub200"))
    converter, _ = converter_writing(1, None)
    monkeypatch.setattr(prepare, "_run_streaming", converter)
    with pytest.raises(prepare.ConversionError, match="(?s)exited with status 1; end of its log:.*boom"):
        prepare.ensure_tfrecords("cub200", str(tmp_path))


def test_result_file_round_trip(tmp_path):
    path = str(tmp_path / "result.json")
    assert prepare.read_result(path) is None
    prepare.write_result(path)
    assert json.loads(open(path).read()) == {"status": "ok"}
    prepare.write_result(path, datasets.DatasetFormatError("/r/a.txt:2: bad"))
    assert prepare.read_result(path) == {"status": "format", "message": "/r/a.txt:2: bad"}


def test_run_streaming_copies_the_log(capsys):
    status, tail = prepare._run_streaming(
        [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(5)"]
    )
    assert status == 5 and sorted(tail) == ["err\n", "out\n"]
    assert "out" in capsys.readouterr().err


@pytest.mark.slow
def test_converts_raw_data_in_a_subprocess(tmp_path, monkeypatch):
    data = str(tmp_path / "data")
    fx.make_imagefolder(datasets.raw_dir(data, "imagefolder"))
    monkeypatch.chdir(tmp_path)  # the subprocess must not depend on the working directory
    monkeypatch.delenv("PYTHONPATH", raising=False)
    manifest = prepare.ensure_tfrecords("imagefolder", data, num_shards=1)
    assert manifest["splits"]["train"]["num_images"] == 5
    assert manifest["arguments"]["num_shards"] == 1
    assert manifest_lib.is_complete(datasets.tfrecord_dir(data, "imagefolder"))
