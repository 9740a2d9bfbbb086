"""Model, optimizers and checkpointed progress of one training run; resumable at any step."""
import logging
import os
import signal

import keras
import tensorflow as tf

from tfmetric.models.embedding import build_embedding_model, build_training_model, head_variables
from tfmetric.training.optimizer import make_optimizer
from tfmetric.training.precision import dtype_policy, sync_batch_norm

log = logging.getLogger(__name__)


class RunState:
    """Everything a resumed run needs: weights, both optimizers' slots, epoch and step in the epoch.

    The data pipeline is a deterministic function of (seed, epoch), so the sampler position is
    the step within the epoch: a resumed run skips the batches it already trained on.
    """

    def __init__(self, config, num_classes, workdir, strategy, save_dir=None):
        """Restores from ``<workdir>/checkpoints``; saves there too, or under ``save_dir`` when given
        (a non-chief worker of a multi-worker cluster saves into a scratch directory)."""
        m, t = config.model, config.train
        with strategy.scope(), dtype_policy(t.precision):
            self.embedding_model = build_embedding_model(
                m.backbone, m.embedding_dim, config.data.image_size, m.weights, m.layer_norm,
                m.bn_momentum, data_dir=config.data.data_dir or None,
                sync_batch_norm=sync_batch_norm(strategy.num_replicas_in_sync, t.per_replica_batch))
            self.model = build_training_model(self.embedding_model, num_classes, m.temperature)
            self.head_vars = head_variables(self.model)
            self.all_vars = self.model.trainable_variables
            self.warmup_opt = self._optimizer(t, t.lr * t.lr_mult, "warmup_optimizer")
            self.main_opt = self._optimizer(t, t.lr, "optimizer")
            self.warmup_opt.build(self.head_vars)
            self.main_opt.build(self.all_vars)
        # Bookkeeping, host-side: outside the strategy scope so they are plain (not mirrored) variables.
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step_in_epoch")
        self.checkpoint = tf.train.Checkpoint(model=self.model, warmup_optimizer=self.warmup_opt,
                                              optimizer=self.main_opt, epoch=self.epoch, step=self.step)
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(workdir, "checkpoints"),
                                                  max_to_keep=2)
        self._saver = self.manager if save_dir is None else tf.train.CheckpointManager(
            self.checkpoint, os.path.join(save_dir, "checkpoints"), max_to_keep=1)

    @staticmethod
    def _optimizer(train_config, lr, name):
        optimizer = make_optimizer(train_config, lr, name)
        if train_config.precision == "mixed_float16":  # bfloat16 has float32's range: no scaling
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
        return optimizer

    def restore(self):
        """Restores the latest checkpoint if any; returns (epoch, step_in_epoch) to continue from."""
        if self.manager.latest_checkpoint:
            self.checkpoint.restore(self.manager.latest_checkpoint).assert_existing_objects_matched()
            log.info("Resumed from %s", self.manager.latest_checkpoint)
        return int(self.epoch), int(self.step)

    def save(self, epoch, step):
        self.epoch.assign(epoch)
        self.step.assign(step)
        return self._saver.save()


class StopRequested(KeyboardInterrupt):
    """SIGINT/SIGTERM arrived; a checkpoint was written and the run can be resumed."""


class InterruptGuard:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so the run stops at a step boundary."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
