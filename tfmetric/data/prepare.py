"""Getting a dataset ready: TFRecords built on demand by the Beam converter.

``ensure_tfrecords`` is what training calls: it returns the manifest of a complete TFRecord
directory, building it first with the Beam converter on the local direct runner when the raw data
is there. The converter lives in ``pipelines/`` and nothing under ``tfmetric/`` imports that package,
so it runs as a subprocess (``python -m pipelines.build_tfrecords``) whose log is streamed through;
it writes its outcome to the JSON file its ``--result-file`` flag names (``write_result``), which
tells a missing dataset from a malformed one and carries the message.
"""

import json
import os
import sys
import tempfile
from collections import deque
from collections.abc import Sequence

import tensorflow as tf

from tfmetric import datasets, json_file
from tfmetric.data import manifest as manifest_lib

JOB_MODULE = "pipelines.build_tfrecords"
# The job's protocol with this module: it writes {"status": "ok"} on success, or the status of an
# expected failure with its message, to the JSON file ``--result-file`` names (write_result). Any
# other failure leaves no result; its exit status (nonzero) and log say what happened.
RESULT_FLAG = "--result-file"
RESULT_ERRORS = {"not_found": datasets.DatasetNotFoundError, "format": datasets.DatasetFormatError}
APP_FLAGS = ("num_shards", "max_pixels", "train_classes", "test_classes", "download")


class ConversionError(RuntimeError):
    """The converter subprocess failed for a reason other than missing or malformed raw data."""


def _repo_root() -> str:
    # tfmetric/ and pipelines/ sit side by side (editable install or a source checkout).
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_result(path: str, error: Exception | None = None) -> None:
    """The converter's outcome into ``path``: ok, or the RESULT_ERRORS status of ``error``."""
    result = {"status": "ok"}
    if error is not None:
        status = next(s for s, cls in RESULT_ERRORS.items() if isinstance(error, cls))
        result = {"status": status, "message": str(error)}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f)


def read_result(path: str) -> dict | None:
    """The outcome the converter wrote into ``path``, or None if it wrote none."""
    if not os.path.exists(path):
        return None
    return json_file.read_json(path)


def build_command(
    dataset: str, data_dir: str, raw_dir: str | None, converter_args: dict, result_file: str | None = None
) -> list[str]:
    """The converter's command line: app flags with dashes, any other key as a Beam option."""
    if "runner" in converter_args:
        raise ValueError(
            "ensure_tfrecords runs the converter locally; run `python -m "
            f"{JOB_MODULE} --runner ...` yourself for another runner. "
            f"Received: runner={converter_args['runner']!r}"
        )
    # No --runner: the job's local default (Beam's FnApiRunner, the DirectRunner's engine).
    command = [sys.executable, "-m", JOB_MODULE, "--dataset", dataset, "--data-dir", data_dir]
    if raw_dir:
        command += ["--raw-dir", raw_dir]
    if result_file:
        command += [RESULT_FLAG, result_file]
    for key, value in sorted(converter_args.items()):
        flag = "--" + (key.replace("_", "-") if key in APP_FLAGS else key)
        if value is None or value is False:
            continue
        command += [flag] if value is True else [flag, str(value)]
    return command


def _run_streaming(command: Sequence[str]):
    """Runs ``command``, copying its merged output to stderr line by line; (exit status, tail)."""
    import subprocess  # local: only this function starts processes

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tail = deque(maxlen=400)
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, errors="replace"
    ) as process:
        for line in process.stdout:
            sys.stderr.write(line)
            tail.append(line)
    return process.returncode, list(tail)


def stale_reason(manifest: dict, module, converter_args: dict) -> str | None:
    """Why an existing manifest does not match what is asked for now, or None if it does."""
    built = manifest.get("arguments") or {}
    version = getattr(module, "GENERATOR_VERSION", None)
    if version is not None and built.get("generator_version") != version:
        return (
            f"built by version {built.get('generator_version')} of the {module.NAME} generator, "
            f"which is now version {version}"
        )
    for key in sorted(set(converter_args) & set(APP_FLAGS) - {"download"}):
        if key in built and built[key] != converter_args[key]:
            return f"built with {key}={built[key]!r}, asked for {key}={converter_args[key]!r}"
    return None


def ensure_tfrecords(dataset: str, data_dir: str | None = None, raw_dir: str | None = None, **converter_args) -> dict:
    """The manifest of ``<data_dir>/tfrecords/<dataset>/``, converting the raw data first if needed.

    An existing valid manifest is returned as is unless it is stale: built by another version of a
    generated dataset's generator, or with other values of the ``converter_args`` given here
    (``num_shards``, ``max_pixels``, ``train_classes``, ``test_classes``). Otherwise, or when it is
    stale, if the raw data is present (or the dataset is
    generated in memory: synthetic, digits), the converter runs locally (direct runner) with
    ``converter_args`` (``num_shards=8`` -> ``--num-shards 8``, ``direct_num_workers=2`` ->
    ``--direct_num_workers 2``, ``download=True`` -> ``--download``).

    Raises:
      ValueError: unknown dataset.
      DatasetNotFoundError: neither TFRecords nor raw data; the message says what to get where.
      DatasetFormatError: the raw layout is wrong (the message names file and line).
      ConversionError: the converter failed otherwise (the message holds the end of its log).
    """
    module = datasets.get_dataset(dataset)
    data_dir = data_dir or datasets.default_data_dir()
    out_dir = datasets.tfrecord_dir(data_dir, dataset)
    try:
        manifest = manifest_lib.load_manifest(data_dir, dataset)
        reason = stale_reason(manifest, module, converter_args)
        if reason is None:
            return manifest
        sys.stderr.write(f"Rebuilding {out_dir}: {reason}\n")
    except manifest_lib.ManifestError as e:
        sys.stderr.write(f"Rebuilding {out_dir}: {e}\n")
    except datasets.DatasetNotFoundError:
        pass
    raw = raw_dir or datasets.raw_dir(data_dir, dataset)
    generated = module.GENERATED
    if (
        not generated
        and not converter_args.get("download")
        and not (tf.io.gfile.isdir(raw) and tf.io.gfile.listdir(raw))
    ):
        raise datasets.DatasetNotFoundError(
            f"No TFRecords for {dataset} at {out_dir} (no valid {manifest_lib.MANIFEST_NAME}) and "
            f"no raw data at {raw} to build them from.\n\n{module.INSTRUCTIONS}"
        )

    with tempfile.TemporaryDirectory(prefix="tfmetric-convert-") as scratch:
        result_file = os.path.join(scratch, "result.json")
        command = build_command(dataset, data_dir, None if generated else raw, converter_args, result_file)
        sys.stderr.write(f"Building TFRecords for {dataset}: {' '.join(command)}\n")
        status, tail = _run_streaming(command)
        result = read_result(result_file)
    if result is not None and result["status"] in RESULT_ERRORS:
        raise RESULT_ERRORS[result["status"]](result["message"])
    if status != 0:
        raise ConversionError(
            f"{' '.join(command)} exited with status {status}; end of its log:\n" + "".join(tail[-40:])
        )
    return manifest_lib.load_manifest(data_dir, dataset)
