"""Statistics of training batches' labels beside those of a uniform reference sampler.

The reference is what the official code draws, simulated in numpy with the same number of
batches: for class-balanced batches P of the C classes uniformly without replacement per batch
(``ClassBalancedBatchSampler``), for plain batches a uniform shuffle of the split's labels.
``python -m tfmetric.data.batches`` prints them for ``training_batch_labels``.
"""

import numpy as np

from tfmetric.data.sources import open_source


def uniform_reference(labels_of_split, num_batches, batch_size, images_per_class, class_balanced, seed=0):
    """int64 [num_batches, batch_size] labels of the reference sampler (module doc)."""
    rng = np.random.default_rng(seed)
    if class_balanced:
        classes = np.unique(labels_of_split)
        per_batch = batch_size // images_per_class
        drawn = np.stack([rng.choice(classes, per_batch, replace=False) for _ in range(num_batches)])
        return np.repeat(drawn, images_per_class, axis=1).reshape(num_batches, batch_size)
    per_round = len(labels_of_split) // batch_size
    rounds = [
        rng.permutation(labels_of_split)[: per_round * batch_size].reshape(per_round, batch_size)
        for _ in range(-(-num_batches // max(1, per_round)))
    ]
    return np.concatenate(rounds)[:num_batches]


def summarize(batches, num_classes):
    """Figures of ``batches`` (int [B, batch_size] labels): distinct classes and span per batch,
    the fraction of class pairs that share at least one batch, and how often each class is used
    (batches that hold it), with the chi-square statistic of those counts against equal use."""
    batches = np.asarray(batches)
    distinct = [np.unique(b) for b in batches]
    pairs = set()
    for d in distinct:
        a, b = np.triu_indices(len(d), 1)
        pairs.update((d[a] * num_classes + d[b]).tolist())
    usage = np.bincount(np.concatenate(distinct), minlength=num_classes) if len(distinct) else np.zeros(num_classes)
    expected = usage.mean() if num_classes else 0
    return {
        "batches": len(batches),
        "images_per_batch": int(batches.shape[1]) if batches.ndim == 2 else 0,
        "classes_per_batch": float(np.mean([len(d) for d in distinct])) if distinct else 0.0,
        "label_span": float(np.mean([d[-1] - d[0] for d in distinct])) if distinct else 0.0,
        "pair_coverage": len(pairs) / max(1, num_classes * (num_classes - 1) // 2),
        "class_uses_min": int(usage.min()) if num_classes else 0,
        "class_uses_mean": float(expected),
        "class_uses_max": int(usage.max()) if num_classes else 0,
        "class_uses_chi2": float(((usage - expected) ** 2 / expected).sum()) if expected else 0.0,
        "unused_classes": int((usage == 0).sum()),
    }


def format_summary(ours, reference, title):
    """The two summaries side by side, one figure a line."""
    rows = [
        ("batches", "batches", "{:d}"),
        ("images per batch", "images_per_batch", "{:d}"),
        ("distinct classes per batch (mean)", "classes_per_batch", "{:.2f}"),
        ("label span per batch, max - min (mean)", "label_span", "{:.1f}"),
        ("class pairs sharing a batch (fraction)", "pair_coverage", "{:.4f}"),
        ("batches per class: min", "class_uses_min", "{:d}"),
        ("batches per class: mean", "class_uses_mean", "{:.2f}"),
        ("batches per class: max", "class_uses_max", "{:d}"),
        ("batches per class: chi-square vs equal use", "class_uses_chi2", "{:.1f}"),
        ("classes never used", "unused_classes", "{:d}"),
    ]
    lines = [title, f"{'':<44} {'ours':>12} {'uniform':>12}"]
    for name, key, fmt in rows:
        lines.append(f"{name:<44} {fmt.format(ours[key]):>12} {fmt.format(reference[key]):>12}")
    return "\n".join(lines)


def training_batch_labels(config, epochs):
    """``(epoch, step, labels)`` of the first ``epochs`` epochs' batches, and the split's labels."""
    d, t = config.data, config.train
    source, module = open_source(d)
    split = module.TRAIN_SPLIT
    steps = source.steps_per_epoch(split, d.batch_size, t.steps_per_epoch)
    sampler = source.sampler(split, d, t.seed, d.batch_size)

    def rows():
        for epoch in range(epochs):
            for step, labels in enumerate(sampler.batch_labels(epoch, steps)):
                yield epoch, step, labels

    return rows(), source.labels(split), source.num_classes(split)
