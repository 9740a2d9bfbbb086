"""ResNet-50 backbone (keras.applications) pooled to its 2048-d pool5 feature.

The second backbone of Zhai & Wu (BMVC 2019), Section 4. Weights are random by default because
nothing is downloaded at run time; pass `weights="imagenet"` (downloaded and cached by Keras) or
the path of a local Keras ResNet50 `notop` weights file. ImageNet weights expect
`keras.applications.resnet50.preprocess_input` ("caffe": BGR, mean-subtracted, 0-255).
"""
import keras

OUTPUT_DIM = 2048


def ResNet50Backbone(input_shape=(None, None, 3), weights=None, name="resnet50"):
    """`keras.applications.ResNet50` without its classifier, global-average pooled: image -> 2048-d.

    Args:
        input_shape: (height, width, 3); height and width may be None, known sizes must be
            at least 32 (a keras.applications requirement).
        weights: None (random initialisation), "imagenet", or a local weights file path.
        name: name of the returned `keras.Model`.
    """
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError("`input_shape` must be (height, width, 3). "
                         f"Received: input_shape={input_shape}")
    return keras.applications.ResNet50(
        include_top=False, weights=weights, input_shape=input_shape, pooling="avg", name=name)


ResNet50Backbone.output_dim = OUTPUT_DIM
ResNet50Backbone.default_image_size = 224
