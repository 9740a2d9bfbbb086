"""TensorBoard logs of a run: scalars while training and the embedding projector of the test split."""

import os

import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from tfmetric.data import preprocessing


class Logger:
    """Scalars under ``<workdir>/tensorboard``: loss every ``every_n_steps``, lr per epoch, test metrics."""

    def __init__(self, workdir, every_n_steps=10):
        self.dir = os.path.join(workdir, "tensorboard")
        self.writer = tf.summary.create_file_writer(self.dir)
        self.every_n_steps = max(1, every_n_steps)

    def loss(self, step, loss):
        if step % self.every_n_steps == 0:
            with self.writer.as_default(step=step):
                tf.summary.scalar("train/loss", loss)

    def epoch(self, step, lr, mean_loss):
        with self.writer.as_default(step=step):
            tf.summary.scalar("train/learning_rate", lr)
            tf.summary.scalar("train/epoch_loss", mean_loss)

    def test(self, step, scores, grid=None, prefix="test"):
        """Scalars ``<prefix>/<metric>``; ``grid`` (uint8 [H, W, 3]) as the image ``<prefix>/retrieval``."""
        with self.writer.as_default(step=step):
            for key, value in scores.items():
                tf.summary.scalar(f"{prefix}/{key}", value)
            if grid is not None:
                tf.summary.image(f"{prefix}/retrieval", grid[None], max_outputs=1)
        self.writer.flush()


def sample_across_classes(labels, max_items):
    """Sorted indices of at most ``max_items`` items, as many of each class as fit.

    Every class gets up to the same quota of items (its first ones), the smallest quota that fills
    ``max_items`` (small classes give all they have); when that makes more than ``max_items``, an
    evenly spaced subset of them is kept, so the classes stay balanced.
    """
    labels = np.asarray(labels)
    if len(labels) <= max_items:
        return np.arange(len(labels))
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    rank = np.arange(len(labels)) - np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    counts = np.diff(np.r_[starts, len(labels)])
    low, high = 1, int(counts.max())  # the smallest quota q with sum(min(counts, q)) >= max_items
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if np.minimum(counts, mid).sum() >= max_items else (mid + 1, high)
    per_class = low
    chosen = order[rank < per_class]
    if len(chosen) > max_items:
        chosen = chosen[np.linspace(0, len(chosen) - 1, max_items).round().astype(int)]
    return np.sort(chosen)


def write_projector(log_dir, embeddings, labels, raw_records, thumb_size=32, max_items=2000):
    """Embedding projector files in the TensorBoard log directory itself, where the projector looks.

    Writes a checkpoint of the embeddings, ``projector_config.pbtxt``, ``metadata.tsv`` (columns
    ``label`` and ``class``: the split's label and the dataset's class name) and a sprite image,
    for at most ``max_items`` images sampled across the classes (``sample_across_classes``).

    Args:
      log_dir: the TensorBoard log directory (``<workdir>/tensorboard``).
      embeddings: [n, d] float embeddings of the evaluated split, in order.
      labels: [n] labels of the split.
      raw_records: iterable of ``(image bytes, label, class name)`` in the same order.
      thumb_size: side of each sprite thumbnail; sprites are capped at 8192 px by TensorBoard.
    """
    chosen = sample_across_classes(labels, max_items)
    wanted = set(chosen.tolist())
    names, thumbs = {}, {}
    for i, (encoded, _, name) in enumerate(raw_records):
        if i > chosen[-1]:
            break
        if i in wanted:
            names[i] = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            image = preprocessing.resize(tf.cast(preprocessing.decode_image(encoded), tf.float32), thumb_size)
            thumbs[i] = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8).numpy()
    os.makedirs(log_dir, exist_ok=True)
    with open(os.path.join(log_dir, "metadata.tsv"), "w") as f:
        f.write("label\tclass\n")
        f.writelines(f"{int(labels[i])}\t{names[i]}\n" for i in chosen)
    side = int(np.ceil(np.sqrt(len(chosen))))
    sprite = np.full((side * thumb_size, side * thumb_size, 3), 255, np.uint8)
    for slot, i in enumerate(chosen):
        r, c = divmod(slot, side)
        sprite[r * thumb_size : (r + 1) * thumb_size, c * thumb_size : (c + 1) * thumb_size] = thumbs[i]
    tf.io.write_file(os.path.join(log_dir, "sprite.png"), tf.io.encode_png(sprite))

    variable = tf.Variable(np.asarray(embeddings[chosen], np.float32), name="test_embedding")
    # No model_checkpoint_path: the projector finds the latest checkpoint of the log directory,
    # wherever the workdir has moved since.
    tf.train.Checkpoint(embedding=variable).save(os.path.join(log_dir, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    item = config.embeddings.add()
    item.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    item.metadata_path = "metadata.tsv"
    item.sprite.image_path = "sprite.png"
    item.sprite.single_image_dim.extend([thumb_size, thumb_size])
    projector.visualize_embeddings(log_dir, config)
    return log_dir
