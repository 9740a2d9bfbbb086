"""What a training workdir may hold: the overwrite guard and the config a resume must match.

A workdir is recognisably a tfmetric run when its ``config.json`` parses as an ExperimentConfig and
every entry in it is one the trainer writes. Only such a directory (or an empty one) is deleted by
``--overwrite``; a folder of someone's files never is.
"""

import os
import shutil

from tfmetric import config as config_lib
from tfmetric.json_file import read_json

# Every top-level entry train_and_evaluate writes into a workdir (".tmp" files are atomic writes cut short).
RUN_ENTRIES = frozenset(
    {
        "config.json",
        "checkpoints",
        "history.json",
        "metrics.json",
        "tensorboard",
        "model.keras",
        "embedding_model.keras",
        "retrieval.png",
    }
)

# Fields that say where the data is or how fast the run goes, not what it learns: a resume may change
# them, and config.json then records the new values.
RESUMABLE_FIELDS = frozenset(
    {
        "data.data_dir",
        "data.raw_dir",
        "data.cache",
        "data.eval_batch_size",
        "train.jit_compile",
        "train.checkpoint_every_n_steps",
        "train.log_every_n_steps",
        "train.distribute",
        "eval.projector",
        "eval.projector_max_items",
    }
)


def read_run_config(workdir):
    """The ExperimentConfig saved in ``workdir/config.json``, or None when there is none."""
    path = os.path.join(workdir, "config.json")
    if not os.path.exists(path):
        return None
    try:
        return config_lib.ExperimentConfig.from_dict(read_json(path))
    except (ValueError, AttributeError, TypeError) as e:
        raise ValueError(f"{path} is not a tfmetric config ({e}).") from None


def remove_run(workdir):
    """Deletes ``workdir`` if it is empty or recognisably a tfmetric run; raises ValueError otherwise."""
    if not os.path.exists(workdir):
        return
    if not os.path.isdir(workdir):
        raise NotADirectoryError(f"workdir {workdir} is a file, not a directory; nothing was deleted.")
    entries = set(os.listdir(workdir))
    foreign = sorted(e for e in entries - RUN_ENTRIES if not e.endswith(".tmp"))
    refuse = None
    if entries and "config.json" not in entries:
        refuse = "it has no config.json"
    elif foreign:
        refuse = f"it holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}, which a run never writes"
    if refuse is None and entries:
        try:
            read_run_config(workdir)
        except ValueError as e:
            refuse = str(e)
    if refuse:
        raise ValueError(
            f"Refusing to delete {os.path.abspath(workdir)}: it is not a tfmetric run ({refuse}). "
            f"Delete it yourself or choose another workdir; nothing was deleted."
        )
    shutil.rmtree(workdir)


def has_weights(workdir):
    """Whether ``workdir`` holds checkpoints or saved models that its config.json describes."""
    checkpoints = os.path.join(workdir, "checkpoints")
    return any(os.path.exists(os.path.join(workdir, m)) for m in ("model.keras", "embedding_model.keras")) or (
        os.path.isdir(checkpoints) and bool(os.listdir(checkpoints))
    )


def _flatten(d, prefix=""):
    out = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


def resume_changes(saved, config):
    """{field: (saved value, new value)} for every field where ``config`` differs from ``saved``."""
    old, new = _flatten(saved.to_dict()), _flatten(config.to_dict())
    return {k: (old.get(k), new[k]) for k in sorted(new) if old.get(k) != new[k]}


def check_resume(workdir, config):
    """Before a run in an existing workdir: refuses a config that differs from the saved one in
    anything but RESUMABLE_FIELDS, so config.json and the checkpoints never disagree.

    Returns:
      The changed resumable fields {field: (old, new)}, which the caller records.
    """
    saved = read_run_config(workdir)
    if saved is None or not has_weights(workdir):  # a config.json alone describes no weights
        return {}
    changes = resume_changes(saved, config)
    fixed = {k: v for k, v in changes.items() if k not in RESUMABLE_FIELDS}
    if fixed:
        listed = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in list(fixed.items())[:4])
        raise ValueError(
            f"{os.path.join(workdir, 'config.json')} holds the run being resumed, and this config differs: "
            f"{listed}{' ...' if len(fixed) > 4 else ''}. Resume with the same settings "
            f"(--config {os.path.join(workdir, 'config.json')}), choose another workdir, or --overwrite; "
            f"nothing was changed."
        )
    return changes
