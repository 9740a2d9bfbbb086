"""The mixed-precision policies ``train.precision`` names: one table, importable without TensorFlow
(the train CLI offers its keys as ``--mixed-precision`` choices before TensorFlow loads)."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Precision:
    """One Keras dtype policy (the table's key) as training uses it.

    Attributes:
      loss_scale: wrap the optimizer in a LossScaleOptimizer (float16's narrow range underflows
        small gradients; bfloat16 has float32's range and needs no scaling).
    """

    loss_scale: bool = False


PRECISIONS = {"float32": Precision(), "mixed_float16": Precision(loss_scale=True), "mixed_bfloat16": Precision()}
