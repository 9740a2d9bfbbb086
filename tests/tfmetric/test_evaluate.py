"""python -m tfmetric.evaluate: a trained run exported and evaluated through its SavedModel reports
exactly the test metrics training reported for the same weights."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tfmetric import config as config_lib
from tfmetric import evaluate as evaluate_cli
from tfmetric.data import preprocessing
from tfmetric.export import export_from_workdir, model_card
from tfmetric.export.evaluate_lib import encoded_eval_splits, evaluate_saved_model, signature_embedder
from tfmetric.metrics import evaluation


def _config(data_dir):
    """scikit-learn digits (PNG, 5 held-out classes, ~900 test images), a tiny InceptionV1."""
    config = config_lib.preset("digits")
    d, m, t = config.data, config.model, config.train
    d.data_dir, d.batch_size, d.images_per_class, d.eval_batch_size = data_dir, 20, 10, 128
    m.embedding_dim = 12  # not a multiple of 8
    # 60 steps: a random-init network maps every image to nearly the same embedding (one shared bit
    # code); after these the codes differ, so equal binary metrics mean something.
    t.warmup_epochs, t.epochs_per_step, t.num_steps, t.steps_per_epoch, t.test_every_n_epochs = 0, 1, 1, 60, 1
    t.lr = 0.05
    config.eval.raw_pixel_baseline = False
    return config


def test_normalize_is_bitwise_equal_in_tf_data_and_tf_function():
    """Grappler turns a division by a constant into a multiplication by its reciprocal inside
    tf.functions only; the shared preprocessing multiplies by reciprocals so both paths agree."""
    x = tf.constant(np.arange(256, dtype=np.float32)[:, None].repeat(3, axis=1))
    for name in preprocessing.NORMALIZATIONS:
        fn = lambda v, name=name: preprocessing.normalize(v, name)  # noqa: E731
        in_tf_data = next(iter(tf.data.Dataset.from_tensors(x).map(fn))).numpy()
        np.testing.assert_array_equal(in_tf_data, tf.function(fn)(x).numpy())


@pytest.mark.slow
def test_exported_model_reports_the_training_metrics(tmp_path, capsys):
    from tfmetric.training.trainer import train_and_evaluate

    data_dir, workdir = str(tmp_path / "data"), str(tmp_path / "run")
    config = _config(data_dir)
    trained = train_and_evaluate(config, workdir, verbose=0)["test"]  # builds the digits TFRecords first
    assert {"recall@1", "map@r", "nmi", "binary/recall@1", "binary/map@r"} <= set(trained)
    path = export_from_workdir(workdir, str(tmp_path / "saved_models"))
    assert path == str(tmp_path / "saved_models" / "digits" / "1")

    # Exactly equal: the SavedModel runs the same preprocessing and weights as training's evaluation.
    tolerance = 1e-9
    output = tmp_path / "metrics.json"
    assert evaluate_cli.main(["--model", path, "--output", str(output)]) == 0
    served = json.loads(output.read_text())
    assert served == pytest.approx(trained, abs=tolerance)
    printed = capsys.readouterr().out
    assert f"R@1 {served['recall@1']:.4f}" in printed and f"NMI {served['nmi']:.4f}" in printed

    served_bits, _ = evaluate_saved_model(path, dataset="digits", data_dir=data_dir, binary=True)
    assert served_bits == pytest.approx({k: v for k, v in trained.items() if k.startswith("binary/")}, abs=tolerance)
    module, splits = encoded_eval_splits(config.data, 128)
    embed = signature_embedder(tf.saved_model.load(path).signatures["serving_binary"], "embedding_bits")
    codes, _ = evaluation.embed(embed, splits[module.QUERY_SPLIT])
    assert codes.shape[1] == 2 and len(np.unique(codes, axis=0)) >= 4, "degenerate model: the test shows nothing"


def test_user_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--model", str(tmp_path / "nope")])
    assert e.value.code == 2 and "not a directory" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--model", str(tmp_path)])
    assert e.value.code == 2 and "no saved_model.pb" in capsys.readouterr().err
    (tmp_path / "saved_model.pb").write_bytes(b"")  # a SavedModel tfmetric.export did not write: no card
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--model", str(tmp_path), "--dataset", "digits"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"{tmp_path}: the SavedModel has no model_card.json" in err
    assert "not exported by tfmetric.export" in err
    model_card.write_model_card(str(tmp_path), {"config": config_lib.preset("digits").to_dict()})
    with pytest.raises(SystemExit) as e:
        evaluate_cli.main(["--model", str(tmp_path), "--dataset", "nope"])
    assert e.value.code == 2 and "error: --dataset: Unknown dataset 'nope'" in capsys.readouterr().err
