"""train_and_evaluate: the official training recipe as a library function.

Epochs ``0..warmup_epochs-1`` train only the new parameters (proxies and projection) with
``lr * lr_mult``, BatchNorm still in training mode as in the official code; then all parameters
train with a fresh optimizer for ``epochs_per_step * num_steps`` epochs, the lr multiplied by
``gamma`` every ``epochs_per_step`` epochs. Checkpoints are written every epoch, every
``checkpoint_every_n_steps`` steps and on SIGINT/SIGTERM; rerunning with the same workdir resumes.
"""

import dataclasses
import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from tfmetric import config as config_lib
from tfmetric.data import service as data_service
from tfmetric.data.balanced_batches import check_balanced_args
from tfmetric.data.sources import open_source
from tfmetric.json_file import write_json
from tfmetric.metrics import evaluation
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
    embedded = {
        split: evaluation.embed(embed_fn, ds, f"embedding {split}", data.source.num_images(split), verbose)
        for split, ds in data.eval.items()
    }
    query, qlabels = embedded[data.module.QUERY_SPLIT]
    gallery, glabels = embedded.get(data.module.GALLERY_SPLIT, (None, None))
    return evaluation.score(query, qlabels, gallery, glabels, eval_config), embedded


def _check_recall_ks(ks, source, module):
    """Before training: the evaluation split must hold more items than the largest K retrieves."""
    query = source.num_images(module.QUERY_SPLIT)
    available = source.num_images(module.GALLERY_SPLIT) if module.GALLERY_SPLIT else query - 1
    if max(ks) > available:
        where = (
            f"the {module.GALLERY_SPLIT} split"
            if module.GALLERY_SPLIT
            else f"the {module.QUERY_SPLIT} split minus the query"
        )
        raise config_lib.ConfigError(
            f"eval.recall_ks asks for {max(ks)} neighbours but {where} holds only "
            f"{available} images. Received: recall_ks={tuple(ks)}."
        )


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

    def batches(self, first_epoch, skip_steps, end_epoch):
        """One iterator over the batches of epochs ``first_epoch..end_epoch-1``, the first after its
        first ``skip_steps`` steps: each epoch's ``epoch(...)`` batches, in order.

        On one device the epochs are one dataset, built, optimized and started once for the run
        (``train_epochs``), so no epoch pays for building its own. Under a strategy, or served by
        tf.data service (whose workers interleave batches), each epoch's dataset is built when the
        previous one is used up, so no batch crosses an epoch boundary.
        """
        d, seed = self.config.data, self.config.train.seed
        if self.replicas > 1 or d.service:
            return itertools.chain.from_iterable(
                self.epoch(e, skip_steps if e == first_epoch else 0) for e in range(first_epoch, end_epoch)
            )
        batches = self.source.train_epochs(self.split, d, self.normalization, first_epoch, end_epoch, self.steps, seed)
        return iter(batches.skip(skip_steps))

    def epoch(self, epoch, skip_steps):
        """Batches of ``epoch`` after the first ``skip_steps`` steps (deterministic per seed and epoch)."""
        d, seed = self.config.data, self.config.train.seed
        # With data.service the sampler's dataset runs on tf.data service workers, wrapped here.
        serve = (lambda ds: data_service.served(ds, d.service)) if d.service else (lambda ds: ds)
        if self.replicas == 1 or not self.config.train.per_replica_batch:
            # The global batches one device trains on; under a strategy each is split evenly
            # across the replicas (every worker of a cluster makes them all and keeps its part).
            batches = serve(self.source.train_dataset(self.split, d, self.normalization, epoch, self.steps, seed)).skip(
                skip_steps
            )
            if self.replicas == 1:
                return batches
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            return self.strategy.experimental_distribute_dataset(batches.with_options(options))
        d = dataclasses.replace(d, batch_size=self.global_batch)  # whole classes per replica
        fn = self.source.distribute_dataset_fn(self.split, d, self.normalization, epoch, self.steps, seed)
        return self.strategy.distribute_datasets_from_function(lambda ctx: serve(fn(ctx)).skip(skip_steps))


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
        return _train_and_evaluate(
            config, strategy, workdir, out_dir=workdir, is_chief=True, verbose=verbose, export=export
        )
    # Another worker of a multi-worker cluster: it restores from the chief's workdir (shared storage)
    # and takes part in every step and save, but writes into a scratch directory deleted at the end.
    # It does not evaluate: BatchNorm moving statistics are per replica and the model the chief
    # saves carries the chief's (as PyTorch's DistributedDataParallel broadcasts rank 0's).
    scratch = tempfile.mkdtemp(prefix="tfmetric-worker-")
    try:
        return _train_and_evaluate(config, strategy, workdir, out_dir=scratch, is_chief=False, verbose=verbose)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclasses.dataclass
class _Run:
    """One run of train_and_evaluate, handed to each of its stages.

    Attributes:
      config: the validated ExperimentConfig.
      strategy: the tf.distribute strategy the steps run under.
      workdir: the run directory checkpoints are restored from (shared by every worker of a cluster).
      out_dir: where this process writes: ``workdir`` on the chief, a scratch directory elsewhere.
      is_chief: this process evaluates, saves the models and the result, and exports.
      verbose: 0, 1 or 2 (``tfmetric.progress.resolve_verbose``).
      data: the datasets (``_Data``).
      state: model, both optimizers and the checkpoints (``RunState``).
      train_steps: ``{"warmup": step, "main": step}``, each ``(images, labels) -> loss``.
      embedder: the traced inference function of the embedding model, used by every evaluation.
      logger: the TensorBoard writer under ``out_dir``.
      export: called by the chief with ``out_dir`` once the Keras models are saved, returning the
        exported SavedModel's path (None: no export).
    """

    config: config_lib.ExperimentConfig
    strategy: tf.distribute.Strategy
    workdir: str
    out_dir: str
    is_chief: bool
    verbose: int
    data: _Data
    state: RunState
    train_steps: dict
    embedder: Callable
    logger: tensorboard.Logger
    export: Callable | None = None

    @property
    def epochs(self):
        return total_epochs(self.config.train)

    def path(self, name):
        """``name`` in the directory this process writes to."""
        return os.path.join(self.out_dir, name)


def _train_and_evaluate(config, strategy, workdir, *, out_dir, is_chief, verbose, export=None):
    """The run, restoring from ``workdir`` and writing every output into ``out_dir`` (see ``_Run``)."""
    verbose = resolve_verbose(verbose)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise NotADirectoryError(f"workdir is a file, not a directory; choose another. Received: workdir={workdir}")
    changed = workdir_lib.check_resume(workdir, config)  # refuses changes to what is learnt
    # Everything that can fail on bad input (data, model, checkpoint) comes before the first write.
    data = _Data(config, strategy)
    state = RunState(config, data.num_classes, workdir, strategy, save_dir=None if is_chief else out_dir)
    start_epoch, start_step = state.restore()
    metrics_path = os.path.join(out_dir, "metrics.json")
    if is_chief and start_epoch >= total_epochs(config.train) and os.path.exists(metrics_path):
        with open(metrics_path) as f:
            return dict(json.load(f), already_finished=True)
    for field, (old, new) in changed.items():
        print(f"Resuming {workdir} with {field} changed: {old!r} -> {new!r} (recorded in config.json)", flush=True)
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "config.json"), config.to_dict())
    t = config.train
    train_steps = {
        "warmup": make_train_step(
            strategy, state.model, state.warmup_opt, state.head_vars, data.global_batch, t.jit_compile
        ),
        "main": make_train_step(
            strategy, state.model, state.main_opt, state.all_vars, data.global_batch, t.jit_compile
        ),
    }
    run = _Run(
        config,
        strategy,
        workdir,
        out_dir,
        is_chief,
        verbose,
        data,
        state,
        train_steps,
        evaluation.compiled_embedder(state.embedding_model),
        tensorboard.Logger(out_dir, t.log_every_n_steps),
        export,
    )
    history, report = _train(run, start_epoch, start_step)
    if run.is_chief and report is None:  # resumed after the last epoch: evaluate once more
        report = _report(run, run.epochs * data.steps)
    return _finish(run, history, report)


def _train(run, start_epoch, start_step):
    """Trains epochs ``start_epoch..`` (the first from ``start_step``), checkpointing each.

    Returns:
      (history, report): every epoch's record, and the last evaluation (None when none ran).
    """
    t, data = run.config.train, run.data
    history = []
    if (start_epoch or start_step) and os.path.exists(os.path.join(run.workdir, "history.json")):
        with open(os.path.join(run.workdir, "history.json")) as f:
            history = json.load(f)
    if run.verbose:
        print(
            f"Training {run.config.model.backbone} on {run.config.data.dataset}: "
            f"{data.source.num_images(data.split)} images, {data.num_classes} classes, {data.steps} steps/epoch "
            f"x {run.epochs} epochs, {data.replicas} replica(s), global batch {data.global_batch} -> {run.workdir}"
            + (f" (resuming at epoch {start_epoch + 1}, step {start_step})" if start_epoch or start_step else ""),
            flush=True,
        )
    report = None  # the last evaluation: (scores, embeddings, grid), reused at the end
    with InterruptGuard() as guard:  # from here on SIGINT/SIGTERM checkpoint first (building the input included)
        batches = data.batches(start_epoch, start_step, run.epochs)
        for epoch in range(start_epoch, run.epochs):
            record = _train_epoch(run, epoch, start_step if epoch == start_epoch else 0, guard, batches)
            main_epoch = epoch + 1 - t.warmup_epochs
            last = epoch + 1 == run.epochs
            if run.is_chief and (last or (main_epoch > 0 and main_epoch % t.test_every_n_epochs == 0)):
                report = _report(run, (epoch + 1) * data.steps)
                record["test"] = report[0]
                if run.verbose and not last:  # the final scores are the run's result, shown once
                    print(
                        f"  test after epoch {epoch + 1}:\n"
                        + evaluation.format_scores(record["test"], run.config.eval.recall_ks, indent="    "),
                        flush=True,
                    )
            history.append(record)
            run.state.save(epoch + 1, 0)
            write_json(run.path("history.json"), history)
    return history, report


def _train_epoch(run, epoch, skip, guard, batches):
    """One epoch after its first ``skip`` steps, its ``steps - skip`` batches taken from the run's
    iterator ``batches``; returns its history record."""
    t, data, state = run.config.train, run.data, run.state
    phase = "warmup" if epoch < t.warmup_epochs else "main"
    lr = learning_rate_at(epoch, t)
    (state.warmup_opt if phase == "warmup" else state.main_opt).learning_rate.assign(lr)
    title = f"Epoch {epoch + 1}/{run.epochs} ({phase}, lr {lr:g})" + (f", resuming at step {skip}" if skip else "")
    if run.verbose == 1:
        print(title, flush=True)
    bar = keras.utils.Progbar(data.steps, verbose=1 if run.verbose == 1 else 0, stateful_metrics=["loss"])
    started, losses = time.time(), []
    for i, (images, labels) in enumerate(itertools.islice(batches, data.steps - skip), start=skip + 1):
        loss = float(run.train_steps[phase](images, labels))
        if not np.isfinite(loss):
            kept = state.manager.latest_checkpoint
            raise FloatingPointError(
                f"Loss became {loss} at epoch {epoch + 1}, step {i}. Stopped; "
                + (f"the last good checkpoint {kept} is kept" if kept else "no checkpoint had been written yet")
                + ". Lower train.lr or check the data."
            )
        losses.append(loss)
        run.logger.loss(epoch * data.steps + i, loss)
        bar.update(i, [("loss", loss)])
        if guard.requested:
            path = state.save(epoch, i)
            raise StopRequested(
                f"Interrupted at epoch {epoch + 1}, step {i}; checkpoint {path}. Rerun the same command to resume."
            )
        if t.checkpoint_every_n_steps and i % t.checkpoint_every_n_steps == 0 and i < data.steps:
            state.save(epoch, i)
    mean_loss = float(np.mean(losses)) if losses else float("nan")
    seconds = time.time() - started
    if run.verbose == 2:
        print(f"{title}: loss {mean_loss:.4f}, {seconds:.1f} s", flush=True)
    run.logger.epoch((epoch + 1) * data.steps, lr, mean_loss)
    return {
        "epoch": epoch + 1,
        "phase": phase,
        "lr": lr,
        "loss": mean_loss,
        "seconds": round(seconds, 2),
        "resumed_at_step": skip,
    }


def _report(run, step):
    """One evaluation: scores, the embeddings, and the retrieval grid, logged to TensorBoard."""
    scores, embedded = _evaluate(run.embedder, run.data, run.config.eval, run.verbose)
    grid = retrieval_grid.grid_for_source(run.data.source, run.data.module, embedded)
    run.logger.test(step, scores, grid)
    return scores, embedded, grid


def _finish(run, history, report):
    """The run's result, built here only; the chief also writes its outputs, ``metrics.json`` last."""
    config, data = run.config, run.data
    result = {
        "dataset": config.data.dataset,
        "backbone": config.model.backbone,
        "epochs": run.epochs,
        "test": report[0] if run.is_chief else None,
        "history": history,
    }
    if not run.is_chief:
        return dict(result, worker=True)
    _, embedded, grid = report
    if config.eval.raw_pixel_baseline:
        pixels_config = dataclasses.replace(config.eval, binary=False, nmi=False)
        result["raw_pixels"], _ = _evaluate(evaluation.flatten_pixels, data, pixels_config, run.verbose)
        run.logger.test(run.epochs * data.steps, result["raw_pixels"], prefix="raw_pixels")
    if config.eval.projector:
        split = data.module.QUERY_SPLIT
        query, labels = embedded[split]
        tensorboard.write_projector(
            run.logger.dir,
            query,
            labels,
            data.source.raw_dataset(split, names=True).as_numpy_iterator(),
            max_items=config.eval.projector_max_items,
        )
    result["retrieval_grid"] = run.path("retrieval.png")
    with open(result["retrieval_grid"] + ".tmp", "wb") as f:
        f.write(retrieval_grid.encode_png(grid))
    os.replace(result["retrieval_grid"] + ".tmp", result["retrieval_grid"])
    run.state.model.save(run.path("model.keras"))
    run.state.embedding_model.save(run.path("embedding_model.keras"))
    if run.export:
        result["saved_model"] = run.export(run.out_dir)
    write_json(run.path("metrics.json"), result)  # last, and only here: its presence means finished
    return result
