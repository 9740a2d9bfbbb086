"""Model, optimizers and checkpointed progress of one training run; resumable at any step."""

import logging
import os
import signal

import tensorflow as tf

from tfmetric.models.embedding import build_embedding_model, build_training_model, head_variables
from tfmetric.optimizers import make_optimizer
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
                m.backbone,
                m.embedding_dim,
                config.data.image_size,
                m.weights,
                m.layer_norm,
                m.bn_momentum,
                data_dir=config.data.data_dir or None,
                sync_batch_norm=sync_batch_norm(strategy.num_replicas_in_sync, t.per_replica_batch),
            )
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
        self.checkpoint = tf.train.Checkpoint(
            model=self.model,
            warmup_optimizer=self.warmup_opt,
            optimizer=self.main_opt,
            epoch=self.epoch,
            step=self.step,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, os.path.join(workdir, "checkpoints"), max_to_keep=2)
        self._saver = (
            self.manager
            if save_dir is None
            else tf.train.CheckpointManager(self.checkpoint, os.path.join(save_dir, "checkpoints"), max_to_keep=1)
        )

    @staticmethod
    def _optimizer(train_config, lr, name):
        return make_optimizer(train_config, lr, name)  # loss-scaled where the precision needs it

    def restore(self):
        """Restores the newest readable checkpoint; returns (epoch, step_in_epoch) to continue from.

        The ``checkpoint`` index file is only a pointer: when it is damaged, or the checkpoint it
        names is truncated, the newest ``ckpt-N`` that reads back is used instead, saying so. A
        run never restarts from scratch while checkpoint files exist.
        """
        candidates = _checkpoint_candidates(self.manager)
        failures = []
        for path in candidates:
            try:
                self.checkpoint.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, ValueError, AssertionError, IndexError) as e:
                if _is_mismatch(e):  # the checkpoint is intact but of another model: no fallback
                    raise ValueError(
                        f"Checkpoint {path} does not match the configured model ({_first_line(e)}). "
                        f"Resume with the run's own config.json or use another workdir."
                    ) from None
                failures.append(f"{path} ({_first_line(e)})")
                continue
            if failures or path != self.manager.latest_checkpoint:
                print(
                    f"Resuming from {path}: "
                    + (
                        "; ".join(failures) + " unreadable"
                        if failures
                        else f"the index {self.manager.directory}/checkpoint is damaged or stale"
                    ),
                    flush=True,
                )
            log.info("Resumed from %s", path)
            return int(self.epoch), int(self.step)
        if candidates:
            raise ValueError(
                f"No checkpoint in {self.manager.directory} reads back: {'; '.join(failures)}. "
                f"Delete the directory (or --overwrite) to start again."
            )
        return int(self.epoch), int(self.step)

    def save(self, epoch, step):
        self.epoch.assign(epoch)
        self.step.assign(step)
        return self._saver.save()


def _checkpoint_candidates(manager):
    """The index's latest checkpoint, then every ``ckpt-N`` on disk, newest first."""
    found = []
    for name in tf.io.gfile.listdir(manager.directory) if tf.io.gfile.isdir(manager.directory) else ():
        stem, _, ext = name.partition(".")
        if ext == "index" and stem.startswith("ckpt-") and stem[5:].isdigit():
            found.append((int(stem[5:]), os.path.join(manager.directory, stem)))
    paths = [path for _, path in sorted(found, reverse=True)]
    latest = manager.latest_checkpoint  # None when the index is damaged (TensorFlow only warns)
    return ([latest] if latest else []) + [p for p in paths if p != latest]


def _is_mismatch(error):
    """An intact checkpoint of another model (shapes or structure differ), not a damaged file."""
    text = str(error)
    return "incompatible tensor with shape" in text or "Unresolved object" in text


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


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
