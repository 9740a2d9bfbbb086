import json

import pytest

from tfmetric.config import ConfigError, ExperimentConfig, apply_overrides, preset, validate


@pytest.mark.parametrize(
    "dataset,lr,ipc,ks",
    [
        ("cars196", 0.01, 25, (1, 2, 4, 8)),
        ("cub200", 0.001, 25, (1, 2, 4, 8)),
        ("sop", 0.01, 5, (1, 10, 100, 1000)),
        ("inshop", 0.01, 5, (1, 10, 20, 30, 40, 50)),
    ],
)
def test_paper_presets_equal_official_commands(dataset, lr, ipc, ks):
    c = preset(dataset)
    assert (c.model.backbone, c.model.embedding_dim, c.model.temperature) == ("resnet50", 2048, 0.05)
    assert (c.data.batch_size, c.data.images_per_class, c.data.image_size, c.data.resize_size) == (75, ipc, 224, 256)
    assert (c.train.lr, c.train.lr_mult, c.train.momentum, c.train.weight_decay) == (lr, 1.0, 0.9, 1e-4)
    assert (c.train.epochs_per_step, c.train.num_steps, c.train.gamma, c.train.warmup_epochs) == (15, 2, 0.1, 1)
    assert c.train.test_every_n_epochs == 5 and c.data.sample_with_replacement and c.model.layer_norm
    assert c.eval.recall_ks == ks
    validate(c)


def test_overrides_are_typed():
    c = apply_overrides(
        preset("synthetic"),
        [
            "train.lr=0.5",
            "data.batch_size=12",
            "data.images_per_class=4",
            "eval.recall_ks=1,5",
            "model.weights=none",
            "data.cache=false",
        ],
    )
    assert c.train.lr == 0.5 and c.data.batch_size == 12 and c.eval.recall_ks == (1, 5)
    assert c.model.weights is None and c.data.cache is False


@pytest.mark.parametrize(
    "override,match",
    [
        ("train.nope=1", "train.nope"),
        ("foo.bar=1", "foo.bar"),
        ("train.lr=abc", "train.lr"),
        ("data.batch_size=1.5", "data.batch_size"),
        ("train.lr", "section.field=value"),
    ],
)
def test_bad_overrides_name_the_field(override, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(preset("synthetic"), [override])


@pytest.mark.parametrize(
    "override,match",
    [
        ("model.temperature=0", "temperature"),
        ("data.batch_size=70", "images_per_class"),
        ("data.images_per_class=0", "images_per_class"),
        ("model.backbone=vgg", "inception_v1, resnet50"),
        ("data.image_size=16", "image_size"),
        ("train.optimizer=adam", "train.optimizer: unknown optimizer 'adam'. Allowed values: sgd, adamw"),
        ("train.precision=fp8", "train.precision: unknown policy 'fp8'. Allowed values: float32, mixed_float16"),
    ],
)
def test_validation_names_the_field(override, match):
    with pytest.raises(ConfigError, match=match):
        validate(apply_overrides(preset("synthetic"), [override]))


def test_unknown_preset_lists_allowed_values():
    with pytest.raises(ConfigError, match="cars196"):
        preset("mnist")


def test_json_round_trip_is_exact():
    c = apply_overrides(preset("cub200"), ["train.seed=7", "eval.recall_ks=1,3"])
    again = ExperimentConfig.from_dict(json.loads(c.to_json()))
    assert again == c
