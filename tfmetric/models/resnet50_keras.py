"""`keras.applications.ResNet50` pooled to its 2048-d pool5 feature: the `resnet50_keras` backbone.

Not the paper's network (that is torchvision's, `tfmetric.models.resnet50`): here the stride of a
downsampling block sits in its first 1x1 convolution, convolutions have biases, BatchNorm epsilon
is 1.001e-5 and the ImageNet weights (Caffe-converted) expect
`keras.applications.resnet50.preprocess_input` ("caffe": BGR, mean-subtracted, 0-255). Kept for
comparison and for users of the Keras weights; weights are loaded by `tfmetric.models.backbones`.
"""

import keras

OUTPUT_DIM = 2048


def KerasResNet50Backbone(input_shape=(None, None, 3), name="resnet50_keras"):
    """`keras.applications.ResNet50` without its classifier, global-average pooled: image -> 2048-d.

    Args:
        input_shape: (height, width, 3); height and width may be None, known sizes must be
            at least 32 (a keras.applications requirement).
        name: name of the returned `keras.Model`.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"`input_shape` must be (height, width, 3). Received: input_shape={input_shape}")
    return keras.applications.ResNet50(
        include_top=False, weights=None, input_shape=input_shape, pooling="avg", name=name
    )


KerasResNet50Backbone.output_dim = OUTPUT_DIM
KerasResNet50Backbone.default_image_size = 224
