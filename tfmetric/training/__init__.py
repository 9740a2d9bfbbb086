"""Training: the official schedule (warm-up on new parameters, then step-decayed SGD), checkpoints,
TensorBoard and the ablation runner.

    from tfmetric.training import train_and_evaluate
    result = train_and_evaluate(config, "runs/cars196/20260101-120000")   # metrics.json's dict

Training uses data/, models/ and metrics/ and never export/: ``python -m tfmetric.train`` passes
the export as a function (``export=``). Names are imported lazily so that ``python -m
tfmetric.train --help`` answers before TensorFlow loads.
"""

from tfmetric.lazy_exports import lazy_exports

_EXPORTS = {
    "train_and_evaluate": "trainer",
    "StopRequested": "run_state",
    "run_ablations": "ablation",
    "remove_run": "workdir",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _EXPORTS)
