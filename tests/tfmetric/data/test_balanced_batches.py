import numpy as np
import pytest

from tfmetric.data.balanced_batches import class_balanced_batches


def _labels(sizes):
    return np.concatenate([np.full(n, c) for c, n in enumerate(sizes)])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("batch_size,ipc", [(12, 4), (15, 5), (6, 1), (9, 9)])
def test_every_batch_has_exact_classes_and_images(seed, batch_size, ipc):
    labels = _labels(np.random.default_rng(seed).integers(1, 30, size=23))
    batches = class_balanced_batches(labels, batch_size, ipc, num_batches=40, seed=seed)
    assert batches.shape == (40, batch_size)
    for b in labels[batches]:
        groups = b.reshape(batch_size // ipc, ipc)
        assert np.all(groups == groups[:, :1])  # consecutive images share a class
        assert len(np.unique(groups[:, 0])) == batch_size // ipc  # distinct classes


def test_without_replacement_never_repeats_an_image_in_a_big_enough_class():
    labels = _labels([10, 3, 8, 12, 5])
    batches = class_balanced_batches(labels, 8, 4, num_batches=200, seed=1, replace=False)
    for b in batches:
        for group in b.reshape(2, 4):
            if np.sum(labels == labels[group[0]]) >= 4:
                assert len(np.unique(group)) == 4
            else:  # the class of 3 images must repeat one
                assert len(np.unique(group)) == 3


def test_without_replacement_cycles_through_all_images_of_a_class():
    labels = _labels([8, 8])
    batches = class_balanced_batches(labels, 8, 4, num_batches=2, seed=0, replace=False)
    # Two batches each hold both classes: 4 + 4 draws per class = all 8 images exactly once.
    for c in (0, 1):
        drawn = batches[np.isin(batches, np.flatnonzero(labels == c))]
        assert sorted(drawn) == sorted(np.flatnonzero(labels == c))


def test_classes_are_used_equally_over_an_epoch():
    labels = _labels([7] * 50)
    batches = class_balanced_batches(labels, 10, 2, num_batches=100, seed=3)  # 500 class slots
    usage = np.bincount(labels[batches[:, ::2]].ravel(), minlength=50)
    assert usage.min() == usage.max() == 10


def test_deterministic_for_a_seed_and_different_across_seeds():
    labels = _labels([6] * 20)
    a = class_balanced_batches(labels, 12, 3, 10, seed=5)
    assert np.array_equal(a, class_balanced_batches(labels, 12, 3, 10, seed=5))
    assert not np.array_equal(a, class_balanced_batches(labels, 12, 3, 10, seed=6))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(batch_size=12, images_per_class=0), "images_per_class"),
        (dict(batch_size=10, images_per_class=3), "multiple"),
        (dict(batch_size=40, images_per_class=2), "only 5"),
    ],
)
def test_errors_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        class_balanced_batches(_labels([4] * 5), num_batches=1, **kwargs)
