"""Match thresholds against a naive numpy reference (every cut-off tried in turn), on clustered
labelled embeddings; the calibrate CLI stores them in the index manifest."""

import json

import numpy as np
import pytest

from tests.tfmetric.search.test_index import MODEL, clustered
from tests.tfmetric.search.test_query import noise_images, tiny_model
from tfmetric.search import SavedModelEmbedder, build_index, model_identity, write_catalog
from tfmetric.search import __main__ as cli
from tfmetric.search.calibrate import embed_split, match_thresholds, sample_pairs, threshold_for_precision


def naive_threshold(scores, same, precision, higher_is_closer):
    """The loosest cut-off with precision >= target, by trying every distinct score."""
    best = None
    for t in np.unique(scores):
        predicted = scores >= t if higher_is_closer else scores <= t
        p = same[predicted].mean()
        if p >= precision and (best is None or predicted.sum() > best[1]):
            best = (t, predicted.sum(), p, same[predicted].sum() / same.sum())
    return best


def labelled(n=150, dim=16, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.standard_normal((classes, dim))
    x = centres[labels] + 0.8 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


@pytest.mark.parametrize("precision", [0.5, 0.8, 0.95])
def test_thresholds_equal_the_naive_reference(precision):
    x, labels = labelled()
    match = match_thresholds(x, labels, precision)
    i, j = np.triu_indices(len(x), 1)
    same = labels[i] == labels[j]
    cosine = np.array([float(np.dot(x[a].astype(np.float64), x[b])) for a, b in zip(i, j)])
    bits = np.packbits(x > 0, axis=1)
    hamming = np.array([int(np.unpackbits(bits[a] ^ bits[b]).sum()) for a, b in zip(i, j)])
    assert match["pairs"] == len(i) and match["positive_pairs"] == same.sum() and match["classes"] == 10
    for metric, scores, higher in (("cosine", cosine, True), ("hamming", hamming, False)):
        t, predicted, p, recall = naive_threshold(scores, same, precision, higher)
        got = match[metric]
        assert got["threshold"] == pytest.approx(t, abs=1e-5) and got["predicted"] == predicted
        assert got["precision"] == pytest.approx(p) and got["recall"] == pytest.approx(recall)
        assert got["precision"] >= precision


def test_analytic_cases():
    # 0.9 match, 0.8 match, 0.7 no, 0.7 match, 0.6 no. Cut at 0.7: 3 of 4 (0.75). At precision 0.8
    # splitting the tie at 0.7 (3 of 3) would be unfair to the pair left out: the cut stays at 0.8.
    scores, same = np.array([0.9, 0.8, 0.7, 0.7, 0.6]), np.array([True, True, False, True, False])
    result = threshold_for_precision(scores, same, 0.7)
    assert (result["threshold"], result["predicted"], result["precision"], result["recall"]) == (0.7, 4, 0.75, 1.0)
    result = threshold_for_precision(scores, same, 0.8)
    assert (result["threshold"], result["predicted"], result["recall"]) == (0.8, 2, pytest.approx(2 / 3))
    assert threshold_for_precision(scores, same, 0.6)["predicted"] == 5
    distances = np.array([0, 3, 3, 5])  # Hamming: lower is closer
    result = threshold_for_precision(distances, np.array([True, True, False, False]), 0.6, higher_is_closer=False)
    assert (result["threshold"], result["predicted"]) == (3, 3)
    with pytest.raises(ValueError, match="No cut-off reaches precision 1.0"):
        threshold_for_precision(scores, ~same, 1.0)
    with pytest.raises(ValueError, match="precision must be in"):
        threshold_for_precision(scores, same, 0)


def test_pair_sample_is_seeded_and_never_pairs_an_item_with_itself():
    i, j = sample_pairs(1000, max_pairs=5000, seed=3)
    assert len(i) == 5000 and not np.any(i == j)
    np.testing.assert_array_equal(sample_pairs(1000, 5000, 3)[1], j)
    assert len(sample_pairs(10, 5000)[0]) == 45


def test_calibrate_cli_stores_thresholds_in_the_manifest(tmp_path, capsys):
    catalog = clustered(200, 32, 10)
    write_catalog(str(tmp_path / "emb"), [f"i{k}" for k in range(200)], catalog, model=dict(MODEL))
    build_index(str(tmp_path / "emb"), str(tmp_path / "index"))
    x, labels = labelled(dim=32)
    np.savez(tmp_path / "held_out.npz", embeddings=x, labels=labels)
    assert (
        cli.main(
            [
                "calibrate",
                "--index",
                str(tmp_path / "index"),
                "--labelled",
                str(tmp_path / "held_out.npz"),
                "--precision",
                "0.8",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    manifest = json.loads((tmp_path / "index" / "index.json").read_text())
    expected = match_thresholds(x, labels, 0.8)
    assert manifest["match"]["cosine"] == expected["cosine"] and manifest["match"]["hamming"] == expected["hamming"]
    assert manifest["count"] == 200 and f"cosine  >= {expected['cosine']['threshold']:g}" in out
    with pytest.raises(SystemExit) as e:
        cli.main(["calibrate", "--index", str(tmp_path / "index")])
    assert e.value.code == 2 and "either --model with --split, or --labelled" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["calibrate", "--index", str(tmp_path / "index"), "--labelled", str(tmp_path / "x.npz")])
    assert f"error: --labelled: No such file. Received: path={tmp_path / 'x.npz'}" in capsys.readouterr().err


def test_calibrate_cli_embeds_a_split_with_the_model(tmp_path_factory, tmp_path, digits_data_dir, capsys):
    model_dir = tiny_model(tmp_path_factory)
    paths = noise_images(str(tmp_path / "images"), 4)
    results = SavedModelEmbedder(model_dir).embed([open(p, "rb").read() for p in paths.values()])
    write_catalog(
        str(tmp_path / "emb"), list(paths), np.stack([r.embedding for r in results]), model=model_identity(model_dir)
    )
    build_index(str(tmp_path / "emb"), str(tmp_path / "index"))
    calibrate = ["calibrate", "--index", str(tmp_path / "index"), "--model", model_dir]
    calibrate += ["--dataset", "digits", "--data-dir", digits_data_dir]
    assert cli.main([*calibrate, "--split", "test", "--precision", "0.05"]) == 0
    match = json.loads((tmp_path / "index" / "index.json").read_text())["match"]
    embeddings, labels, source = embed_split(model_dir, "test", "digits", digits_data_dir)
    expected = match_thresholds(embeddings, labels, 0.05)
    assert source == "digits/test" and match["source"] == source and match["classes"] == 5
    assert match["images"] == len(labels) == 896 and set(labels.tolist()) == {0, 1, 2, 3, 4}  # contiguous per split
    assert match["cosine"] == expected["cosine"] and match["hamming"] == expected["hamming"]
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main([*calibrate, "--split", "validation"])
    assert (
        "error: --split: split must be one of train, test for dataset digits. Received: split='validation'"
        in capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="^split must be one of") as e:  # the library's own words
        embed_split(model_dir, "validation", "digits", digits_data_dir)
    assert "--" not in str(e.value)
