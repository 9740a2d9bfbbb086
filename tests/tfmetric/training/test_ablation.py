import json
import os

import pytest

from tests.fixtures import tiny_config
from tfmetric import ablate
from tfmetric import config as config_lib
from tfmetric.training import ablation

pytestmark = pytest.mark.slow


def test_ablations_train_each_variant_and_write_table_and_plot(digits_data_dir, tmp_path):
    workdir = str(tmp_path / "abl")
    config = tiny_config(digits_data_dir, num_steps=1)
    config.eval.projector = False
    rows = ablation.run_ablations(config, workdir, only={"baseline", "no_layernorm"})
    assert [r["name"].split(" (")[0] for r in rows] == ["baseline", "no LayerNorm"]
    saved = json.load(open(os.path.join(workdir, "no_layernorm", "config.json")))
    assert saved["model"]["layer_norm"] is False
    assert json.load(open(os.path.join(workdir, "baseline", "config.json")))["model"]["layer_norm"] is True
    table = open(os.path.join(workdir, "ablation.md")).read()
    assert "| no LayerNorm |" in table and "binary R@1" in table
    assert open(os.path.join(workdir, "ablation.png"), "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    # A second call reuses the finished runs instead of training again.
    assert ablation.run_ablations(config, workdir, only={"baseline"})[0] == rows[0]


def test_unknown_run_name_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        ablate.main(["--only", "baseline,bogus", "--workdir", "/tmp/never"])
    assert exit_info.value.code == 2
    assert "--only: unknown run(s) ['bogus']" in capsys.readouterr().err


def test_every_ablation_changes_exactly_one_field():
    # Each row changes one field of the baseline, or of the row before it (pool5 without LayerNorm).
    base = tiny_config("/tmp/x")
    rows = ablation.ablations(base)
    previous = ()
    for name, overrides in rows[1:]:
        assert len(overrides) == 1 or overrides[:-1] == previous, name
        field, value = overrides[-1].split("=")
        section, key = field.split(".")
        assert str(getattr(getattr(base, section), key)).lower() != value, name
        previous = overrides
    slugs = [ablation.slug(n) for n, _ in rows]
    assert len(set(slugs)) == len(slugs)
    assert rows[-2][1] == ("model.embedding_dim=1024",)
    assert slugs[-2:] == ["pool5", "pool5_no_layernorm"]


def test_ablations_of_the_demo_preset_follow_its_baseline():
    # The demo trains pool5 itself (1024-d) at T=0.1: no row repeats the baseline.
    base = config_lib.preset("synthetic")
    rows = ablation.ablations(base)
    assert rows[0][0] == "baseline (T=0.1, LayerNorm, class-balanced, 1024-d pool5)"
    assert [ablation.slug(n) for n, _ in rows] == [
        "baseline",
        "temperature_0_05",
        "temperature_0_5",
        "temperature_1",
        "no_layernorm",
        "random_batches",
        "dim_64",
        "dim_512",
    ]
