"""The optimizers and precisions ``train.optimizer`` / ``train.precision`` name: one table each.

``OPTIMIZERS``: "sgd" is the official recipe, SGD with momentum and L2 weight decay exactly as
torch.optim.SGD (``TorchSGD``); "adamw" (Keras AdamW, decoupled weight decay) is for training
small backbones from scratch, where SGD needs many more epochs. ``PRECISIONS`` (from
``tfmetric.precisions``, which needs no TensorFlow): the Keras dtype policies, and whether the
optimizer is loss-scaled.

Keras' SGD differs from torch.optim.SGD in two ways that matter for reproducing the paper: its
``weight_decay`` is decoupled (applied outside the momentum), and its momentum buffer accumulates
``lr * grad`` so a learning-rate step changes the effective update differently. Here, as in PyTorch:

    g = grad + weight_decay * w;   buf = momentum * buf + g;   w = w - lr * buf
"""

import keras

from tfmetric.precisions import PRECISIONS


@keras.saving.register_keras_serializable(package="tfmetric")
class TorchSGD(keras.optimizers.Optimizer):
    """torch.optim.SGD(momentum, weight_decay, dampening=0, nesterov=False) as a Keras optimizer.

    Args:
      learning_rate: float or schedule.
      momentum: momentum factor in [0, 1).
      l2_decay: coupled L2 weight decay added to every gradient (named so as not to clash with
        Keras' decoupled ``weight_decay``).
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, l2_decay=1e-4, name="torch_sgd", **kwargs):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"`momentum` must be in [0, 1). Received: momentum={momentum}")
        if l2_decay < 0:
            raise ValueError(f"`l2_decay` must be >= 0. Received: l2_decay={l2_decay}")
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum = momentum
        self.l2_decay = l2_decay

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = [self.add_variable_from_reference(v, "momentum") for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        lr = keras.ops.cast(learning_rate, variable.dtype)
        g = keras.ops.cast(gradient, variable.dtype)
        if self.l2_decay:
            g = g + self.l2_decay * variable
        buf = self.momentums[self._get_variable_index(variable)]
        self.assign(buf, self.momentum * buf + g)
        self.assign_sub(variable, lr * buf)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "l2_decay": self.l2_decay})
        return config


OPTIMIZERS = {
    "sgd": lambda t, learning_rate, name: TorchSGD(learning_rate, t.momentum, t.weight_decay, name=name),
    "adamw": lambda t, learning_rate, name: keras.optimizers.AdamW(
        learning_rate, weight_decay=t.weight_decay, name=name
    ),
}


def make_optimizer(train_config, learning_rate, name):
    """The optimizer of ``train.optimizer``, loss-scaled where ``train.precision`` needs it (both
    names are validated where the config is built, ``tfmetric.config.validate``)."""
    t = train_config
    optimizer = OPTIMIZERS[t.optimizer](t, learning_rate, name)
    if PRECISIONS[t.precision].loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer, name=f"{name}_loss_scale")
    return optimizer
