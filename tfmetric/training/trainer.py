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
import tensorflow as tf

from tfmetric import config as config_lib
from tfmetric.data import service as data_service
from tfmetric.data.balanced_batches import check_balanced_args
from tfmetric.data.sources import open_source
from tfmetric.metrics import evaluation
from tfmetric.json_file import write_json
from tfmetric.models.backbones import backbone_preprocessing
from tfmetric.progress import resolve_verbose
from tfmetric.training import retrieval_grid, tensorboard
from tfmetric.training import workdir as workdir_lib
from tfmetric.training.precision import global_batch_size, make_strategy
from tfmetric.training.run_state import InterruptGuard, RunState, StopRequested
from tfmetric.training.schedule import learning_rate_at, total_epochs
from tfmetric.training.steps import make_train_step


def _evaluate(embed_fn, data, eval_config, verbose=0):
    """Scores of ``embed_fn`` on the dataset's query (and gallery) split, and the embeddings.

    Returns:
      (scores, embedded) with ``embedded[split] = (embeddings, labels)`` for each evaluated split.
    """
    embedded = {split: evaluation.embed(embed_fn, ds, f"embedding {split}", data.source.num_images(split), verbose)
                for split, ds in data.eval.items()}
    query, qlabels = embedded[data.module.QUERY_SPLIT]
    gallery, glabels = embedded.get(data.module.GALLERY_SPLIT, (None, None))
    return evaluation.score(query, qlabels, gallery, glabels, eval_config), embedded


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
        self.global_batch = global_batch_size(d.batch_size, self.replicas, t.per_replica_batch)
        self.steps = self.source.steps_per_epoch(self.split, self.global_batch, t.steps_per_epoch)
        self.normalization = backbone_preprocessing(config.model.backbone, config.model.weights)
        self.eval_splits = [s for s in (self.module.QUERY_SPLIT, self.module.GALLERY_SPLIT) if s]
        _check_recall_ks(config.eval.recall_ks, self.source, self.module)
        self.eval = {s: self.source.eval_dataset(s, d, self.normalization) for s in self.eval_splits}
        self.config = config

    def epoch(self, epoch, skip_steps):
        """Batches of ``epoch`` after the first ``skip_steps`` steps (deterministic per seed and epoch)."""
        d, seed = self.config.data, self.config.train.seed
        # With data.service the sampler's dataset runs on tf.data service workers, wrapped here.
        serve = (lambda ds: data_service.served(ds, d.service)) if d.service else (lambda ds: ds)
        if self.replicas == 1 or not self.config.train.per_replica_batch:
            # The global batches one device trains on; under a strategy each is split evenly
            # across the replicas (every worker of a cluster makes them all and keeps its part).
            batches = serve(self.source.train_dataset(self.split, d, self.normalization, epoch, self.steps,
                                                      seed)).skip(skip_steps)
            if self.replicas == 1:
                return batches
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            return self.strategy.experimental_distribute_dataset(batches.with_options(options))
        d = dataclasses.replace(d, batch_size=self.global_batch)  # whole classes per replica
        fn = self.source.distribute_dataset_fn(self.split, d, self.normalization, epoch, self.steps, seed)
        return self.strategy.distribute_datasets_from_function(
            lambda ctx: serve(fn(ctx)).skip(skip_steps))


def train_and_evaluate(config, workdir, verbose="auto", export=None):
    """Trains with the paper's recipe, evaluates on held-out classes, writes everything to workdir.

    Writes ``config.json`` (before training), ``checkpoints/``, ``history.json``, ``tensorboard/``
    (scalars, a retrieval grid image at every evaluation and the test split's embedding
    projector), ``retrieval.png`` (the last grid), ``model.keras`` (images -> logits),
    ``embedding_model.keras`` (images -> embeddings) and, last, ``metrics.json``. ``export``, a
    function of the workdir returning a path (``python -m tfmetric.train`` passes
    ``tfmetric.export.export_from_workdir`` bound to its ``--export-dir``), is called once those
    models are saved and before ``metrics.json`` is written; the path is the result's
    ``saved_model``. Nothing is written when the run fails before its first step (a missing
    dataset, a bad config); a finished run is not trained or exported again (its result comes
    back with ``"already_finished": True``).

    ``verbose`` follows Keras: 0 silent, 1 a progress bar per epoch, 2 one line per epoch,
    "auto" (1 on a terminal, else 2).

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
        return _train_and_evaluate(config, strategy, workdir, workdir, verbose, export)
    # Another worker of a multi-worker cluster: it restores from the chief's workdir (shared storage)
    # and takes part in every step and save, but writes into a scratch directory deleted at the end.
    # It does not evaluate: BatchNorm moving statistics are per replica and the model the chief
    # saves carries the chief's (as PyTorch's DistributedDataParallel broadcasts rank 0's).
    scratch = tempfile.mkdtemp(prefix="tfmetric-worker-")
    try:
        return _train_and_evaluate(config, strategy, workdir, scratch, verbose, None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _train_and_evaluate(config, strategy, workdir, out_dir, verbose, export):
    """The run, restoring from ``workdir`` and writing every output into ``out_dir``; evaluated and
    saved only when they are the same directory (not on a non-chief worker)."""
    chief = out_dir == workdir
    verbose = resolve_verbose(verbose)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"workdir {workdir} is a file, not a directory. Choose another --workdir.")
    changed = workdir_lib.check_resume(workdir, config)  # refuses changes to what is learnt
    t = config.train
    # Everything that can fail on bad input (data, model, checkpoint) comes before the first write.
    data = _Data(config, strategy)
    run = RunState(config, data.num_classes, workdir, strategy, save_dir=None if chief else out_dir)
    start_epoch, start_step = run.restore()
    epochs = total_epochs(t)
    metrics_path = os.path.join(out_dir, "metrics.json")
    if chief and start_epoch >= epochs and os.path.exists(metrics_path):
        with open(metrics_path) as f:
            return dict(json.load(f), already_finished=True)
    for field, (old, new) in changed.items():
        print(f"Resuming {workdir} with {field} changed: {old!r} -> {new!r} (recorded in config.json)", flush=True)
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "config.json"), config.to_dict())
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
    if verbose:
        print(f"Training {config.model.backbone} on {config.data.dataset}: "
              f"{data.source.num_images(data.split)} images, {data.num_classes} classes, {data.steps} steps/epoch "
              f"x {epochs} epochs, {data.replicas} replica(s), global batch {data.global_batch} -> {workdir}"
              + (f" (resuming at epoch {start_epoch + 1}, step {start_step})" if start_epoch or start_step else ""),
              flush=True)

    report = None  # the last evaluation: (scores, embeddings, grid), reused at the end
    embedder = evaluation.compiled_embedder(run.embedding_model)
    with InterruptGuard() as guard:
        for epoch in range(start_epoch, epochs):
            skip = start_step if epoch == start_epoch else 0
            record = _train_epoch(run, data, steps_fns, epoch, skip, epochs, guard, logger, verbose)
            main_epoch = epoch + 1 - t.warmup_epochs
            if chief and (epoch + 1 == epochs or (main_epoch > 0 and main_epoch % t.test_every_n_epochs == 0)):
                report = _report(embedder, data, config.eval, logger, (epoch + 1) * data.steps, verbose)
                record["test"] = report[0]
                if verbose and epoch + 1 < epochs:  # the final scores are the run's result, shown once
                    print(f"  test after epoch {epoch + 1}:\n"
                          + evaluation.format_scores(record["test"], config.eval.recall_ks, indent="    "), flush=True)
            history.append(record)
            run.save(epoch + 1, 0)
            write_json(history_path, history)
    if not chief:
        return {"dataset": config.data.dataset, "backbone": config.model.backbone, "epochs": epochs,
                "test": None, "history": history, "worker": True}
    if report is None:  # resumed after the last epoch: evaluate once more
        report = _report(embedder, data, config.eval, logger, epochs * data.steps, verbose)
    return _finish(config, out_dir, run, data, history, logger, report, verbose, export)


def _train_epoch(run, data, steps_fns, epoch, skip, epochs, guard, logger, verbose):
    t = data.config.train
    phase = "warmup" if epoch < t.warmup_epochs else "main"
    lr = learning_rate_at(epoch, t)
    (run.warmup_opt if phase == "warmup" else run.main_opt).learning_rate.assign(lr)
    title = f"Epoch {epoch + 1}/{epochs} ({phase}, lr {lr:g})" + (f", resuming at step {skip}" if skip else "")
    if verbose == 1:
        print(title, flush=True)
    bar = keras.utils.Progbar(data.steps, verbose=1 if verbose == 1 else 0, stateful_metrics=["loss"])
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
    seconds = time.time() - started
    if verbose == 2:
        print(f"{title}: loss {mean_loss:.4f}, {seconds:.1f} s", flush=True)
    logger.epoch((epoch + 1) * data.steps, lr, mean_loss)
    return {"epoch": epoch + 1, "phase": phase, "lr": lr, "loss": mean_loss,
            "seconds": round(seconds, 2), "resumed_at_step": skip}


def _report(embedder, data, eval_config, logger, step, verbose):
    """One evaluation: scores, the embeddings, and the retrieval grid, logged to TensorBoard."""
    scores, embedded = _evaluate(embedder, data, eval_config, verbose)
    grid = retrieval_grid.grid_for_source(data.source, data.module, embedded)
    logger.test(step, scores, grid)
    return scores, embedded, grid


def _finish(config, workdir, run, data, history, logger, report, verbose, export):
    final, embedded, grid = report
    result = {"dataset": config.data.dataset, "backbone": config.model.backbone,
              "epochs": total_epochs(config.train), "test": final, "history": history}
    if config.eval.raw_pixel_baseline:
        pixels_config = dataclasses.replace(config.eval, binary=False, nmi=False)
        result["raw_pixels"], _ = _evaluate(evaluation.flatten_pixels, data, pixels_config, verbose)
        logger.test(total_epochs(config.train) * data.steps, result["raw_pixels"], prefix="raw_pixels")
    if config.eval.projector:
        split = data.module.QUERY_SPLIT
        query, labels = embedded[split]
        tensorboard.write_projector(logger.dir, query, labels, data.source.raw_dataset(split, names=True).as_numpy_iterator(),
                                    max_items=config.eval.projector_max_items)
    result["retrieval_grid"] = os.path.join(workdir, "retrieval.png")
    with open(result["retrieval_grid"] + ".tmp", "wb") as f:
        f.write(retrieval_grid.encode_png(grid))
    os.replace(result["retrieval_grid"] + ".tmp", result["retrieval_grid"])
    run.model.save(os.path.join(workdir, "model.keras"))
    run.embedding_model.save(os.path.join(workdir, "embedding_model.keras"))
    if export:
        result["saved_model"] = export(workdir)
    write_json(os.path.join(workdir, "metrics.json"), result)  # last: its presence means finished
    return result
