"""The CosineProxy layer: the bias-free, normalised last layer of the normalized softmax loss."""

import math

import keras

from tfmetric.losses.normalized_softmax import cosine_logits


@keras.saving.register_keras_serializable(package="tfmetric")
class CosineProxy(keras.layers.Layer):
    """Cosine logits against learned class proxies (Zhai & Wu 2019, Sec. 3.1).

    ``logits[i, c] = cos(x_i, w_c) / temperature``: both the inputs and the proxy rows are
    L2-normalised and there is no bias. Proxies start uniform in (-1/sqrt(dim), 1/sqrt(dim)), the
    initialisation of the official code (PyTorch's nn.Linear default). Logits are float32 even under
    a mixed-precision policy, so the softmax that follows stays numerically safe.

    Args:
      num_classes: number of training classes (rows of the proxy matrix), >= 1.
      temperature: positive softmax temperature; 0.05 in the paper.
      **kwargs: standard layer arguments (name, dtype, ...).
    """

    def __init__(self, num_classes, temperature=0.05, **kwargs):
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"`num_classes` must be a positive integer. Received: num_classes={num_classes}")
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"`temperature` must be a positive number. Received: temperature={temperature}")
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.temperature = float(temperature)

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim is None:
            raise ValueError(f"CosineProxy needs a known embedding dimension. Received: input_shape={input_shape}")
        limit = 1.0 / math.sqrt(dim)
        self.proxies = self.add_weight(
            name="proxies",
            shape=(self.num_classes, dim),
            initializer=keras.initializers.RandomUniform(-limit, limit),
            trainable=True,
        )

    def call(self, inputs):
        return cosine_logits(inputs, self.proxies, self.temperature)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.num_classes,)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "temperature": self.temperature})
        return config
