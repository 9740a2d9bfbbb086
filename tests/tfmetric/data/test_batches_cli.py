"""python -m tfmetric.data.batches: the JSON lines are what training is fed; the summary's figures
against a uniform reference; batch_stats on hand-computed cases."""

import json

import numpy as np
import pytest

from tfmetric import config as config_lib
from tfmetric.data import batch_stats, batches
from tfmetric.data.sources import open_source

FLAGS = [
    "--dataset",
    "digits",
    "--set",
    "data.batch_size=20",
    "--set",
    "data.images_per_class=10",
    "--set",
    "train.seed=3",
]


def test_json_lines_are_the_batches_training_streams(digits_data_dir, capsys):
    assert batches.main([*FLAGS, "--data-dir", digits_data_dir, "--epochs", "2", "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    config = config_lib.apply_overrides(
        config_lib.preset("digits"),
        [f"data.data_dir={digits_data_dir}", "data.batch_size=20", "data.images_per_class=10"],
    )
    source, module = open_source(config.data)
    steps = source.num_images(module.TRAIN_SPLIT) // 20
    assert [(r["epoch"], r["step"]) for r in lines] == [(e, s) for e in range(2) for s in range(steps)]
    for epoch in (0, 1):
        streamed = [
            y.tolist()
            for _, y in source.train_batches(module.TRAIN_SPLIT, config.data, epoch, steps, seed=3).as_numpy_iterator()
        ]
        assert [r["labels"] for r in lines if r["epoch"] == epoch] == streamed
    for r in lines:  # 2 classes x 10 images
        assert r["labels"][:10] == [r["labels"][0]] * 10 and r["labels"][10:] == [r["labels"][10]] * 10
        assert r["labels"][0] != r["labels"][10]


def test_summary_sets_the_batches_beside_a_uniform_draw(digits_data_dir, capsys):
    assert batches.main([*FLAGS, "--data-dir", digits_data_dir]) == 0
    out = capsys.readouterr().out
    assert "digits training batches, 1 epoch(s), 2 classes x 10 images, 5 classes, 901 images" in out
    rows = {line[:44].strip(): line[44:].split() for line in out.splitlines()[2:]}
    assert rows["distinct classes per batch (mean)"] == ["2.00", "2.00"]
    assert rows["batches"] == ["45", "45"]
    ours, uniform = map(float, rows["batches per class: mean"])
    assert ours == uniform == 18.0


def test_bad_epochs_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        batches.main(["--epochs", "0"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr().err.strip() == "python -m tfmetric.data.batches: error: --epochs must be >= 1. Received: 0"
    )


def test_summary_figures_on_a_hand_computed_case():
    figures = batch_stats.summarize([[0, 0, 1, 1], [2, 2, 3, 3], [0, 0, 3, 3]], num_classes=4)
    assert figures["classes_per_batch"] == 2 and figures["label_span"] == pytest.approx(5 / 3)
    assert figures["pair_coverage"] == pytest.approx(3 / 6)  # {0,1}, {2,3}, {0,3} of 6 pairs
    assert (figures["class_uses_min"], figures["class_uses_max"]) == (1, 2)
    assert figures["class_uses_chi2"] == pytest.approx(4 * (0.5**2) / 1.5)
    assert figures["unused_classes"] == 0


def test_uniform_reference_draws_like_the_official_sampler_or_a_shuffle():
    split = np.repeat(np.arange(10), 6)
    balanced = batch_stats.uniform_reference(split, 500, 8, 2, class_balanced=True)
    groups = balanced.reshape(500, 4, 2)
    assert np.all(groups[..., 0] == groups[..., 1]) and all(len(set(g)) == 4 for g in groups[..., 0])
    uses = np.bincount(groups[..., 0].ravel(), minlength=10)
    assert ((uses - 200) ** 2 / 200).sum() < 9 + 5 * np.sqrt(18)  # uniform over classes
    shuffled = batch_stats.uniform_reference(split[:56], 14, 8, 2, class_balanced=False)
    assert sorted(shuffled[:7].ravel()) == sorted(shuffled[7:].ravel()) == sorted(split[:56])  # 2 rounds
    assert not np.array_equal(shuffled[:7], shuffled[7:])
