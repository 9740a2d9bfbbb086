"""train_and_evaluate: the official training recipe as a library function.

Epoch 0..warmup_epochs-1 train only the new parameters (proxies and projection) with lr * lr_mult,
BatchNorm still in training mode as in the official code; then all parameters are trained with a
fresh SGD for epochs_per_step * num_steps epochs, the lr multiplied by gamma every epochs_per_step.
"""
import dataclasses
import json
import logging
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tfmetric import config as config_lib
from tfmetric.data.balanced_batches import check_balanced_args
from tfmetric.data.sources import open_source
from tfmetric.models.backbones import backbone_preprocessing
from tfmetric.models.embedding import build_embedding_model, build_training_model, head_variables
from tfmetric.training import evaluation
from tfmetric.training.optimizer import make_optimizer
from tfmetric.training.schedule import learning_rate_at, total_epochs

log = logging.getLogger(__name__)


def write_json(path, obj):
    """Atomic JSON write: readers never see a half-written file."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _make_step(model, optimizer, variables):
    @tf.function
    def step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)))
        grads = tape.gradient(loss, variables)
        optimizer.apply(grads, variables)
        return loss
    return step


class _Run:
    """Model, optimizers and checkpoint state of one training run."""

    def __init__(self, config, num_classes, workdir):
        m, t = config.model, config.train
        self.embedding_model = build_embedding_model(m.backbone, m.embedding_dim, config.data.image_size,
                                                     m.weights, m.layer_norm, m.bn_momentum)
        self.model = build_training_model(self.embedding_model, num_classes, m.temperature)
        self.head_vars = head_variables(self.model)
        self.all_vars = self.model.trainable_variables
        self.warmup_opt = make_optimizer(t, t.lr * t.lr_mult, name="warmup_optimizer")
        self.main_opt = make_optimizer(t, t.lr, name="optimizer")
        self.warmup_opt.build(self.head_vars)
        self.main_opt.build(self.all_vars)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.checkpoint = tf.train.Checkpoint(model=self.model, warmup_optimizer=self.warmup_opt,
                                              optimizer=self.main_opt, epoch=self.epoch)
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(workdir, "checkpoints"),
                                                  max_to_keep=2)
        self.steps = {"warmup": _make_step(self.model, self.warmup_opt, self.head_vars),
                      "main": _make_step(self.model, self.main_opt, self.all_vars)}

    def restore(self):
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            log.info("Resumed from %s at epoch %d", self.manager.latest_checkpoint, int(self.epoch))
        return int(self.epoch)


def _evaluate(embed_fn, module, eval_config, eval_data):
    """Scores of ``embed_fn`` on the dataset's query (and gallery) split."""
    query, qlabels = evaluation.embed(embed_fn, eval_data[module.QUERY_SPLIT])
    gallery = glabels = None
    if module.GALLERY_SPLIT:
        gallery, glabels = evaluation.embed(embed_fn, eval_data[module.GALLERY_SPLIT])
    return evaluation.score(query, qlabels, gallery, glabels, eval_config)


def format_scores(metrics, ks):
    parts = [f"R@{k} {metrics[f'recall@{k}']:.4f}" for k in ks]
    parts.append(f"MAP@R {metrics['map@r']:.4f}")
    if "binary/recall@1" in metrics:
        parts.append(f"| binary R@1 {metrics['binary/recall@1']:.4f}")
    return " ".join(parts)


def train_and_evaluate(config, workdir, verbose=1):
    """Trains with the paper's recipe, evaluates on held-out classes, writes everything to workdir.

    Writes ``config.json`` (before training), ``checkpoints/``, ``metrics.json``,
    ``model.keras`` (images -> logits) and ``embedding_model.keras`` (images -> embeddings).
    Rerunning with the same workdir resumes from the last epoch checkpoint.

    Returns:
      The final metrics dict (also in metrics.json).
    """
    config_lib.validate(config)
    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "config.json"), config.to_dict())
    keras.utils.set_random_seed(config.train.seed)

    d, t = config.data, config.train
    source, module = open_source(d)
    train_split = module.TRAIN_SPLIT
    num_classes = source.num_classes(train_split)
    check_balanced_args(num_classes, d.batch_size, d.images_per_class)
    steps = t.steps_per_epoch or max(1, source.num_images(train_split) // d.batch_size)
    normalization = backbone_preprocessing(config.model.backbone, config.model.weights)
    eval_splits = [s for s in (module.QUERY_SPLIT, module.GALLERY_SPLIT) if s]
    eval_data = {s: source.eval_dataset(s, d, normalization) for s in eval_splits}

    run = _Run(config, num_classes, workdir)
    start = run.restore()
    epochs = total_epochs(t)
    history_path = os.path.join(workdir, "history.json")
    history = json.load(open(history_path)) if start and os.path.exists(history_path) else []
    print(f"Training {config.model.backbone} on {d.dataset}: {source.num_images(train_split)} images, "
          f"{num_classes} classes, {steps} steps/epoch, {epochs} epochs -> {workdir}", flush=True)

    for epoch in range(start, epochs):
        phase = "warmup" if epoch < t.warmup_epochs else "main"
        optimizer = run.warmup_opt if phase == "warmup" else run.main_opt
        lr = learning_rate_at(epoch, t)
        optimizer.learning_rate.assign(lr)
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs} ({phase}, lr {lr:g})", flush=True)
        bar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["loss"])
        started, losses = time.time(), []
        for i, (images, labels) in enumerate(source.train_dataset(train_split, d, normalization,
                                                                  epoch, steps, t.seed)):
            loss = float(run.steps[phase](images, labels))
            if not np.isfinite(loss):
                raise FloatingPointError(
                    f"Loss became {loss} at epoch {epoch + 1}, step {i + 1}; the last good checkpoint "
                    f"is kept in {run.manager.directory}. Lower train.lr or check the data.")
            losses.append(loss)
            bar.update(i + 1, [("loss", loss)])
        record = {"epoch": epoch + 1, "phase": phase, "lr": lr, "loss": float(np.mean(losses)),
                  "seconds": round(time.time() - started, 2)}
        main_epoch = epoch + 1 - t.warmup_epochs
        if epoch + 1 == epochs or (main_epoch > 0 and main_epoch % t.test_every_n_epochs == 0):
            scores = _evaluate(evaluation.compiled_embedder(run.embedding_model), module,
                               config.eval, eval_data)
            record["test"] = scores
            print(f"  test: {format_scores(scores, config.eval.recall_ks)}", flush=True)
        history.append(record)
        run.epoch.assign(epoch + 1)
        run.manager.save(checkpoint_number=epoch + 1)
        write_json(history_path, history)

    final = history[-1].get("test") if history else None
    if not final:  # resumed after the last epoch, or nothing evaluated yet
        final = _evaluate(evaluation.compiled_embedder(run.embedding_model), module, config.eval, eval_data)
    result = {"dataset": d.dataset, "backbone": config.model.backbone, "epochs": epochs,
              "test": final, "history": history}
    if config.eval.raw_pixel_baseline:
        pixels_config = dataclasses.replace(config.eval, binary=False, nmi=False)
        result["raw_pixels"] = _evaluate(evaluation.flatten_pixels, module, pixels_config, eval_data)
        print(f"Raw pixels: R@1 {result['raw_pixels']['recall@1']:.4f}", flush=True)
    run.model.save(os.path.join(workdir, "model.keras"))
    run.embedding_model.save(os.path.join(workdir, "embedding_model.keras"))
    write_json(os.path.join(workdir, "metrics.json"), result)
    return result
