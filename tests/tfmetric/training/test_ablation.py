import json
import os

import pytest

from tfmetric import ablate
from tfmetric.training import ablation
from tests.fixtures import tiny_config

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
    previous = ()
    for name, overrides in ablation.ABLATIONS[1:]:
        overrides = ablation.resolve(overrides, base)
        assert len(overrides) == 1 or overrides[:-1] == previous, name
        field, value = overrides[-1].split("=")
        section, key = field.split(".")
        assert str(getattr(getattr(base, section), key)).lower() != value, name
        previous = overrides
    assert ablation.resolve(("model.embedding_dim={width}",), base) == ("model.embedding_dim=1024",)
    assert [ablation.slug(n) for n, _ in ablation.ABLATIONS][-2:] == ["pool5", "pool5_no_layernorm"]
