"""Class-balanced batch indices for images held in memory (labels known up front).

For users training with ``model.fit`` on their own arrays (README, "The pieces are plain Keras");
the trainer streams TFRecords through ``class_sampler.ClassBalancedSampler`` instead, which applies
the same rules without holding a split in memory.

Every batch holds exactly ``batch_size // images_per_class`` distinct classes and exactly
``images_per_class`` images of each. Classes are taken from a shuffled queue that is refilled only
when exhausted, so over an epoch every class is used about equally often (the official sampler picks
classes uniformly at random per batch, which is the same in expectation). Within a class, images
are drawn with replacement (the official behaviour) or, with ``replace=False``, without
replacement while the class has enough images.
"""

import numpy as np


def check_balanced_args(num_classes, batch_size, images_per_class):
    """Raises ValueError naming the argument when no balanced batch can be formed."""
    if images_per_class < 1:
        raise ValueError(f"`images_per_class` must be >= 1. Received: images_per_class={images_per_class}")
    if batch_size < images_per_class or batch_size % images_per_class:
        raise ValueError(
            f"`batch_size` ({batch_size}) must be a positive multiple of `images_per_class` ({images_per_class})."
        )
    classes_per_batch = batch_size // images_per_class
    if classes_per_batch > num_classes:
        raise ValueError(
            f"A batch needs {classes_per_batch} distinct classes (batch_size={batch_size} // "
            f"images_per_class={images_per_class}) but the split has only {num_classes}."
        )
    return classes_per_batch


def class_balanced_batches(labels, batch_size, images_per_class, num_batches, seed=0, replace=True):
    """Indices into ``labels`` of shape [num_batches, batch_size], grouped class by class.

    Args:
      labels: 1-D integer array of the split's labels.
      batch_size: images per batch; a multiple of images_per_class.
      images_per_class: images of each class in a batch.
      num_batches: number of batches to draw.
      seed: numpy seed; the same seed gives the same batches.
      replace: draw within a class with replacement (official) or without while possible.
    """
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    per_batch = check_balanced_args(len(classes), batch_size, images_per_class)
    rng = np.random.default_rng(seed)
    members = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])

    batches = _class_schedule(len(classes), per_batch, num_batches, rng)
    flat = batches.ravel()
    slots = np.argsort(flat, kind="stable")  # batch slots grouped by class, in batch order
    used, uses = np.unique(flat, return_counts=True)
    out = np.empty((flat.size, images_per_class), dtype=np.int64)
    for c, group in zip(used, np.split(slots, np.cumsum(uses)[:-1])):
        out[group] = _draw(members[c], len(group), images_per_class, rng, replace)
    return out.reshape(num_batches, batch_size)


def _class_schedule(num_classes, per_batch, num_batches, rng):
    """[num_batches, per_batch] class indices: successive permutations, each class once per round.

    When a round runs out inside a batch, the batch is completed from the next round with classes
    it does not already hold, so a class never repeats within a batch.
    """
    schedule = np.empty((num_batches, per_batch), dtype=np.int64)
    perm, pos = rng.permutation(num_classes), 0
    for b in range(num_batches):
        take = perm[pos : pos + per_batch]
        pos += per_batch
        if len(take) < per_batch:
            perm, pos = rng.permutation(num_classes), 0
            fill = perm[~np.isin(perm, take)][: per_batch - len(take)]
            perm = perm[~np.isin(perm, fill)]
            take = np.concatenate([take, fill])
        schedule[b] = take
    return schedule


def _draw(member_indices, occurrences, k, rng, replace):
    """k indices of one class for each of its `occurrences` batches, [occurrences, k]."""
    n = len(member_indices)
    if replace:
        return member_indices[rng.integers(0, n, size=(occurrences, k))]
    if n < k:  # too small: every image once, the rest of the slots drawn with replacement
        rows = [np.concatenate([rng.permutation(n), rng.integers(0, n, size=k - n)]) for _ in range(occurrences)]
        return member_indices[np.stack(rows)]
    # Without replacement: walk through successive permutations of the class's images.
    total = occurrences * k
    perms = np.concatenate([rng.permutation(n) for _ in range(-(-total // n))])[:total]
    draws = member_indices[perms].reshape(occurrences, k)
    # A batch straddling two permutations could repeat an image; redraw those rows without replacement.
    for row in np.flatnonzero([len(np.unique(r)) < k for r in draws]):
        draws[row] = member_indices[rng.choice(n, size=k, replace=False)]
    return draws
