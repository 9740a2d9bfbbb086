"""tfmetric.json_file: atomic JSON writes and versioned artifacts (names, old names, version checks)."""

import json
import os

import pytest

from tfmetric import json_file
from tfmetric.json_file import Artifact, ArtifactError

THING = Artifact(
    "thing manifest",
    "thing.json",
    "format_version",
    2,
    readable=(1, 2),
    old_names=("manifest.json",),
    hint="Make it again.",
)


def test_write_json_is_atomic_and_round_trips(tmp_path):
    path = str(tmp_path / "a.json")
    json_file.write_json(path, {"b": 1, "a": [1, 2]})
    assert os.listdir(tmp_path) == ["a.json"]  # no temporary file left
    assert json_file.read_json(path) == {"a": [1, 2], "b": 1}
    assert open(path).read().startswith('{\n  "a"')  # sorted keys by default
    json_file.write_json(path, {"b": 1, "a": 2}, indent=1, sort_keys=False)
    assert list(json.loads(open(path).read())) == ["b", "a"]


def test_failed_write_names_the_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "missing" / "a.json"
    with pytest.raises(FileNotFoundError, match="a.json"):
        json_file.write_json(str(path), {})
    assert not (tmp_path / "missing").exists()


def test_artifact_write_stamps_the_version_and_reads_back(tmp_path):
    path = THING.write(str(tmp_path), {"count": 3})
    assert path == str(tmp_path / "thing.json")
    assert json.loads(open(path).read()) == {"format_version": 2, "count": 3}
    assert THING.read(str(tmp_path)) == {"format_version": 2, "count": 3}
    with pytest.raises(ValueError, match="writes thing manifests of format_version 2. Received: format_version=1"):
        THING.write(str(tmp_path), {"format_version": 1})


def test_old_file_name_is_read_and_replaced_on_write(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"format_version": 1, "count": 1}))
    assert THING.locate(str(tmp_path)) == str(tmp_path / "manifest.json")
    assert THING.read(str(tmp_path))["count"] == 1  # version 1 is readable
    THING.write(str(tmp_path), {"count": 2})
    assert sorted(os.listdir(tmp_path)) == ["thing.json"]
    THING.remove(str(tmp_path))
    assert not THING.exists(str(tmp_path)) and os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "text, message",
    [
        (
            '{"format_version": 3}',
            r"thing.json: thing manifest of format_version 3; this tfmetric reads 1 or 2. "
            r"Make it again.$",
        ),
        ('{"count": 1}', "thing manifest of format_version None"),
        ('{"format_version": true}', "format_version True"),
        ("[1, 2]", r"thing.json: expected a JSON object \(thing manifest\), got list"),
        ('{"format_version": 2', r"thing.json is not valid JSON .*may be truncated"),
    ],
)
def test_unreadable_artifacts_name_the_file_kind_and_version(tmp_path, text, message):
    (tmp_path / "thing.json").write_text(text)
    with pytest.raises(ArtifactError, match=message):
        THING.read(str(tmp_path))


def test_missing_artifact(tmp_path):
    assert THING.locate(str(tmp_path)) is None
    with pytest.raises(FileNotFoundError, match="thing.json: no thing manifest there"):
        THING.read(str(tmp_path))


def test_artifacts_raise_their_own_error_type(tmp_path):
    class OwnError(ArtifactError):
        pass

    own = Artifact("own", "own.json", "v", 1, error=OwnError)
    (tmp_path / "own.json").write_text('{"v": 0}')
    with pytest.raises(OwnError, match="own of v 0"):
        own.read(str(tmp_path))
