import keras
import numpy as np
import pytest

from tfmetric.config import TrainConfig
from tfmetric.optimizers import OPTIMIZERS, PRECISIONS, TorchSGD, make_optimizer


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


@pytest.mark.parametrize(
    "optimizer, precision, cls, scaled",
    [
        ("sgd", "float32", TorchSGD, False),
        ("adamw", "mixed_bfloat16", keras.optimizers.AdamW, False),
        ("sgd", "mixed_float16", TorchSGD, True),
    ],
)
def test_make_optimizer_looks_up_both_tables(optimizer, precision, cls, scaled):
    t = TrainConfig(optimizer=optimizer, precision=precision, momentum=0.8, weight_decay=1e-3)
    made = make_optimizer(t, 0.5, "main")
    assert isinstance(made, keras.optimizers.LossScaleOptimizer) == scaled
    inner = made.inner_optimizer if scaled else made
    assert isinstance(inner, cls) and inner.name == "main"
    assert float(inner.learning_rate) == pytest.approx(0.5)
    if cls is TorchSGD:
        assert (inner.momentum, inner.l2_decay) == (0.8, 1e-3)
    else:
        assert inner.weight_decay == pytest.approx(1e-3)
    assert set(OPTIMIZERS) == {"sgd", "adamw"}
    assert {n for n, p in PRECISIONS.items() if p.loss_scale} == {"mixed_float16"}
