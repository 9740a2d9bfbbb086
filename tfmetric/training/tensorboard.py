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

    def test(self, step, scores):
        with self.writer.as_default(step=step):
            for key, value in scores.items():
                tf.summary.scalar(f"test/{key}", value)
        self.writer.flush()


def write_projector(log_dir, embeddings, labels, raw_images, thumb_size=32, max_items=2000):
    """Embedding projector files: a checkpoint of the embeddings, metadata.tsv and a sprite image.

    Args:
      log_dir: the TensorBoard log directory (``<workdir>/tensorboard``).
      embeddings: [n, d] float embeddings of the evaluated split, in order.
      labels: [n] labels, written to metadata.tsv.
      raw_images: an iterable of encoded image bytes in the same order (only the first
        ``max_items`` are read).
      thumb_size: side of each sprite thumbnail; sprites are capped at 8192 px by TensorBoard.
    """
    n = min(len(embeddings), max_items)
    path = os.path.join(log_dir, "projector")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "metadata.tsv"), "w") as f:
        f.writelines(f"{int(label)}\n" for label in labels[:n])
    thumbs = []
    for encoded in raw_images:
        if len(thumbs) == n:
            break
        image = preprocessing.resize(tf.cast(preprocessing.decode_image(encoded), tf.float32), thumb_size)
        thumbs.append(tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8).numpy())
    side = int(np.ceil(np.sqrt(n)))
    sprite = np.full((side * thumb_size, side * thumb_size, 3), 255, np.uint8)
    for i, thumb in enumerate(thumbs):
        r, c = divmod(i, side)
        sprite[r * thumb_size:(r + 1) * thumb_size, c * thumb_size:(c + 1) * thumb_size] = thumb
    tf.io.write_file(os.path.join(path, "sprite.png"), tf.io.encode_png(sprite))

    variable = tf.Variable(np.asarray(embeddings[:n], np.float32), name="test_embedding")
    tf.train.Checkpoint(embedding=variable).save(os.path.join(path, "embedding.ckpt"))
    config = projector.ProjectorConfig()
    item = config.embeddings.add()
    item.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    item.metadata_path = "metadata.tsv"
    item.sprite.image_path = "sprite.png"
    item.sprite.single_image_dim.extend([thumb_size, thumb_size])
    projector.visualize_embeddings(path, config)
    return path
