import keras
import numpy as np
import pytest

from tfmetric.training.optimizer import TorchSGD
from tfmetric.training.schedule import learning_rate_at, total_epochs
from tfmetric.config import TrainConfig


def torch_sgd_reference(w, grads, lrs, momentum, wd):
    """torch.optim.SGD's documented update rule, step by step in float64."""
    w = w.astype(np.float64).copy()
    buf = None
    for g, lr in zip(grads, lrs):
        d = g + wd * w
        buf = d if buf is None else momentum * buf + d
        w = w - lr * buf
    return w


def test_matches_pytorch_sgd_rule_across_an_lr_step():
    rng = np.random.default_rng(0)
    w0 = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(6)]
    lrs = [0.1, 0.1, 0.1, 0.01, 0.01, 0.01]
    var = keras.Variable(w0)
    opt = TorchSGD(learning_rate=0.1, momentum=0.9, l2_decay=1e-2)
    opt.build([var])
    for g, lr in zip(grads, lrs):
        opt.learning_rate.assign(lr)
        opt.apply([g], [var])
    np.testing.assert_allclose(np.asarray(var), torch_sgd_reference(w0, grads, lrs, 0.9, 1e-2), rtol=1e-5)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="momentum"):
        TorchSGD(momentum=1.0)
    with pytest.raises(ValueError, match="l2_decay"):
        TorchSGD(l2_decay=-1)


def test_schedule_is_the_official_one():
    t = TrainConfig(lr=0.01, lr_mult=2.0, warmup_epochs=1, epochs_per_step=15, num_steps=2, gamma=0.1)
    assert total_epochs(t) == 31
    assert learning_rate_at(0, t) == pytest.approx(0.02)          # warm-up: lr * lr_mult
    assert learning_rate_at(1, t) == pytest.approx(0.01)          # first full epoch
    assert learning_rate_at(15, t) == pytest.approx(0.01)         # 15th full epoch
    assert learning_rate_at(16, t) == pytest.approx(0.001)        # official: lr *= gamma at epoch 15
    assert learning_rate_at(30, t) == pytest.approx(0.001)
