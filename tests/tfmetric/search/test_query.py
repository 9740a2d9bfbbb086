"""python -m tfmetric.search end to end on a tiny exported model: build, the issue's query command
line, the picture, and the errors (bad image, other model, other dimension, empty index)."""

import fcntl
import io
import json
import os
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

from tests import fixtures as fx
from tfmetric import config as config_lib
from tfmetric.export import export_saved_model
from tfmetric.models import build_embedding_model
from tfmetric.search import Neighbour, SavedModelEmbedder, model_identity, plot_neighbours, write_catalog
from tfmetric.search import __main__ as cli

DIM, SIZE, RESIZE = 12, 32, 36  # 12: the last byte of the bits carries 4 padding bits
MAX_PIXELS = 64 * 64  # small, so a test can exceed the model's pixel limit with a tiny image
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def export_tiny_model(directory, dim=DIM, seed=0, max_pixels=MAX_PIXELS):
    """An untrained InceptionV1 embedding model exported as ``<directory>/tiny/1``."""
    keras.utils.set_random_seed(seed)
    config = config_lib.preset("synthetic")
    config.data.image_size, config.data.resize_size = SIZE, RESIZE
    config.model.embedding_dim = dim
    model = build_embedding_model("inception_v1", embedding_dim=dim, image_size=SIZE)
    return export_saved_model(model, config, str(directory), "tiny", max_pixels=max_pixels)


def tiny_model(tmp_path_factory, dim=DIM, seed=0):
    """``export_tiny_model`` once per test session, shared by modules and pytest-xdist workers."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's directory, above each worker's own
    directory = root / f"tiny-model-{dim}-{seed}"
    with open(f"{directory}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker exports, the others wait and reuse it
        if not (directory / "tiny" / "1").exists():
            export_tiny_model(directory, dim, seed)
    return str(directory / "tiny" / "1")


def noise_images(directory, count):
    """{id: path} of ``count`` distinct noise images, every fourth one a PNG."""
    paths = {}
    for i in range(count):
        data, ext = fx.noise_jpeg_bytes((40 + i % 3 * 8, 32), seed=i), "jpg"
        if i % 4 == 3:
            with Image.open(io.BytesIO(data)) as image:
                out = io.BytesIO()
                image.save(out, "PNG")
            data, ext = out.getvalue(), "png"
        paths[f"img-{i:02d}"] = fx.write_bytes(os.path.join(directory, f"img-{i:02d}.{ext}"), data)
    return paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(model dir, {id: path}, flat index dir, binary index dir, embeddings dir)."""
    root = tmp_path_factory.mktemp("search")
    model_dir = tiny_model(tmp_path_factory)
    paths = noise_images(str(root / "images"), 12)
    ids = sorted(paths)
    results = SavedModelEmbedder(model_dir).embed([open(paths[i], "rb").read() for i in ids])
    embeddings = np.stack([r.embedding for r in results])
    write_catalog(
        str(root / "embeddings"), ids, embeddings, sources=[paths[i] for i in ids], model=model_identity(model_dir)
    )
    for kind in ("flat", "binary"):
        assert (
            cli.main(["build", "--embeddings", str(root / "embeddings"), "--index", str(root / kind), "--kind", kind])
            == 0
        )
    return model_dir, paths, str(root / "flat"), str(root / "binary"), str(root / "embeddings")


def _rows(out):
    """(id, score) of the result lines of the CLI's output."""
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit():
            rows.append((parts[2], float(parts[1])))
    return rows


def test_issue_command_line_prints_neighbours_and_plots(setup, tmp_path, capsys):
    model_dir, paths, flat, _, _ = setup
    capsys.readouterr()
    png = tmp_path / "results.png"
    assert (
        cli.main(["--index", flat, "--model", model_dir, "--image", paths["img-05"], "--k", "4", "--plot", str(png)])
        == 0
    )
    out = capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == 4 and rows[0][0] == "img-05" and rows[0][1] == pytest.approx(1.0, abs=1e-4)
    assert [s for _, s in rows] == sorted((s for _, s in rows), reverse=True)
    assert "4 nearest of 12 items (index flat, cosine, 12-d; model tiny/1)" in out
    assert png.read_bytes()[:8] == PNG_MAGIC
    with Image.open(png) as image:
        image.verify()
        assert image.width > image.height > 100  # the query beside a row of 4 neighbours


def test_binary_query_subcommand(setup, capsys):
    model_dir, paths, flat, binary, _ = setup
    capsys.readouterr()
    assert (
        cli.main(
            ["query", "--index", binary, "--model", model_dir, "--image", paths["img-03"], "--binary", "--k", "12"]
        )
        == 0
    )
    rows = _rows(capsys.readouterr().out)
    # 12 bits of an untrained model: several images may share a code; equal distances go by row.
    assert len(rows) == 12 and rows[0][1] == 0 and ("img-03", 0.0) in rows
    assert [s for _, s in rows] == sorted(s for _, s in rows)
    with pytest.raises(SystemExit) as e:
        cli.main(["--index", flat, "--model", model_dir, "--image", paths["img-03"], "--binary"])
    assert e.value.code == 2
    assert "error: --binary, --index: binary search needs a binary index" in capsys.readouterr().err


def test_a_copy_of_the_model_is_the_same_model(setup, tmp_path, capsys):
    model_dir, paths, flat, _, _ = setup
    copy = shutil.copytree(model_dir, tmp_path / "elsewhere" / "tiny" / "1")
    assert cli.main(["--index", flat, "--model", str(copy), "--image", paths["img-01"], "--k", "1"]) == 0
    assert _rows(capsys.readouterr().out)[0][0] == "img-01"


def _error(capsys, argv):
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def test_undecodable_query_image(setup, tmp_path, capsys):
    model_dir, _, flat, _, _ = setup
    bad = fx.write_bytes(str(tmp_path / "bad.jpg"), fx.truncated_jpeg_bytes())
    err = _error(capsys, ["--index", flat, "--model", model_dir, "--image", bad])
    assert "error: --image: Not a usable image (truncated" in err and f"Received: image={bad}" in err
    big = fx.write_jpeg(str(tmp_path / "big.jpg"), size=(80, 80))  # over the model's max_pixels
    assert "too_many_pixels" in _error(capsys, ["--index", flat, "--model", model_dir, "--image", big])
    missing = str(tmp_path / "missing.jpg")
    assert "error: --image: No such image file" in _error(
        capsys, ["--index", flat, "--model", model_dir, "--image", missing]
    )


def test_model_of_another_dimension(setup, tmp_path_factory, capsys):
    _, paths, flat, _, _ = setup
    other = tiny_model(tmp_path_factory, dim=16, seed=1)
    err = _error(capsys, ["--index", flat, "--model", other, "--image", paths["img-00"]])
    assert "error: --model, --index: The model" in err
    assert "gives 16-dimensional embeddings, but the index holds 12-dimensional ones" in err


def test_index_of_another_model(setup, tmp_path, capsys):
    model_dir, paths, flat, _, _ = setup
    index = shutil.copytree(flat, tmp_path / "index")
    manifest = json.loads((index / "index.json").read_text())
    manifest["model"].update(saved_model_checksum="123", path="/models/other/7", version=7)
    (index / "index.json").write_text(json.dumps(manifest))
    err = _error(capsys, ["--index", str(index), "--model", model_dir, "--image", paths["img-00"]])
    assert "error: --model, --index: The index was built from embeddings of tiny/7 (/models/other/7)" in err
    assert "a different model" in err


def test_empty_or_missing_index(setup, tmp_path, capsys):
    model_dir, paths, _, _, _ = setup
    write_catalog(str(tmp_path / "empty"), [], np.zeros((0, DIM), np.float32), model=model_identity(model_dir))
    err = _error(capsys, ["build", "--embeddings", str(tmp_path / "empty"), "--index", str(tmp_path / "i")])
    assert "error: --embeddings: No embeddings (count 0" in err
    err = _error(capsys, ["--index", str(tmp_path / "nothing"), "--model", model_dir, "--image", paths["img-00"]])
    assert "error: --index: index_dir is not a directory" in err


def test_plot_shows_placeholders_for_unreadable_neighbours(setup, tmp_path):
    _, paths, _, _, _ = setup
    query = open(paths["img-00"], "rb").read()
    neighbours = [
        Neighbour(1, "img-00", 1.0, paths["img-00"]),
        Neighbour(2, "gone", 0.5, str(tmp_path / "x.jpg")),
        Neighbour(3, "from-a-tfrecord", 0.25, None),
        Neighbour(4, "broken", 0.2, fx.write_bytes(str(tmp_path / "b.jpg"), b"not an image")),
    ]
    out = plot_neighbours(query, neighbours * 2, str(tmp_path / "grid.png"), query_label="q.jpg")
    with Image.open(out) as image:
        assert image.format == "PNG" and image.height > 300  # 8 neighbours: two rows of up to 5
