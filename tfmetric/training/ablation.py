"""The paper's ablations, reproduced small: each trains the same preset with one thing changed.

Zhai & Wu (2019) claim: a low temperature (0.05) matters (Sec. 3.1, Table 4); LayerNorm without
affine parameters makes binarization nearly free (Sec. 3.2); class-balanced sampling helps
(Sec. 3.3); and the method is robust to the embedding dimension (Table 5).

The LayerNorm claim is about binarizing pool5 itself: after a ReLU every pool5 feature is >= 0,
so without centring its sign bits only say which features are exactly zero (few, once pool5
averages a 7x7 map; half, on the 1x1 map of 32x32 inputs: see the README). A bias-free projection
with zero-mean random weights centres the features too, so the last two rows drop the projection
(``embedding_dim`` = the backbone's width, ``{width}``) and toggle only the LayerNorm.
"""

import json
import os
import re

from tfmetric import config as config_lib
from tfmetric.json_file import write_json

TEMPERATURES = (0.05, 0.1, 0.5, 1.0)
DIMENSIONS = (64, 512)


def ablations(base_config):
    """[(name, overrides)] for ``base_config``: the baseline first, then one change per row.

    Each row changes one field of the baseline (variants equal to the baseline are left out);
    when the baseline projects pool5, the last two rows drop the projection, then also LayerNorm.
    """
    from tfmetric.models.backbones import BACKBONES

    model = base_config.model
    width = BACKBONES[model.backbone].output_dim
    head = f"{model.embedding_dim}-d" + (" pool5" if model.embedding_dim == width else "")
    rows = [
        (
            f"baseline (T={model.temperature:g}, {'LayerNorm' if model.layer_norm else 'no LayerNorm'}, "
            f"{'class-balanced' if base_config.data.class_balanced else 'random batches'}, {head})",
            (),
        )
    ]
    rows += [(f"temperature {t:g}", (f"model.temperature={t}",)) for t in TEMPERATURES if t != model.temperature]
    rows.append(
        (
            "no LayerNorm" if model.layer_norm else "LayerNorm",
            (f"model.layer_norm={str(not model.layer_norm).lower()}",),
        )
    )
    rows.append(
        (
            "random batches" if base_config.data.class_balanced else "class-balanced batches",
            (f"data.class_balanced={str(not base_config.data.class_balanced).lower()}",),
        )
    )
    rows += [(f"dim {d}", (f"model.embedding_dim={d}",)) for d in DIMENSIONS if d != model.embedding_dim]
    if model.embedding_dim != width:
        rows.append((f"pool5 (no projection: dim = backbone width, {width})", (f"model.embedding_dim={width}",)))
        rows.append(("pool5, no LayerNorm", (f"model.embedding_dim={width}", "model.layer_norm=false")))
    return rows


def slug(name):
    return re.sub(r"[^0-9a-z]+", "_", name.split(" (")[0].lower()).strip("_")


def run_ablations(base_config, workdir, only=None, verbose=0):
    """Trains every ablation (or those whose slug is in ``only``) and writes the table and plot.

    Each run lives in ``<workdir>/<slug>/``; a run whose metrics.json exists is not trained again,
    so an interrupted ablation resumes. Returns the table rows.
    """
    from tfmetric.training.trainer import train_and_evaluate  # TensorFlow: imported on use

    rows = []
    for name, overrides in ablations(base_config):
        if only and slug(name) not in only:
            continue
        config = config_lib.ExperimentConfig.from_dict(json.loads(base_config.to_json()))
        config_lib.validate(config_lib.apply_overrides(config, overrides))
        run_dir = os.path.join(workdir, slug(name))
        metrics_path = os.path.join(run_dir, "metrics.json")
        if os.path.exists(metrics_path):
            with open(metrics_path) as f:
                result = json.load(f)
        else:
            print(f"== {name}", flush=True)
            result = train_and_evaluate(config, run_dir, verbose=verbose)
        test = result["test"]
        rows.append(
            {
                "name": name,
                "overrides": list(overrides),
                "recall@1": test["recall@1"],
                "binary/recall@1": test.get("binary/recall@1"),
                "map@r": test["map@r"],
            }
        )
    write_table(rows, workdir)
    return rows


def markdown(rows):
    lines = ["| run | float R@1 | binary R@1 | binary − float | MAP@R |", "|---|---|---|---|---|"]
    for r in rows:
        b = r["binary/recall@1"]
        gap = f"{b - r['recall@1']:+.4f}" if b is not None else "—"
        lines.append(
            f"| {r['name']} | {r['recall@1']:.4f} | {b if b is None else f'{b:.4f}'} | {gap} | {r['map@r']:.4f} |"
        )
    return "\n".join(lines)


def write_table(rows, workdir):
    """ablation.json, ablation.md and ablation.png (float vs binary Recall@1 per run)."""
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "ablation.json"), rows, sort_keys=False)
    with open(os.path.join(workdir, "ablation.md"), "w") as f:
        f.write(markdown(rows) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
    ax.bar(x - 0.2, [r["recall@1"] for r in rows], 0.4, label="float (cosine)")
    ax.bar(x + 0.2, [r["binary/recall@1"] or 0 for r in rows], 0.4, label="binary (Hamming)")
    ax.set_xticks(x, [r["name"].split(" (")[0] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("Recall@1 (held-out classes)")
    ax.set_ylim(0, 1)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(workdir, "ablation.png"), dpi=100)
    plt.close(fig)
