"""The learning-rate schedule: the official warm-up, then step decay."""

import pytest

from tfmetric.config import TrainConfig
from tfmetric.training.schedule import learning_rate_at, total_epochs


def test_schedule_is_the_official_one():
    t = TrainConfig(lr=0.01, lr_mult=2.0, warmup_epochs=1, epochs_per_step=15, num_steps=2, gamma=0.1)
    assert total_epochs(t) == 31
    assert learning_rate_at(0, t) == pytest.approx(0.02)  # warm-up: lr * lr_mult
    assert learning_rate_at(1, t) == pytest.approx(0.01)  # first full epoch
    assert learning_rate_at(15, t) == pytest.approx(0.01)  # 15th full epoch
    assert learning_rate_at(16, t) == pytest.approx(0.001)  # official: lr *= gamma at epoch 15
    assert learning_rate_at(30, t) == pytest.approx(0.001)
