"""train_and_evaluate: the official training recipe as a library function.

Epochs ``0..warmup_epochs-1`` train only the new parameters (proxies and projection) with
``lr * lr_mult``, BatchNorm still in training mode as in the official code; then all parameters
train with a fresh optimizer for ``epochs_per_step * num_steps`` epochs, the lr multiplied by
``gamma`` every ``epochs_per_step`` epochs. Checkpoints are written every epoch, every
``checkpoint_every_n_steps`` steps and on SIGINT/SIGTERM; rerunning with the same workdir resumes.
"""
import dataclasses
import json
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from tfmetric import config as config_lib
from tfmetric.data.balanced_batches import check_balanced_args
from tfmetric.data.sources import open_source
from tfmetric.models.backbones import backbone_preprocessing
from tfmetric.training import evaluation, tensorboard
from tfmetric.training import workdir as workdir_lib
from tfmetric.training.precision import make_strategy
from tfmetric.training.run_state import InterruptGuard, RunState, StopRequested
from tfmetric.training.schedule import learning_rate_at, total_epochs
from tfmetric.training.steps import make_train_step


def write_json(path, obj):
    """Atomic JSON write: readers never see a half-written file."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:  # a full disk or a size limit: name the file (a failed write does not)
        if os.path.exists(tmp):
            os.remove(tmp)
        raise type(e)(e.errno, e.strerror, e.filename or path) from None


def _evaluate(embed_fn, module, eval_config, eval_data):
    """Scores of ``embed_fn`` on the dataset's query (and gallery) split, and the query embeddings."""
    query, qlabels = evaluation.embed(embed_fn, eval_data[module.QUERY_SPLIT])
    gallery = glabels = None
    if module.GALLERY_SPLIT:
        gallery, glabels = evaluation.embed(embed_fn, eval_data[module.GALLERY_SPLIT])
    return evaluation.score(query, qlabels, gallery, glabels, eval_config), (query, qlabels)


def format_scores(metrics, ks):
    parts = [f"R@{k} {metrics[f'recall@{k}']:.4f}" for k in ks]
    parts.append(f"MAP@R {metrics['map@r']:.4f}")
    if "binary/recall@1" in metrics:
        parts.append(f"| binary R@1 {metrics['binary/recall@1']:.4f}")
    return " ".join(parts)


def _check_recall_ks(ks, source, module):
    """Before training: the evaluation split must hold more items than the largest K retrieves."""
    query = source.num_images(module.QUERY_SPLIT)
    available = source.num_images(module.GALLERY_SPLIT) if module.GALLERY_SPLIT else query - 1
    if max(ks) > available:
        where = (f"the {module.GALLERY_SPLIT} split" if module.GALLERY_SPLIT
                 else f"the {module.QUERY_SPLIT} split minus the query")
        raise config_lib.ConfigError(f"eval.recall_ks asks for {max(ks)} neighbours but {where} holds only "
                                     f"{available} images. Received: recall_ks={tuple(ks)}.")


class _Data:
    """The run's data: source, split sizes, per-epoch training datasets and evaluation datasets."""

    def __init__(self, config, strategy):
        d, t = config.data, config.train
        self.source, self.module = open_source(d)
        self.split = self.module.TRAIN_SPLIT
        self.num_classes = self.source.num_classes(self.split)
        check_balanced_args(self.num_classes, d.batch_size, d.images_per_class)
        self.strategy = strategy
        self.replicas = strategy.num_replicas_in_sync
        self.global_batch = d.batch_size * self.replicas
        self.steps = t.steps_per_epoch or max(1, self.source.num_images(self.split) // self.global_batch)
        self.normalization = backbone_preprocessing(config.model.backbone, config.model.weights)
        self.eval_splits = [s for s in (self.module.QUERY_SPLIT, self.module.GALLERY_SPLIT) if s]
        _check_recall_ks(config.eval.recall_ks, self.source, self.module)
        self.eval = {s: self.source.eval_dataset(s, d, self.normalization) for s in self.eval_splits}
        self.config = config

    def epoch(self, epoch, skip_steps):
        """Batches of ``epoch`` after the first ``skip_steps`` steps (deterministic per seed and epoch)."""
        d, seed = self.config.data, self.config.train.seed
        if self.replicas == 1:
            return self.source.train_dataset(self.split, d, self.normalization, epoch, self.steps,
                                             seed).skip(skip_steps)
        fn = self.source.distribute_dataset_fn(self.split, d, self.normalization, epoch, self.steps, seed)
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: fn(ctx).skip(skip_steps))


def train_and_evaluate(config, workdir, verbose=1, export_dir=None, export_name=None):
    """Trains with the paper's recipe, evaluates on held-out classes, writes everything to workdir.

    Writes ``config.json`` (before training), ``checkpoints/``, ``history.json``, ``tensorboard/``
    (scalars and the test split's embedding projector), ``metrics.json``, ``model.keras``
    (images -> logits) and ``embedding_model.keras`` (images -> embeddings). With ``export_dir``,
    also exports the versioned SavedModel for TF Serving (``<export_dir>/<name>/<version>/``).

    Under MultiWorkerMirroredStrategy (``TF_CONFIG``) every worker runs this with the same
    ``workdir`` on storage they share; only the chief writes there (and exports), the others
    restore from it and write into scratch directories they delete.

    Returns:
      The final metrics dict (also in metrics.json).

    Raises:
      StopRequested: SIGINT/SIGTERM arrived; a checkpoint was written first.
      FloatingPointError: the loss became NaN or infinite; the last good checkpoint is kept.
    """
    config_lib.validate(config)
    keras.utils.set_random_seed(config.train.seed)
    strategy = make_strategy(config.train.distribute)
    if strategy.extended.should_checkpoint:  # one device, one host, or the chief of a cluster
        return _train_and_evaluate(config, strategy, workdir, workdir, verbose, export_dir, export_name)
    # Another worker of a multi-worker cluster: it restores from the chief's workdir (shared storage)
    # and takes part in every step and save, but writes into a scratch directory deleted at the end.
    # It does not evaluate: BatchNorm moving statistics are per replica and the model the chief
    # saves carries the chief's (as PyTorch's DistributedDataParallel broadcasts rank 0's).
    scratch = tempfile.mkdtemp(prefix="tfmetric-worker-")
    try:
        return _train_and_evaluate(config, strategy, workdir, scratch, verbose, None, None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train_and_evaluate(config, strategy, workdir, out_dir, verbose, export_dir, export_name):
    """The run, restoring from ``workdir`` and writing every output into ``out_dir``; evaluated and
    saved only when they are the same directory (not on a non-chief worker)."""
    chief = out_dir == workdir
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"workdir {workdir} is a file, not a directory. Choose another --workdir.")
    for field, (old, new) in workdir_lib.check_resume(workdir, config).items():
        print(f"Resuming {workdir} with {field} changed: {old!r} -> {new!r} (recorded in config.json)", flush=True)
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "config.json"), config.to_dict())
    t = config.train
    data = _Data(config, strategy)
    run = RunState(config, data.num_classes, workdir, strategy, save_dir=None if chief else out_dir)
    start_epoch, start_step = run.restore()
    epochs = total_epochs(t)
    history = []
    if (start_epoch or start_step) and os.path.exists(os.path.join(workdir, "history.json")):
        with open(os.path.join(workdir, "history.json")) as f:
            history = json.load(f)
    history_path = os.path.join(out_dir, "history.json")
    logger = tensorboard.Logger(out_dir, t.log_every_n_steps)
    steps_fns = {
        "warmup": make_train_step(strategy, run.model, run.warmup_opt, run.head_vars, data.global_batch,
                                  t.jit_compile),
        "main": make_train_step(strategy, run.model, run.main_opt, run.all_vars, data.global_batch,
                                t.jit_compile)}
    print(f"Training {config.model.backbone} on {config.data.dataset}: "
          f"{data.source.num_images(data.split)} images, {data.num_classes} classes, {data.steps} steps/epoch "
          f"x {epochs} epochs, {data.replicas} replica(s), global batch {data.global_batch} -> {workdir}",
          flush=True)

    last_eval = None  # the last epoch's query embeddings, reused for the projector
    with InterruptGuard() as guard:
        for epoch in range(start_epoch, epochs):
            skip = start_step if epoch == start_epoch else 0
            record = _train_epoch(run, data, steps_fns, epoch, skip, epochs, guard, logger, verbose)
            main_epoch = epoch + 1 - t.warmup_epochs
            if chief and (epoch + 1 == epochs or (main_epoch > 0 and main_epoch % t.test_every_n_epochs == 0)):
                record["test"], last_eval = _evaluate(evaluation.compiled_embedder(run.embedding_model),
                                                      data.module, config.eval, data.eval)
                logger.test((epoch + 1) * data.steps, record["test"])
                print(f"  test: {format_scores(record['test'], config.eval.recall_ks)}", flush=True)
            history.append(record)
            run.save(epoch + 1, 0)
            write_json(history_path, history)
    if not chief:
        return {"dataset": config.data.dataset, "backbone": config.model.backbone, "epochs": epochs,
                "test": None, "history": history, "worker": True}
    result = _finish(config, out_dir, run, data, history, logger, last_eval)
    if export_dir:
        from tfmetric.export import export_from_workdir  # reloads embedding_model.keras
        result["saved_model"] = export_from_workdir(out_dir, export_dir, export_name)
        print(f"Exported SavedModel for TF Serving: {result['saved_model']}", flush=True)
        write_json(os.path.join(out_dir, "metrics.json"), result)
    return result


def _train_epoch(run, data, steps_fns, epoch, skip, epochs, guard, logger, verbose):
    t = data.config.train
    phase = "warmup" if epoch < t.warmup_epochs else "main"
    lr = learning_rate_at(epoch, t)
    (run.warmup_opt if phase == "warmup" else run.main_opt).learning_rate.assign(lr)
    if verbose:
        print(f"Epoch {epoch + 1}/{epochs} ({phase}, lr {lr:g})" + (f", resuming at step {skip}" if skip else ""),
              flush=True)
    bar = keras.utils.Progbar(data.steps, verbose=verbose, stateful_metrics=["loss"])
    started, losses = time.time(), []
    for i, (images, labels) in enumerate(data.epoch(epoch, skip), start=skip + 1):
        loss = float(steps_fns[phase](images, labels))
        if not np.isfinite(loss):
            kept = run.manager.latest_checkpoint
            raise FloatingPointError(
                f"Loss became {loss} at epoch {epoch + 1}, step {i}. Stopped; "
                + (f"the last good checkpoint {kept} is kept" if kept else "no checkpoint had been written yet")
                + ". Lower train.lr or check the data.")
        losses.append(loss)
        logger.loss(epoch * data.steps + i, loss)
        bar.update(i, [("loss", loss)])
        if guard.requested:
            path = run.save(epoch, i)
            raise StopRequested(f"Interrupted at epoch {epoch + 1}, step {i}; checkpoint {path}. "
                                f"Rerun the same command to resume.")
        if t.checkpoint_every_n_steps and i % t.checkpoint_every_n_steps == 0 and i < data.steps:
            run.save(epoch, i)
    mean_loss = float(np.mean(losses)) if losses else float("nan")
    logger.epoch((epoch + 1) * data.steps, lr, mean_loss)
    return {"epoch": epoch + 1, "phase": phase, "lr": lr, "loss": mean_loss,
            "seconds": round(time.time() - started, 2), "resumed_at_step": skip}


def _finish(config, workdir, run, data, history, logger, last_eval):
    final = history[-1].get("test") if history else None
    if final is None or last_eval is None:  # resumed after the last epoch: evaluate once more
        final, last_eval = _evaluate(evaluation.compiled_embedder(run.embedding_model), data.module,
                                     config.eval, data.eval)
    query, qlabels = last_eval
    result = {"dataset": config.data.dataset, "backbone": config.model.backbone,
              "epochs": total_epochs(config.train), "test": final, "history": history}
    if config.eval.raw_pixel_baseline:
        pixels_config = dataclasses.replace(config.eval, binary=False, nmi=False)
        result["raw_pixels"], _ = _evaluate(evaluation.flatten_pixels, data.module, pixels_config, data.eval)
        print(f"Raw pixels: R@1 {result['raw_pixels']['recall@1']:.4f}", flush=True)
    if config.eval.projector:
        raw = (b.numpy() for b, _ in data.source.raw_dataset(data.module.QUERY_SPLIT))
        tensorboard.write_projector(logger.dir, query, qlabels, raw, max_items=config.eval.projector_max_items)
    run.model.save(os.path.join(workdir, "model.keras"))
    run.embedding_model.save(os.path.join(workdir, "embedding_model.keras"))
    write_json(os.path.join(workdir, "metrics.json"), result)
    return result
